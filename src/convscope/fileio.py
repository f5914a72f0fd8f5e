"""Writing output files all-or-nothing.

:func:`write_all` writes every file under a temporary name in the target folder, then renames them
into place; if anything fails, what it wrote is removed (and a folder it created too), so an error
never leaves half an output behind.
"""

from __future__ import annotations

import os
import tempfile
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
            fd, tmp = tempfile.mkstemp(prefix=".convscope-", dir=dest.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            temps.append((Path(tmp), dest))
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
