"""Atomic file writes: a reader never sees a half-written output."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["replace_atomic", "write_atomic"]


def _file_mode(path: Path) -> int:
    """The permissions the written file gets: those of the file it replaces, else
    0o666 less the user's umask (as ``open(path, "w")`` would create it)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _target(path: str | os.PathLike) -> Path:
    """The file to write for ``path``: a symbolic link's target (the link stays a link,
    pointing at the new contents), else ``path``."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def replace_atomic(written: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move the finished file ``written`` (in ``path``'s folder) to ``path`` with
    ``os.replace``, with the mode :func:`write_atomic` gives."""
    path = _target(path)
    os.chmod(written, _file_mode(path))
    os.replace(written, path)
    return path


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and
    ``os.replace``; an existing file is replaced only when the write succeeded. The
    file keeps the mode of the one it replaces, or gets the user's umask; a symbolic
    link keeps pointing at the written file."""
    path = _target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode(path))
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
