"""``dragkit batch CASES.jsonl --out DIR``: many drags, each writing what ``dragkit drag`` writes, resumable.

    dragkit batch edits.jsonl --network default --out results/edits
    dragkit batch edits.jsonl --out results/edits --ray auto          # a local Ray instance, one worker per core
    dragkit batch edits.jsonl --out results/edits --ray 10.0.0.5:6379 # a Ray cluster

One JSON object per line of CASES.jsonl (see :mod:`dragkit.jobs.batch`): ``handles`` and ``targets`` (lists of
[x, y]), optional ``id``, ``network``, ``seed``/``psi`` or ``latent``, ``class``, ``mask``, ``config`` (drag settings
over the command's), ``video``. Each case's files land in ``DIR/cases/<id>/``; ``DIR/batch.jsonl`` gets one line
per finished case (steps, distances, why it stopped). Run the same command again to resume: finished cases are
skipped, failed ones run again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dragkit.cli._run import add_run_options, check_run_options, run_cases
from dragkit.cli.options import add_drag_options, explicit_drag_options


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``batch`` sub-command."""
    p = subparsers.add_parser(
        "batch",
        help="run many drags from a JSONL file, serially or on a Ray cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("cases", type=Path, metavar="CASES.jsonl", help="one drag per line (JSON)")
    p.add_argument("--network", default=None, help="model of the lines that name none")
    p.add_argument("--no-video", action="store_true", help="no trajectory videos for any case (faster)")
    add_run_options(p)
    add_drag_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read the cases, run them, print a one-line tally."""
    import json

    from dragkit.engine import DragConfig
    from dragkit.jobs.batch import BatchSpec, read_cases

    check_run_options(args)
    cases = read_cases(args.cases, args.network)
    explicit = explicit_drag_options(args)
    config = DragConfig(**explicit).to_dict()  # validated here, once, with the CLI's message
    spec = BatchSpec(device=args.device, defaults={k: config[k] for k in explicit}, video=not args.no_video)
    out = Path(args.out)
    settings = {"command": "batch", "device": args.device, "defaults": config, "video": spec.video}
    stats, records = run_cases(args, "batch", spec, cases, settings)
    stopped: dict[str, int] = {}
    for r in records:
        key = "failed" if "error" in r else r["stopped"]
        stopped[key] = stopped.get(key, 0) + 1
    print(
        f"{len(records)} of {len(cases)} drags in {out / 'cases'} ({stats.done} now, {stats.skipped} earlier, "
        f"{stats.retried} re-run after a worker died; {stats.mode}, {stats.workers} worker(s), {stats.seconds:.0f} s): "
        f"{json.dumps(stopped)}"
    )
    for r in records:
        if "error" in r:
            print(f"  {r['id']}: {r['error']}")
    return 1 if stats.failed else 0
