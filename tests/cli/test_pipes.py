"""A closed pipe (``convscope layers | head -3``) ends the command quietly, as in Unix tools."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written: every write is EPIPE
    try:
        return subprocess.run(
            [sys.executable, "-m", "convscope.cli.main", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize("command", ["models", "methods"])
def test_closed_pipe_exits_quietly(command):
    done = _run_into_closed_pipe(command)
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, what `yes | head -1` reports for yes


def test_closed_pipe_after_work_exits_quietly(tmp_path):
    """explain writes its files, then its printout meets the closed pipe: no error line."""
    done = _run_into_closed_pipe("explain", "sample:coffee", "--out", str(tmp_path))
    assert "error" not in done.stderr and "Traceback" not in done.stderr
    assert done.returncode == 141
    assert (tmp_path / "coffee_gradcam.png").exists()
