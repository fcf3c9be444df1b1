"""``dragkit drag``: drag handle points to targets on a seed's image (DragGAN), headless.

Writes to ``--outdir``: ``final.png`` and ``final_overlay.png``; ``trajectory.mp4`` / ``trajectory.gif`` and
``trajectory_overlay.mp4`` / ``trajectory_overlay.gif`` (the edit from start to end in ``--video-frames`` evenly
spaced frames, the overlay ones with points, arrows and the mask; 512 px MP4s and 384 px GIFs by default);
``latent.pt`` (the final W+ latent, a plain tensor [1, num_ws, w_dim]); ``session.pt`` (the whole session:
``DragSession.load``) with a readable ``session.json`` beside it (model, seed, config, points and every step's
handles, distances and loss); ``result.json`` = {"handles", "targets", "distances", "steps", "seconds", "config",
…}. Prints the final distances. Every file is written under a temporary name and renamed when complete, so an
interrupted run leaves either the previous file or a whole new one.

Video frames are rendered by every k-th step (k planned from ``--max-steps`` and ``--video-frames``: the step has
the features a frame is finished from, so it costs least there); a drag that arrives early gets the missing frames
rendered afterwards from the recorded latents, so the video is evenly spaced either way.

``--resume SESSION`` continues a saved edit (``session.pt`` of an earlier drag, or one saved in the studio) on its
model: its latent, points, mask, optimiser state and undo history come back; ``--handle/--target`` replace the
points, drag options change its settings (those that define the latent's layout cannot change).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from dragkit.cli._common import add_class_option, class_label, parse_device
from dragkit.cli.options import add_drag_options, explicit_drag_options
from dragkit.errors import InvalidInputError
from dragkit.files import atomic_path, remove_stale_partials
from dragkit.render.video import GIF_SIZE, VIDEO_SIZE

if TYPE_CHECKING:
    from dragkit.engine import StepResult

logger = logging.getLogger(__name__)

#: Default frames of the trajectory videos (2 s at the default 10 frames/s; each costs ~ a drag step).
VIDEO_FRAMES = 20


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


def load_latent(path: Path, num_ws: int, w_dim: int) -> torch.Tensor:
    """A W+ latent file (``torch.save`` of a tensor, read with ``weights_only=True``) → float32 [1, num_ws, w_dim];
    anything else is an :class:`InvalidInputError` naming the file and the shape."""
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InvalidInputError(f"--latent {path}: no such file") from None
    except Exception as exc:
        raise InvalidInputError(f"--latent {path}: not a saved tensor ({type(exc).__name__})") from None
    if not isinstance(t, torch.Tensor) or t.shape != (1, num_ws, w_dim) or not t.is_floating_point():
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise InvalidInputError(f"--latent {path}: expected a float tensor [1, {num_ws}, {w_dim}], got {shape}")
    if not torch.isfinite(t).all():
        raise InvalidInputError(f"--latent {path}: the latent holds NaN or infinite values")
    return t.to(torch.float32)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


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
    from dragkit.io.images import load_mask, save_png
    from dragkit.nn.images import to_uint8
    from dragkit.nn.seeds import z_from_seed
    from dragkit.render import draw_points
    from dragkit.render.trajectory import TrajectoryFrames, fill_positions, frame_stride

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
            ws = load_latent(args.latent, G.num_ws, G.w_dim).to(device)
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
    mask = sess.mask
    steps = sess.settings.max_steps
    first_step = sess.step_count

    out: Path = args.outdir
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)  # what a killed earlier run left
    video = None if args.no_video else TrajectoryFrames(sess.image_shape, args.video_size or None, mask)
    stride = frame_stride(steps, args.video_frames)
    latents = {first_step: sess.ws.detach().clone()} if video else {}  # for frames rendered after the drag

    bar = tqdm(total=steps, desc="drag", unit="step", disable=None)
    last: StepResult | None = None

    def on_step(result: StepResult) -> None:
        nonlocal last
        last = result
        bar.update(1)
        bar.set_postfix(dist=f"{max(result.distances):.1f}", loss="-" if result.loss is None else f"{result.loss:.4f}")
        if video is not None:
            if result.frame is not None:  # the frame of the latent this step started from
                video.add(result.step - 1, result.frame, result.handles, result.targets)
            latents[result.step] = sess.ws.detach().clone()

    start = time.perf_counter()
    try:
        sess.run(max_steps=steps, callback=on_step, render_every=0 if video is None else stride)
    except KeyboardInterrupt:
        logger.warning("interrupted after %d steps: writing the results so far", sess.step_count)
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    final = sess.status()
    image = sess.image()
    stopped = _stop_reason(last, steps)
    video_start = time.perf_counter()
    if video is not None:
        end = sess.step_count
        if last is not None and last.done:
            end -= 1  # the arrived step did not move the latent: the image is the one it started from
        video.drop_after(end)  # the quality guard went back from the steps after it
        if end not in video.positions:
            video.add(end, image, final.handles, final.targets)
        fill = fill_positions(video.positions, first_step, end, args.video_frames)
        trajectory = {r.step - 1: r.handles for r in sess.trajectory}
        for position in tqdm(fill, desc="video frames", unit="frame", disable=None if fill else True):
            with torch.no_grad():
                out_image = sess.generator.synthesize(latents[position], 0).image
            assert out_image is not None
            video.add(position, to_uint8(out_image)[0], trajectory.get(position, final.handles), final.targets)
        gif_size = args.gif_size or None
        video.write(
            [
                (out / "trajectory.mp4", False, None),
                (out / "trajectory_overlay.mp4", True, None),
                (out / "trajectory.gif", False, gif_size),
                (out / "trajectory_overlay.gif", True, gif_size),
            ],
            args.fps,
        )
    video_seconds = time.perf_counter() - video_start
    save_png(image, out / "final.png")
    save_png(draw_points(image, final.handles, final.targets, mask), out / "final_overlay.png")
    with atomic_path(out / "latent.pt") as tmp:
        torch.save(sess.ws.cpu().clone(), tmp)
    sess.save(out / "session.pt")
    result = {
        "handles": [list(p) for p in final.handles],
        "targets": [list(p) for p in final.targets],
        "distances": final.distances,
        "steps": sess.step_count,
        "seconds": round(seconds, 3),
        "video_seconds": None if video is None else round(video_seconds, 3),
        "video_frames": None if video is None else len(video.positions),
        "done": final.done,
        "stopped": stopped,
        "sharpness": None if last is None else last.sharpness,
        "config": sess.settings.to_dict(),
        "network": str(network),
        "seed": sess.meta.get("seed"),
        "trunc": sess.meta.get("psi"),
        "resumed_from": None if args.resume is None else str(args.resume),
        "steps_this_run": sess.step_count - first_step,
    }
    _write_json(out / "result.json", result)
    session_summary = {
        "model_id": sess.model_id,
        "seed": result["seed"],
        "trunc": result["trunc"],
        "config": sess.settings.to_dict(),
        "mask": mask is not None,
        "targets": [list(p) for p in final.targets],
        "trajectory": [r.to_dict() for r in sess.trajectory],
        "tensors": "session.pt (w0, current ws, mask, Adam state; DragSession.load)",
    }
    _write_json(out / "session.json", session_summary)
    logger.info("wrote %s", out)
    print("final distances (px): " + ", ".join(f"{d:.2f}" for d in final.distances))
    if last is not None and last.degraded:
        print(
            f"stopped: the image started to degrade (edit region at {last.sharpness:.0%} of its sharpness) — kept "
            f"step {final.step}, the last sharp one; undo a few steps or add a mask, or go on with --no-guard"
        )
    return 0


def _stop_reason(last: StepResult | None, steps: int) -> str:
    """Why the drag ended: "arrived", "degraded" (the quality guard), "max_steps" or "interrupted"."""
    if last is not None and last.degraded:
        return "degraded"
    if last is not None and last.done:
        return "arrived"
    return "max_steps" if last is not None and last.step >= steps else "interrupted"
