"""Point and mask overlays on uint8 frames (no UI imports): handles red, targets blue, arrows between them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from dragkit.errors import InvalidInputError

__all__ = ["HANDLE_COLOR", "TARGET_COLOR", "draw_points"]

HANDLE_COLOR = (230, 30, 30)  # red
TARGET_COLOR = (30, 80, 240)  # blue
ARROW_COLOR = (255, 255, 255)
OUTLINE_COLOR = (0, 0, 0)
FIXED_TINT = (40, 40, 40)  # the held (not movable) region is blended towards this
FIXED_TINT_ALPHA = 0.45


def _points(name: str, points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    out = []
    for p in points:
        try:
            x, y = (float(v) for v in p)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name}: expected (x, y) pairs, got {p!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidInputError(f"{name}: point {p!r} is not finite")
        out.append((x, y))
    return out


def draw_points(
    img: np.ndarray,
    handles: Sequence[Sequence[float]],
    targets: Sequence[Sequence[float]],
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of ``img`` with the drag overlay.

    img: uint8 [H, W, 3] RGB; handles, targets: equally long lists of (x, y) image pixels; mask: optional bool
    [H, W], True = movable — the fixed region is darkened so the movable one stands out. Each handle is a red dot,
    each target a blue dot, with a white arrow from handle to target; sizes scale with the image.
    Returns uint8 [H, W, 3].
    """
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise InvalidInputError(f"img: expected uint8 [H, W, 3], got {a.dtype} {list(a.shape)}")
    H, W = a.shape[:2]
    h, t = _points("handles", handles), _points("targets", targets)
    if len(h) != len(t):
        raise InvalidInputError(f"expected as many targets as handles, got {len(h)} handles and {len(t)} targets")
    out = a.copy()
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_ or m.shape != (H, W):
            raise InvalidInputError(f"mask: expected bool [{H}, {W}], got {m.dtype} {list(m.shape)}")
        fixed = ~m
        tint = np.asarray(FIXED_TINT, dtype=np.float32)
        out[fixed] = (out[fixed] * (1 - FIXED_TINT_ALPHA) + tint * FIXED_TINT_ALPHA).round().astype(np.uint8)
    im = Image.fromarray(out)
    draw = ImageDraw.Draw(im)
    size = min(H, W)
    radius = max(1.5, size / 90)
    width = max(1, round(size / 256))
    for (hx, hy), (tx, ty) in zip(h, t, strict=True):
        _arrow(draw, (hx, hy), (tx, ty), radius, width)
    for (hx, hy), (tx, ty) in zip(h, t, strict=True):
        _dot(draw, (tx, ty), radius, TARGET_COLOR)
        _dot(draw, (hx, hy), radius, HANDLE_COLOR)
    return np.asarray(im, dtype=np.uint8).copy()


def _dot(draw: ImageDraw.ImageDraw, p: tuple[float, float], radius: float, color: tuple[int, int, int]) -> None:
    x, y = p
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color, outline=OUTLINE_COLOR)


def _arrow(
    draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float], radius: float, width: int
) -> None:
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy)
    if length < 2 * radius:
        return
    ux, uy = dx / length, dy / length
    head = min(3 * radius, length / 2)
    tip = (end[0] - ux * radius, end[1] - uy * radius)  # stop at the target dot's edge
    base = (tip[0] - ux * head, tip[1] - uy * head)
    draw.line([start, base], fill=ARROW_COLOR, width=width)
    half = head * 0.5
    left = (base[0] - uy * half, base[1] + ux * half)
    right = (base[0] + uy * half, base[1] - ux * half)
    draw.polygon([tip, left, right], fill=ARROW_COLOR)
