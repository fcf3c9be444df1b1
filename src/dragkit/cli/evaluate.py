"""``dragkit eval PROTOCOL``: the paper's evaluation protocols, serially or on a Ray cluster, resumable.

    dragkit eval landmarks --network default --cases 20 --out results/landmarks
    dragkit eval landmarks --network default --cases 200 --out results/landmarks --ray auto
    dragkit eval landmarks --network ffhq.pkl --cases 1000 --out results/ffhq --ray 10.0.0.5:6379

Writes into ``--out``: ``<protocol>.jsonl`` (one line per case, appended as cases finish), ``run.json`` (the
settings: a rerun with the same ones resumes, with others it is refused), ``summary.md`` and ``summary.json`` (the
numbers, the paper's beside them) and figures; files of single cases go to ``cases/<id>/``.

Protocols:

- ``landmarks``: the paper's Table 1 on a face model. ``--cases N`` face pairs, each dragged with every count of
  ``--points`` (1 and 5 by default; 68 is the paper's third column): see :mod:`dragkit.jobs.landmarks`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from dragkit.cli._run import add_run_options, check_run_options
from dragkit.cli.options import add_drag_options, explicit_drag_options

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``eval`` sub-command and its protocols."""
    p = subparsers.add_parser(
        "eval",
        help="run an evaluation protocol (face landmarks), serially or on a Ray cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    protocols = p.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    lm = protocols.add_parser(
        "landmarks",
        help="the paper's face-landmark protocol (Table 1)",
        description="Drag face 1's dlib landmarks to face 2's and measure the mean distance (MD) at 512×512.",
    )
    lm.add_argument("--network", default="default", help="a face model: name or checkpoint (default: default)")
    lm.add_argument("--cases", type=int, default=20, metavar="N", help="face pairs (default 20)")
    lm.add_argument("--points", type=int, nargs="+", default=[1, 5], help="point counts per pair (default 1 5)")
    lm.add_argument(
        "--draw-points",
        type=int,
        nargs="+",
        default=None,
        help="draw the landmark subsets as a run with these counts would (default: --points); '--points 5 "
        "--draw-points 1 5 68' edits the same 5-point subsets as the paper's three columns",
    )
    lm.add_argument("--psi", type=float, default=0.7, help="truncation of both faces (default 0.7)")
    lm.add_argument("--seed-base", type=int, default=0, help="first seed; pair i uses seeds 2i, 2i+1 from here")
    lm.add_argument("--predictor", default=None, help="shape_predictor_68_face_landmarks.dat (default: found/fetched)")
    lm.add_argument("--examples", type=int, default=4, metavar="K", help="pairs drawn in examples.png (default 4)")
    lm.add_argument(
        "--oracle",
        action="store_true",
        help="research: put the handles where dlib finds the landmarks before every step (perfect tracking)",
    )
    lm.add_argument(
        "--inverted",
        default=None,
        metavar="DIR",
        help="research: start from face 1 inverted (DIR/seed<NNNN>/generator and latent.pt per first seed)",
    )
    add_run_options(lm)
    add_drag_options(lm, skip=("stop_rule",))  # the protocol's stop distance is set per edit
    lm.set_defaults(func=run_landmarks)


def run_landmarks(args: argparse.Namespace) -> int:
    """Build the cases, run them, write the report."""
    from dragkit.engine import DragConfig
    from dragkit.jobs.execute import ResultLog, check_run_settings, execute
    from dragkit.jobs.landmarks import LandmarkSpec, landmark_cases, summarise
    from dragkit.jobs.report import landmarks_report

    check_run_options(args)
    cases = landmark_cases(args.cases, args.points, args.seed_base, args.draw_points)
    config = DragConfig(**explicit_drag_options(args))
    spec = LandmarkSpec(
        network=args.network,
        device=args.device,
        config=config.to_dict(),
        psi=args.psi,
        predictor=args.predictor,
        oracle=args.oracle,
        inverted=args.inverted,
        panels=args.examples,
    )
    out = Path(args.out)
    settings = {
        "protocol": "landmarks",
        "network": args.network,
        "device": args.device,
        "config": spec.config,
        "psi": args.psi,
        "seed_base": args.seed_base,
        "draw_points": args.draw_points or args.points,
        "oracle": args.oracle,
        "inverted": args.inverted,
    }
    check_run_settings(out, settings)
    log = ResultLog(out / "landmarks.jsonl")
    try:
        stats = execute(spec, cases, out, log, ray=args.ray, workers=args.workers, threads=args.threads, desc="edits")
        records = log.in_order(c.id for c in cases)
    finally:
        log.close()
    summary = summarise(records, args.points)
    landmarks_report(out, summary, stats, settings, records)
    print((out / "summary.md").read_text(encoding="utf-8"))
    return 1 if stats.failed else 0
