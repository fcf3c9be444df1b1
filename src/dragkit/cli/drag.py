"""``dragkit drag``: drag handle points to targets on a seed's image (DragGAN), headless.

Writes to ``--outdir`` what :mod:`dragkit.jobs.drag` describes: ``final.png`` and ``final_overlay.png``; the
trajectory videos ``trajectory.mp4`` / ``trajectory.gif`` and ``trajectory_overlay.mp4`` / ``.gif`` (the edit in
``--video-frames`` evenly spaced frames, the overlay ones with points, arrows and the mask; 512 px MP4s and 384 px
GIFs by default); ``latent.pt`` (the final W+ latent, a plain tensor [1, num_ws, w_dim]); ``session.pt`` (the
whole session: ``DragSession.load``) with a readable ``session.json``; ``result.json`` = {"handles", "targets",
"distances", "steps", "seconds", "stopped", "config", …}. Prints the final distances. Every file is written under a
temporary name and renamed when complete, so an interrupted run leaves either the previous file or a whole new one.

``--resume SESSION`` continues a saved edit (``session.pt`` of an earlier drag, or one saved in the studio) on its
model: its latent, points, mask, optimiser state and undo history come back; ``--handle/--target`` replace the
points, drag options change its settings (those that define the latent's layout cannot change).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import torch

from dragkit.cli._common import add_class_option, class_label, parse_device
from dragkit.cli.options import add_drag_options, explicit_drag_options
from dragkit.errors import InvalidInputError
from dragkit.render.video import GIF_SIZE, VIDEO_FRAMES, VIDEO_SIZE

logger = logging.getLogger(__name__)


def parse_point(text: str, option: str) -> tuple[float, float]:
    """``'X,Y'`` → (x, y) floats."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidInputError(f"{option} {text!r}: expected X,Y (image pixels, e.g. 120,85)") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InvalidInputError(f"{option} {text!r}: coordinates must be finite")
    return x, y


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``drag`` sub-command."""
    p = subparsers.add_parser(
        "drag",
        help="drag handle points to target points (DragGAN)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--network",
        default=None,
        metavar="PATH",
        help="checkpoint path or model name ('default'); with --resume: the saved session's model unless given",
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="SESSION",
        help="continue a saved edit (the session.pt of an earlier drag, or one saved in the studio); "
        "--handle/--target then replace its points, drag options change its settings",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the starting image (default 0)")
    p.add_argument(
        "--latent",
        type=Path,
        default=None,
        metavar="PT",
        help="start from this W+ latent instead of a seed (a tensor [1, num_ws, w_dim], e.g. dragkit invert's "
        "latent.pt)",
    )
    p.add_argument("--trunc", type=float, default=0.7, metavar="PSI", help="truncation psi (default 0.7)")
    add_class_option(p)
    p.add_argument("--handle", action="append", default=[], metavar="X,Y", help="handle point (repeatable)")
    p.add_argument("--target", action="append", default=[], metavar="X,Y", help="target point (repeatable)")
    p.add_argument("--mask", type=Path, default=None, metavar="PNG", help="movable region: white = movable")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--outdir", required=True, type=Path, metavar="DIR", help="output directory")
    p.add_argument("--fps", type=float, default=10.0, help="video frame rate (default 10)")
    p.add_argument(
        "--video-frames",
        type=int,
        default=VIDEO_FRAMES,
        metavar="N",
        help=f"frames of the trajectory videos, evenly spaced over the edit (default {VIDEO_FRAMES}; "
        "each costs about one drag step)",
    )
    p.add_argument(
        "--video-size",
        type=int,
        default=VIDEO_SIZE,
        metavar="PX",
        help=f"longer side of the MP4s in pixels (default {VIDEO_SIZE}; 0: the model's size)",
    )
    p.add_argument(
        "--gif-size",
        type=int,
        default=GIF_SIZE,
        metavar="PX",
        help=f"longer side of the GIFs in pixels (default {GIF_SIZE}; 0: the model's size)",
    )
    p.add_argument("--no-video", action="store_true", help="skip the trajectory videos (faster)")
    add_drag_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the network, drag, write the outputs."""
    from dragkit.engine import DragConfig, DragSession
    from dragkit.engine.persist import read_model_id
    from dragkit.io import load_generator
    from dragkit.io.images import load_mask
    from dragkit.jobs.drag import VideoOptions, drag_and_write, load_latent
    from dragkit.nn.seeds import z_from_seed

    handles = [parse_point(t, "--handle") for t in args.handle]
    targets = [parse_point(t, "--target") for t in args.target]
    if len(handles) != len(targets):
        raise InvalidInputError(f"got {len(handles)} --handle and {len(targets)} --target: give them in pairs")
    if not handles and args.resume is None:
        raise InvalidInputError("give at least one --handle X,Y and one --target X,Y (or --resume SESSION)")
    if args.video_frames < 2:
        raise InvalidInputError(f"--video-frames: expected an int ≥ 2 (start and end), got {args.video_frames}")
    for option, value in (("--video-size", args.video_size), ("--gif-size", args.gif_size)):
        if value < 0:
            raise InvalidInputError(f"{option}: expected pixels ≥ 0 (0: the model's size), got {value}")
    options = explicit_drag_options(args)
    device = parse_device(args.device)
    if args.resume is not None:
        network = args.network if args.network is not None else read_model_id(args.resume)
        G = load_generator(network, device=device)
        sess = DragSession.load(args.resume, G)
        if options:
            sess.set_config(**options)  # fields that define the latent's layout are refused with a clear error
    else:
        if args.network is None:
            raise InvalidInputError("give --network PATH|NAME (or --resume SESSION)")
        network = args.network
        config = DragConfig(**options)
        G = load_generator(network, device=device)
        meta: dict[str, Any]
        if args.latent is not None:
            ws = load_latent(args.latent, G.num_ws, G.w_dim, name=f"--latent {args.latent}").to(device)
            meta = {"latent": str(args.latent)}
        else:
            c = class_label(G, args.class_idx, device)
            z = z_from_seed(args.seed, G.z_dim).to(device)
            with torch.no_grad():
                ws = G.mapping(z, c, psi=args.trunc)
            meta = {"seed": args.seed, "psi": args.trunc}
            if args.class_idx is not None:
                meta["class"] = args.class_idx
        sess = DragSession(G, ws, config=config, model_id=str(network), meta=meta)
    if handles:
        sess.set_points(handles, targets)
    if args.mask is not None:
        sess.set_mask(load_mask(args.mask, sess.image_shape))
    video = (
        None
        if args.no_video
        else VideoOptions(args.video_frames, args.fps, args.video_size or None, args.gif_size or None)
    )
    done = drag_and_write(
        sess,
        args.outdir,
        network=str(network),
        video=video,
        resumed_from=None if args.resume is None else str(args.resume),
    )
    logger.info("wrote %s", args.outdir)
    print("final distances (px): " + ", ".join(f"{d:.2f}" for d in done.result["distances"]))
    last = done.last
    if last is not None and last.degraded:
        print(
            f"stopped: the image started to degrade (edit region at {last.sharpness:.0%} of its sharpness) — kept "
            f"step {done.result['steps']}, the last sharp one; undo a few steps or add a mask, or go on with --no-guard"
        )
    return 0
