"""Writing output files all-or-nothing.

:func:`write_all` writes every file under a temporary name in the target folder, then renames them
into place; if anything fails, what it wrote is removed (and a folder it created too), so an error
never leaves half an output behind.

The files get the permissions a plain ``open(path, "wb")`` would give them: a new file is created
with mode ``0o666`` less the process umask (0644 under the usual umask 022), and a file that is
replaced keeps its mode. (``tempfile.mkstemp`` would make every output 0600, unreadable to anyone
else and to a web server.)
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from convscope.errors import ConvscopeError

__all__ = ["write_all"]


def write_all(folder: str | os.PathLike, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` (relative path -> bytes) under ``folder``; return the paths written."""
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise ConvscopeError(f"output path {root} exists and is not a folder")
    created: list[Path] = []
    for parent in reversed([root, *root.parents]):
        if not parent.exists():
            created.append(parent)
    temps: list[tuple[Path, Path]] = []
    done: list[Path] = []
    try:
        for rel, data in files.items():
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _create_temp(dest)
            temps.append((tmp, dest))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        for tmp, dest in temps:
            os.replace(tmp, dest)
            done.append(dest)
    except OSError as e:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        for dest in done:
            dest.unlink(missing_ok=True)
        for d in sorted({p.parent for _, p in temps} | set(created), key=lambda p: -len(p.parts)):
            if d.exists() and d.is_dir() and not any(d.iterdir()) and (d in created or d != root):
                try:
                    d.rmdir()
                except OSError:
                    pass
        raise ConvscopeError(f"could not write output under {root}: {e.strerror or e}") from None
    return done


def _create_temp(dest: Path) -> tuple[int, Path]:
    """A new file beside ``dest`` (open for writing) with the mode a plain write of ``dest`` gives:
    ``dest``'s own mode if it exists, else 0o666 less the umask (the kernel applies it)."""
    try:
        mode = stat.S_IMODE(os.stat(dest).st_mode) if dest.is_file() else None
    except OSError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = dest.parent / f".convscope-{secrets.token_hex(6)}"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        if mode is not None:
            os.chmod(tmp, mode)
        return fd, tmp
    raise FileExistsError(f"no free temporary name in {dest.parent}")
