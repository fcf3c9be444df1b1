"""Atomic file output, usable from every layer (like :mod:`dragkit.errors`, outside the layer chain).

A file a user asked for is either the previous one or a complete new one: it is written under a temporary name in
the same folder and renamed onto its name only when the writing succeeded (a rename within one file system is
atomic). A failed or interrupted write removes its temporary file; one left by a killed process is named
``.NAME.PID.partial`` beside the file and is removed by :func:`remove_stale_partials`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "exchange", "remove_stale", "remove_stale_partials", "scratch_dir"]

_MARK = ".partial"


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that choose a format by suffix still work);
    on success it is renamed onto ``path``, on an exception it is removed. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{_MARK}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_partials(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files that :func:`atomic_path` left in ``folder`` when a process was killed; returns them.

    Files of a process that is still running are kept.
    """
    return remove_stale(folder, f".*.{{pid}}{_MARK}*")


@contextmanager
def scratch_dir(label: str, parent: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A temporary folder ``{label}-{pid}-XXXX`` in ``parent`` (default: the system's temporary folder), removed
    after the block; :func:`remove_stale` finds the ones a killed process left."""
    with tempfile.TemporaryDirectory(prefix=f"{label}-{os.getpid()}-", dir=parent) as tmp:
        yield Path(tmp)


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``): at every instant
    each name holds one whole folder or file. Returns False, touching nothing, where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system or kernel without the flag
        return False
    raise OSError(code, os.strerror(code), os.fspath(a))


def remove_stale(folder: str | os.PathLike[str], pattern: str) -> list[Path]:
    """Remove the files and folders in ``folder`` matching ``pattern`` — a glob with ``{pid}`` where the creating
    process's id stands — whose process is no longer running (nor this one); returns what was removed."""
    head, tail = pattern.split("{pid}")
    found = re.compile(re.escape(head).replace(r"\*", ".*") + r"(\d+)" + re.escape(tail).replace(r"\*", ".*") + "$")
    removed = []
    for entry in Path(folder).glob(pattern.replace("{pid}", "*")):
        match = found.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
