"""Atomic file output, usable from every layer (like :mod:`dragkit.errors`, outside the layer chain).

A file a user asked for is either the previous one or a complete new one: it is written under a temporary name in
the same folder and renamed onto its name only when the writing succeeded (a rename within one file system is
atomic). A failed or interrupted write removes its temporary file; one left by a killed process is named
``.NAME.PID.partial`` beside the file and is removed by :func:`remove_stale_partials`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "remove_stale_partials"]

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
    removed = []
    for tmp in Path(folder).glob(f".*{_MARK}*"):
        parts = tmp.name.split(".")
        pid = next((int(p) for p in parts if p.isdigit()), None)
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
