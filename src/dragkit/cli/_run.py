"""Options every many-case command shares (``dragkit eval``, ``dragkit batch``): where results go and how cases
run — serially here, or as Ray tasks (``--ray auto``: a local Ray instance; ``--ray ADDRESS``: a cluster)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dragkit.errors import InvalidInputError

if TYPE_CHECKING:
    from dragkit.jobs.execute import RunStats


def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--ray``, ``--workers``, ``--threads``, ``--device``."""
    g = p.add_argument_group("how the cases run")
    g.add_argument(
        "--out", required=True, metavar="DIR", help="results folder; run again to resume (finished cases are skipped)"
    )
    g.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run the cases as Ray tasks: 'auto' starts a local Ray instance on this machine's cores, HOST:PORT joins "
        "a running cluster (needs pip install 'dragkit[ray]'; default: serially in this process)",
    )
    g.add_argument("--workers", type=int, default=None, metavar="N", help="Ray workers (default: one per CPU or GPU)")
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per worker (default: all cores serially, 1 per Ray worker)",
    )
    g.add_argument("--device", default="cpu", help="torch device of every worker (default cpu; cuda: one GPU each)")


def check_run_options(args: argparse.Namespace) -> None:
    """Refuse counts below 1 with one line."""
    for option in ("workers", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise InvalidInputError(f"--{option}: expected an int ≥ 1, got {value}")


def run_cases(
    args: argparse.Namespace, name: str, spec: Any, cases: Sequence[Any], settings: dict[str, Any]
) -> tuple[RunStats, list[dict[str, Any]]]:
    """Check ``--out``'s settings (``run.json``), run the cases not finished yet into ``<out>/<name>.jsonl`` as the
    run options say, and return the stats and every case's record, in case order."""
    from dragkit.jobs.execute import ResultLog, check_run_settings, execute

    out = Path(args.out)
    check_run_settings(out, settings)
    log = ResultLog(out / f"{name}.jsonl")
    try:
        stats = execute(spec, cases, out, log, ray=args.ray, workers=args.workers, threads=args.threads, desc=name)
        return stats, log.in_order(c.id for c in cases)
    finally:
        log.close()
