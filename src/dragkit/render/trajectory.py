"""A drag's trajectory videos, off the drag's hot path: which steps get a frame, and the files they make.

A video shows the latents of an edit in order: position k is the latent after k steps (0 = the start). Rendering a
frame costs about as much as a drag step on CPU, so a video has its own frame count instead of one frame per
step. :func:`frame_stride` plans which steps render a frame during the drag (the step already holds the features
the frame is finished from, so that is the cheapest moment); when the drag stops early, :func:`fill_positions`
names the positions to render afterwards from recorded latents so the video still has evenly spaced frames.
:class:`TrajectoryFrames` keeps the frames at the video's size and writes plain and overlay videos at the end.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dragkit.errors import InvalidInputError
from dragkit.render.overlay import draw_points
from dragkit.render.video import VideoWriter, fit_size

__all__ = ["TrajectoryFrames", "fill_positions", "frame_stride"]


def frame_stride(max_steps: int, frames: int) -> int:
    """Render every ``stride``-th step so that ``max_steps`` steps give about ``frames`` frames (with the final
    image, which is always rendered). ``max_steps`` ≥ 0, ``frames`` ≥ 2."""
    if frames < 2:
        raise InvalidInputError(f"video frames: expected at least 2 (start and end), got {frames}")
    return max(1, math.ceil(max_steps / (frames - 1)))


def fill_positions(have: Sequence[int], first: int, last: int, frames: int) -> list[int]:
    """Positions in [first, last] to render so that ``frames`` frames would be evenly spaced: no gap between
    consecutive frames (``have`` plus the returned ones, ``first`` and ``last`` included) wider than
    ⌈(last − first) / (frames − 1)⌉ steps. ``have``: positions that already have a frame. Sorted."""
    if last < first:
        return []
    max_gap = max(1, math.ceil((last - first) / max(frames - 1, 1)))
    taken = sorted({p for p in have if first <= p <= last} | {first, last})
    out = [p for p in (first, last) if p not in have]
    for p, q in itertools.pairwise(taken):
        pieces = math.ceil((q - p) / max_gap)
        out += [p + round(j * (q - p) / pieces) for j in range(1, pieces)]
    return sorted(out)


class TrajectoryFrames:
    """Frames of one edit, kept at the video's size (uint8 [h, w, 3], the longer side ≤ ``size``; None: as
    rendered) with the handles and targets of each, ready to be written as plain and overlay videos.

    ``image_shape``: the generator's (H, W) in pixels (points and the mask are in those pixels); ``mask``: bool
    [H, W] (True = movable) or None.
    """

    def __init__(self, image_shape: tuple[int, int], size: int | None, mask: np.ndarray | None = None) -> None:
        self.image_shape = image_shape
        self.shape = fit_size(image_shape, size)
        self._scale = (self.shape[1] / image_shape[1], self.shape[0] / image_shape[0])
        self._mask = None
        if mask is not None:  # nearest-neighbour to the video's size, for the overlay's tint
            small = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).resize(
                (self.shape[1], self.shape[0]), Image.Resampling.NEAREST
            )
            self._mask = np.asarray(small) > 127
        self._frames: dict[int, tuple[np.ndarray, list[tuple[float, float]], list[tuple[float, float]]]] = {}

    @property
    def positions(self) -> list[int]:
        """Positions that have a frame, in order."""
        return sorted(self._frames)

    def drop_after(self, position: int) -> None:
        """Forget the frames after ``position`` steps (steps the session went back from)."""
        for p in [p for p in self._frames if p > position]:
            del self._frames[p]

    def add(
        self,
        position: int,
        frame: np.ndarray,
        handles: Sequence[Sequence[float]],
        targets: Sequence[Sequence[float]],
    ) -> None:
        """The frame of the latent after ``position`` steps: uint8 [H, W, 3] at the generator's size; handles and
        targets in its pixels (the handles as tracked in that latent)."""
        a = np.asarray(frame)
        if a.dtype != np.uint8 or a.shape != (*self.image_shape, 3):
            raise InvalidInputError(f"frame: expected uint8 {[*self.image_shape, 3]}, got {a.dtype} {list(a.shape)}")
        if a.shape[:2] != self.shape:
            a = np.asarray(Image.fromarray(a).resize((self.shape[1], self.shape[0]), Image.Resampling.LANCZOS))
        sx, sy = self._scale
        scaled = [[(float(x) * sx, float(y) * sy) for x, y in pts] for pts in (handles, targets)]
        self._frames[position] = (a, scaled[0], scaled[1])

    def write(self, outputs: Sequence[tuple[Path, bool, int | None]], fps: float) -> list[Path]:
        """Write the frames in order to every (path, overlay, size) of ``outputs``: ``.mp4`` or ``.gif``, with points
        and mask drawn when ``overlay``, the longer side at most ``size`` (None: the frames' size). Each overlay is
        drawn once per frame, whatever the number of files. Returns the paths written."""
        if not self._frames:
            raise InvalidInputError(f"{outputs[0][0] if outputs else 'video'}: no frames to write")
        writers = [(VideoWriter(path, fps, size), overlay) for path, overlay, size in outputs]
        try:
            for position in self.positions:
                frame, handles, targets = self._frames[position]
                drawn = draw_points(frame, handles, targets, self._mask) if any(o for _, o in writers) else frame
                for writer, overlay in writers:
                    writer.append(drawn if overlay else frame)
        except BaseException as exc:
            for writer, _ in writers:
                writer.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return [writer.close() for writer, _ in writers]
