"""fileio.write_all: all-or-nothing, with the permissions a plain write would give."""

from __future__ import annotations

import os
import stat

import pytest

from convscope.errors import ConvscopeError
from convscope.fileio import write_all


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(value: int) -> None:
        os.umask(value)

    yield set_
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o027], ids=oct)
def test_new_files_get_0666_less_the_umask(tmp_path, umask, mask):
    umask(mask)
    written = write_all(tmp_path / "out", {"a.png": b"x", "sub/b.npy": b"yz"})
    for path in written:
        assert _mode(path) == 0o666 & ~mask, oct(_mode(path))
        # the same as a plain open(..., "wb") in this process
        plain = path.with_name("plain-" + path.name)
        with open(plain, "wb") as fh:
            fh.write(b"x")
        assert _mode(path) == _mode(plain)
    assert (tmp_path / "out" / "sub" / "b.npy").read_bytes() == b"yz"


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    dest = tmp_path / "a.png"
    dest.write_bytes(b"old")
    os.chmod(dest, 0o640)
    write_all(tmp_path, {"a.png": b"new"})
    assert dest.read_bytes() == b"new"
    assert _mode(dest) == 0o640


def test_no_temporary_files_are_left(tmp_path):
    write_all(tmp_path, {"a": b"1", "b": b"2"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_failure_leaves_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "blocker").write_bytes(b"a file where a folder is needed")
    with pytest.raises(ConvscopeError, match="could not write"):
        write_all(tmp_path / "out", {"a.png": b"x", "blocker/b.png": b"y"})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blocker"]
