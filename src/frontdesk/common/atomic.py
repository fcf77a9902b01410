"""Replacing a directory in one step, so a reader finds the old complete directory or the new one, never half.

Model directories are written beside their target (same file system), flushed to disk, then swapped
in: on Linux with ``renameat2(RENAME_EXCHANGE)`` (atomic); elsewhere with two renames (a reader may
briefly find no directory, never a half-written one).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import time
from pathlib import Path


def staging_path(target: Path, what: str = "writing") -> Path:
    """A hidden sibling of ``target`` to write into before :func:`replace_directory`."""
    return target.parent / f".{target.name}.{what}-{os.getpid()}-{time.time_ns()}"


def replace_directory(staged: Path, target: Path, *, keep_old_as: Path | None = None) -> None:
    """Put the fully written directory ``staged`` at ``target``; the old one moves to ``keep_old_as``
    (or is deleted). ``staged`` must be on ``target``'s file system. Raises OSError; on failure the
    old directory is back in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fsync_tree(staged)
    if target.exists() or target.is_symlink():
        old = keep_old_as or staging_path(target, "replaced")
        if exchange(staged, target):
            staged.rename(old)  # ``staged`` now holds the old directory
        else:
            target.rename(old)
            try:
                staged.rename(target)
            except OSError:
                old.rename(target)  # put the old directory back
                raise
        if keep_old_as is None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        staged.rename(target)
    fsync_dir(target.parent)


def exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False when unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to disk."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
