"""One headless drag and the files it writes — what ``dragkit drag`` and each case of ``dragkit batch`` do.

:func:`drag_and_write` runs a prepared :class:`~dragkit.engine.DragSession` to its end and writes into a folder:
``final.png``, ``final_overlay.png``; the trajectory videos ``trajectory.mp4`` / ``trajectory.gif`` and their
``_overlay`` forms (the edit from start to end in evenly spaced frames); ``latent.pt`` (the final W+ latent, a plain
tensor [1, num_ws, w_dim]); ``session.pt`` (the whole session, for ``DragSession.load``) with a readable
``session.json``; and ``result.json`` (handles, targets, distances, steps, seconds, why it stopped, the settings).
Every file is written under a temporary name and renamed when complete.

Video frames are rendered by every k-th step (k from the step budget and the frame count: the step already holds
the features a frame is finished from); a drag that stops early gets the missing frames rendered afterwards from
the recorded latents, so the video is evenly spaced either way.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from tqdm import tqdm

from dragkit.engine import DragSession, StepResult
from dragkit.errors import InvalidInputError
from dragkit.files import atomic_path, remove_stale_partials
from dragkit.io.images import save_png
from dragkit.nn.images import to_uint8
from dragkit.render import draw_points
from dragkit.render.trajectory import TrajectoryFrames, fill_positions, frame_stride
from dragkit.render.video import GIF_SIZE, VIDEO_FRAMES, VIDEO_SIZE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoOptions:
    """The trajectory videos: ``frames`` ≥ 2 evenly spaced over the edit, at ``fps``; ``size`` / ``gif_size``: the
    longer side of the MP4s / GIFs in pixels (None: the model's size)."""

    frames: int = VIDEO_FRAMES
    fps: float = 10.0
    size: int | None = VIDEO_SIZE
    gif_size: int | None = GIF_SIZE


@dataclass
class DragRun:
    """What :func:`drag_and_write` did: the ``result.json`` it wrote and the last step's result (None when no step
    ran)."""

    result: dict[str, Any]
    last: StepResult | None


def load_latent(source: Path | BinaryIO, num_ws: int, w_dim: int, name: str | None = None) -> torch.Tensor:
    """A W+ latent file (``torch.save`` of a tensor, read with ``weights_only=True``; a path or the file's bytes as
    a file object) → float32 [1, num_ws, w_dim]; anything else is an :class:`InvalidInputError` naming the file
    (``name``, default the path) and the shape."""
    name = name or str(source)
    try:
        t = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InvalidInputError(f"{name}: no such file") from None
    except Exception as exc:
        raise InvalidInputError(f"{name}: not a saved tensor ({type(exc).__name__})") from None
    if not isinstance(t, torch.Tensor) or t.shape != (1, num_ws, w_dim) or not t.is_floating_point():
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise InvalidInputError(f"{name}: expected a float tensor [1, {num_ws}, {w_dim}], got {shape}")
    if not torch.isfinite(t).all():
        raise InvalidInputError(f"{name}: the latent holds NaN or infinite values")
    return t.to(torch.float32)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def stop_reason(last: StepResult | None, steps: int) -> str:
    """Why a drag ended: "arrived", "degraded" (the quality guard), "max_steps" or "interrupted"."""
    if last is not None and last.degraded:
        return "degraded"
    if last is not None and last.done:
        return "arrived"
    return "max_steps" if last is not None and last.step >= steps else "interrupted"


def drag_and_write(
    sess: DragSession,
    out: Path,
    *,
    network: str,
    video: VideoOptions | None = VideoOptions(),
    resumed_from: str | None = None,
    progress: bool = True,
) -> DragRun:
    """Run ``sess`` (points and mask set) for up to its ``max_steps`` and write its files into ``out`` (created).

    Ctrl-C ends the drag early and still writes the results so far (``stopped: "interrupted"``). ``network``: how
    the model was named, recorded in ``result.json``; ``video``: None writes no videos (faster).
    """
    mask = sess.mask
    steps = sess.settings.max_steps
    first_step = sess.step_count
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)  # what a killed earlier run left
    frames = None if video is None else TrajectoryFrames(sess.image_shape, video.size, mask)
    stride = 0 if video is None else frame_stride(steps, video.frames)
    latents = {first_step: sess.ws.detach().clone()} if frames else {}  # for frames rendered after the drag

    bar = tqdm(total=steps, desc="drag", unit="step", disable=None if progress else True)
    last: StepResult | None = None

    def on_step(result: StepResult) -> None:
        nonlocal last
        last = result
        bar.update(1)
        bar.set_postfix(dist=f"{max(result.distances):.1f}", loss="-" if result.loss is None else f"{result.loss:.4f}")
        if frames is not None:
            if result.frame is not None:  # the frame of the latent this step started from
                frames.add(result.step - 1, result.frame, result.handles, result.targets)
            latents[result.step] = sess.ws.detach().clone()

    start = time.perf_counter()
    try:
        sess.run(max_steps=steps, callback=on_step, render_every=stride)
    except KeyboardInterrupt:
        logger.warning("interrupted after %d steps: writing the results so far", sess.step_count)
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    final = sess.status()
    image = sess.image()
    video_start = time.perf_counter()
    if frames is not None and video is not None:
        _write_videos(sess, out, frames, video, latents, first_step, last, final, image, progress)
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
        "video_seconds": None if frames is None else round(video_seconds, 3),
        "video_frames": None if frames is None else len(frames.positions),
        "done": final.done,
        "stopped": stop_reason(last, steps),
        "sharpness": None if last is None else last.sharpness,
        "config": sess.settings.to_dict(),
        "network": network,
        "seed": sess.meta.get("seed"),
        "trunc": sess.meta.get("psi"),
        "resumed_from": resumed_from,
        "steps_this_run": sess.step_count - first_step,
    }
    write_json(out / "result.json", result)
    write_json(
        out / "session.json",
        {
            "model_id": sess.model_id,
            "seed": result["seed"],
            "trunc": result["trunc"],
            "config": sess.settings.to_dict(),
            "mask": mask is not None,
            "targets": [list(p) for p in final.targets],
            "trajectory": [r.to_dict() for r in sess.trajectory],
            "tensors": "session.pt (w0, current ws, mask, Adam state; DragSession.load)",
        },
    )
    return DragRun(result, last)


def _write_videos(
    sess: DragSession,
    out: Path,
    frames: TrajectoryFrames,
    video: VideoOptions,
    latents: dict[int, torch.Tensor],
    first_step: int,
    last: StepResult | None,
    final: StepResult,
    image: Any,
    progress: bool,
) -> None:
    """Complete the evenly spaced frames from the recorded latents and write the four videos."""
    end = sess.step_count
    if last is not None and last.done:
        end -= 1  # the arrived step did not move the latent: the image is the one it started from
    frames.drop_after(end)  # the quality guard went back from the steps after it
    handles, targets = final.handles, final.targets
    if end not in frames.positions:
        frames.add(end, image, handles, targets)
    fill = fill_positions(frames.positions, first_step, end, video.frames)
    trajectory = {r.step - 1: r.handles for r in sess.trajectory}
    bar = tqdm(fill, desc="video frames", unit="frame", disable=None if (fill and progress) else True)
    for position in bar:
        with torch.no_grad():
            out_image = sess.generator.synthesize(latents[position], 0).image
        assert out_image is not None
        frames.add(position, to_uint8(out_image)[0], trajectory.get(position, handles), targets)
    frames.write(
        [
            (out / "trajectory.mp4", False, None),
            (out / "trajectory_overlay.mp4", True, None),
            (out / "trajectory.gif", False, video.gif_size),
            (out / "trajectory_overlay.gif", True, video.gif_size),
        ],
        video.fps,
    )
