"""``dragkit eval PROTOCOL``: the paper's evaluation protocols, serially or on a Ray cluster, resumable.

    dragkit eval landmarks --network default --cases 20 --out results/landmarks
    dragkit eval landmarks --network default --cases 200 --out results/landmarks --ray auto
    dragkit eval landmarks --network ffhq.pkl --cases 1000 --out results/ffhq --ray 10.0.0.5:6379

Writes into ``--out``: ``<protocol>.jsonl`` (one line per case, appended as cases finish), ``run.json`` (the
settings: a rerun with the same ones resumes, with others it is refused), ``summary.md`` and ``summary.json`` (the
numbers, the paper's beside them) and figures; files of single cases go to ``cases/<id>/``.

Protocols (:mod:`dragkit.jobs`):

- ``landmarks``: the paper's Table 1 on a face model. ``--cases N`` face pairs, each dragged with every count of
  ``--points`` (1 and 5 by default; 68 is the paper's third column).
- ``reconstruction``: the shape of the paper's Table 2. ``--cases N`` latent pairs (w1, a perturbed w2); I1 is
  dragged along 32 optical-flow correspondences for at most 100 steps; MSE against I2 inside and outside the
  region that moves, and LPIPS where its VGG16 weights are present.
- ``tracking``: every registered tracker and OpenCV's Lucas–Kanade, replayed on recorded drags of a face model and
  measured against dlib's landmarks on every step; ranked.
- ``speed``: median ms per drag step and the seconds of a whole edit, per model and device.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dragkit.cli._run import add_run_options, check_run_options, run_cases
from dragkit.cli.options import add_drag_options, explicit_drag_options
from dragkit.errors import InvalidInputError

if TYPE_CHECKING:
    from dragkit.engine import DragConfig
    from dragkit.jobs.execute import RunStats

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``eval`` sub-command and its protocols."""
    p = subparsers.add_parser(
        "eval",
        help="run an evaluation protocol (landmarks, reconstruction, tracking, speed), serially or on a Ray cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    protocols = p.add_subparsers(dest="protocol", metavar="PROTOCOL", required=True)
    lm = protocols.add_parser(
        "landmarks",
        help="the paper's face-landmark protocol (Table 1)",
        description="Drag face 1's dlib landmarks to face 2's and measure the mean distance (MD) at 512×512.",
    )
    _add_cases(lm, 20, "face pairs", face=True)
    lm.add_argument("--points", type=int, nargs="+", default=[1, 5], help="point counts per pair (default 1 5)")
    lm.add_argument(
        "--draw-points",
        type=int,
        nargs="+",
        default=None,
        help="draw the landmark subsets as a run with these counts would (default: --points); '--points 5 "
        "--draw-points 1 5 68' edits the same 5-point subsets as the paper's three columns",
    )
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
    lm.set_defaults(func=run_landmarks, default_steps=300)

    rec = protocols.add_parser(
        "reconstruction",
        help="paired image reconstruction along optical-flow correspondences (the shape of Table 2)",
        description="Drag I1 along dense-flow correspondences towards I2 (a perturbed latent); MSE to I2.",
    )
    _add_cases(rec, 20, "latent pairs", face=False)
    rec.add_argument(
        "--perturb", type=float, default=0.5, help="how far w2's pose rows (4², 8²) lean towards another latent (0.5)"
    )
    rec.add_argument("--handles", type=int, default=32, metavar="K", help="correspondences per pair (default 32)")
    rec.add_argument("--vgg16", default=None, metavar="PTH", help="torchvision's VGG16 weights for LPIPS")
    rec.add_argument("--examples", type=int, default=4, metavar="K", help="pairs drawn in examples.png (default 4)")
    add_run_options(rec)
    add_drag_options(rec)
    rec.set_defaults(func=run_reconstruction, default_steps=100)

    tr = protocols.add_parser(
        "tracking",
        help="every tracker and Lucas–Kanade against dlib's landmarks on recorded drags of a face model",
        description="Record drags of face landmarks, replay every tracker on them, measure against dlib.",
    )
    _add_cases(tr, 10, "face pairs", face=True)
    tr.add_argument("--points", type=int, default=5, help="landmarks dragged per pair (default 5)")
    add_run_options(tr)
    add_drag_options(tr)
    tr.set_defaults(func=run_tracking, default_steps=100)

    sp = protocols.add_parser(
        "speed",
        help="step time and edit time per model (resolution) and device",
        description="Median ms per drag step and the seconds of a whole edit, for each model on each device.",
    )
    sp.add_argument("--network", nargs="+", default=["default"], help="models: names or checkpoints (default: default)")
    sp.add_argument("--devices", nargs="+", default=["cpu"], help="torch devices, e.g. cpu cuda (default: cpu)")
    sp.add_argument("--timed-steps", type=int, default=10, metavar="N", help="steps timed one by one (default 10)")
    sp.add_argument("--edit-steps", type=int, default=30, metavar="N", help="steps of the timed edit (default 30)")
    sp.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed steps first (default 2)")
    add_run_options(sp)
    add_drag_options(sp, skip=("stop_rule", "max_steps"))
    sp.set_defaults(func=run_speed, default_steps=300)


def _add_cases(p: argparse.ArgumentParser, cases: int, what: str, face: bool) -> None:
    """``--network``, ``--cases``, ``--psi``, ``--seed-base`` (and ``--predictor`` for the face protocols)."""
    model = "a face model" if face else "model"
    p.add_argument("--network", default="default", help=f"{model}: name or checkpoint (default: default)")
    p.add_argument("--cases", type=int, default=cases, metavar="N", help=f"{what} (default {cases})")
    p.add_argument("--psi", type=float, default=0.7, help="truncation of the seeds' latents (default 0.7)")
    pairs = "; pair i uses seeds 2i, 2i+1 from here" if face else ""
    p.add_argument("--seed-base", type=int, default=0, help=f"first seed (default 0){pairs}")
    if face:
        p.add_argument("--predictor", default=None, help="shape_predictor_68_face_landmarks.dat (default: found)")


def run_landmarks(args: argparse.Namespace) -> int:
    """Face landmarks: build the cases, run them, write the report."""
    from dragkit.jobs.landmarks import LandmarkSpec, landmark_cases
    from dragkit.jobs.report import landmarks_report

    check_run_options(args)
    cases = landmark_cases(args.cases, args.points, args.seed_base, args.draw_points)
    config = _config(args)
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
    settings = _settings(
        "landmarks",
        args,
        spec.config,
        psi=args.psi,
        seed_base=args.seed_base,
        draw_points=args.draw_points or args.points,
        oracle=args.oracle,
        inverted=args.inverted,
    )
    return _run(args, "landmarks", spec, cases, settings, partial(landmarks_report, points=args.points))


def _config(args: argparse.Namespace) -> DragConfig:
    """The drag options given, with the protocol's own step budget unless ``--steps`` was given."""
    from dragkit.engine import DragConfig

    options = explicit_drag_options(args)
    options.setdefault("max_steps", args.default_steps)
    return DragConfig(**options)


def _settings(protocol: str, args: argparse.Namespace, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """What ``run.json`` keeps: the protocol, model, device, drag settings and the protocol's own options."""
    return {"protocol": protocol, "network": args.network, "device": args.device, "config": config, **extra}


def _run(
    args: argparse.Namespace,
    name: str,
    spec: Any,
    cases: list[Any],
    settings: dict[str, Any],
    report: Callable[[Path, RunStats, dict[str, Any], list[dict[str, Any]]], object],
) -> int:
    """Run the cases not finished yet (:func:`~dragkit.cli._run.run_cases`), write the report from every record,
    print the summary; exit status 1 when a case failed."""
    out = Path(args.out)
    stats, records = run_cases(args, name, spec, cases, settings)
    report(out, stats, settings, records)
    print((out / "summary.md").read_text(encoding="utf-8"))
    return 1 if stats.failed else 0


def run_reconstruction(args: argparse.Namespace) -> int:
    """Paired reconstruction: build the cases, run them, write the report."""
    from dragkit.jobs.reconstruction import ReconstructionSpec, reconstruction_cases
    from dragkit.jobs.report import reconstruction_report

    check_run_options(args)
    if args.handles < 1:
        raise InvalidInputError(f"--handles: expected an int ≥ 1, got {args.handles}")
    cases = reconstruction_cases(args.cases, args.seed_base)
    spec = ReconstructionSpec(
        network=args.network,
        device=args.device,
        config=_config(args).to_dict(),
        psi=args.psi,
        perturb=args.perturb,
        handles=args.handles,
        vgg16=args.vgg16,
        panels=args.examples,
    )
    settings = _settings(
        "reconstruction",
        args,
        spec.config,
        psi=args.psi,
        seed_base=args.seed_base,
        perturb=args.perturb,
        handles=args.handles,
    )
    return _run(args, "reconstruction", spec, cases, settings, reconstruction_report)


def run_tracking(args: argparse.Namespace) -> int:
    """Tracking: record drags, replay every tracker and Lucas–Kanade, write the report."""
    from dragkit.jobs.landmarks import landmark_cases
    from dragkit.jobs.report import tracking_report
    from dragkit.jobs.tracking import TrackingSpec

    check_run_options(args)
    cases = landmark_cases(args.cases, [args.points], args.seed_base)
    spec = TrackingSpec(
        network=args.network, device=args.device, config=_config(args).to_dict(), psi=args.psi, predictor=args.predictor
    )
    settings = _settings("tracking", args, spec.config, psi=args.psi, seed_base=args.seed_base, points=args.points)
    return _run(args, "tracking", spec, cases, settings, tracking_report)


def run_speed(args: argparse.Namespace) -> int:
    """Speed: one case per model and device, the report."""
    from dragkit.jobs.report import speed_report
    from dragkit.jobs.speed import SpeedSpec, speed_cases

    check_run_options(args)
    for option in ("timed_steps", "edit_steps"):
        if getattr(args, option) < 1:
            raise InvalidInputError(f"--{option.replace('_', '-')}: expected an int ≥ 1")
    if args.warmup < 0:
        raise InvalidInputError("--warmup: expected an int ≥ 0")
    cases = speed_cases(args.network, args.devices)
    spec = SpeedSpec(_config(args).to_dict(), args.warmup, args.timed_steps, args.edit_steps)
    settings = {
        **_settings("speed", args, spec.config),
        "device": args.devices,
        "warmup": args.warmup,
        "timed_steps": args.timed_steps,
        "edit_steps": args.edit_steps,
        "threads": args.threads,
    }
    return _run(args, "speed", spec, cases, settings, speed_report)
