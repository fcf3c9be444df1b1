"""Mask brush strokes: painting a polyline of discs into a boolean mask (True = movable)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from dragkit.studio.protocol import ProtocolError

#: Most pixels a stroke's segment boxes may cover together, in images (a bound on a stroke's cost).
MAX_STROKE_IMAGES = 16


def paint_stroke(mask: np.ndarray, points: list[tuple[float, float]], radius: float, value: bool) -> np.ndarray:
    """A copy of bool ``mask`` [H, W] where every pixel whose centre lies within ``radius`` of the polyline
    ``points`` (x, y; pixel centres at integers) is set to ``value`` — discs joined by capsules.

    Each segment only looks at the pixels of its bounding box that are not painted yet. Raises
    :class:`ProtocolError` ("too_large") when the segments' boxes would cover more than ``MAX_STROKE_IMAGES``
    images' worth of pixels, which no hand-drawn stroke does (its samples are a few pixels apart).
    """
    H, W = mask.shape
    out = mask.copy()
    r = float(radius)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    segments = list(itertools.pairwise(pts)) if len(pts) > 1 else [(pts[0], pts[0])]
    boxes = []
    for a, b in segments:
        x0, x1 = max(0, math.floor(min(a[0], b[0]) - r)), min(W - 1, math.ceil(max(a[0], b[0]) + r))
        y0, y1 = max(0, math.floor(min(a[1], b[1]) - r)), min(H - 1, math.ceil(max(a[1], b[1]) + r))
        if x0 <= x1 and y0 <= y1:
            boxes.append((a, b, x0, x1, y0, y1))
    if sum((x1 - x0 + 1) * (y1 - y0 + 1) for _, _, x0, x1, y0, y1 in boxes) > MAX_STROKE_IMAGES * H * W:
        raise ProtocolError("too_large", "mask stroke too large: paint it in smaller strokes")
    for a, b, x0, x1, y0, y1 in boxes:
        window = out[y0 : y1 + 1, x0 : x1 + 1]
        ys, xs = np.nonzero(
            window != value
        )  # only pixels not painted yet: a wide brush costs one image, not one per segment
        if not len(ys):
            continue
        px, py = xs + float(x0), ys + float(y0)
        d = b - a
        length2 = float(d @ d)
        t = 0.0 if length2 == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / length2, 0.0, 1.0)
        inside = (px - (a[0] + t * d[0])) ** 2 + (py - (a[1] + t * d[1])) ** 2 <= r * r
        window[ys[inside], xs[inside]] = value
    return out


def decimate(points: list[tuple[float, float]], spacing: float) -> list[tuple[float, float]]:
    """Drop stroke samples closer than ``spacing`` pixels to the last kept one (the painted shape barely
    changes); the first and the last sample are always kept."""
    kept = [points[0]]
    for p in points[1:]:
        if math.hypot(p[0] - kept[-1][0], p[1] - kept[-1][1]) >= spacing:
            kept.append(p)
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    return kept
