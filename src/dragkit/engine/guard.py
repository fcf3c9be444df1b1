"""The quality guard: is the image starting to degrade where the drag works? (docs/engine.md, "Quality guard").

Pure functions. Every :data:`GUARD_EVERY` steps the session renders the frame of the step's latent and measures
the *sharpness* of the edit region — the variance of the 4-neighbour Laplacian of the grey image — against the same
region in the frame the segment started from. A ratio below :data:`SHARPNESS_FLOOR` means the region has blurred or
smeared (the failure of over-driven drags: the face turns soft, texture turns to mush); the session then returns
to the last checked latent that was still sharp and says why. The region is the movable part of the mask where
there is one, else the box around the handles and targets padded by an eighth of the image; a region under
:data:`GUARD_MIN_SIDE` pixels a side is not measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "GUARD_EVERY",
    "GUARD_MIN_SIDE",
    "SHARPNESS_FLOOR",
    "Box",
    "guard_region",
    "sharpness",
]

#: Steps between two checks (a check renders one frame: about one step's cost for the default model, so ~10 %).
GUARD_EVERY = 10
#: Sharpness ratio (current / segment start) below which the guard trips.
SHARPNESS_FLOOR = 0.8
#: Regions narrower than this (pixels) are not measured: too few pixels for a sharpness (tiny test models).
GUARD_MIN_SIDE = 48

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), image pixels


def guard_region(points: Sequence[tuple[float, float]], mask: torch.Tensor | None, image_shape: tuple[int, int]) -> Box:
    """The region the guard measures: the bounding box of ``mask``'s movable pixels (bool [H, W]) when it has
    some, else of ``points`` (x, y) padded by max(H, W) / 8; clipped to the image and at least 8 × 8 pixels."""
    H, W = image_shape
    if mask is not None and bool(mask.any()) and not bool(mask.all()):
        rows = torch.nonzero(mask.any(dim=1)).flatten()
        cols = torch.nonzero(mask.any(dim=0)).flatten()
        left, top, right, bottom = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    elif points:
        pad = max(H, W) / 8
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        left, top = int(min(xs) - pad), int(min(ys) - pad)
        right, bottom = int(max(xs) + pad) + 1, int(max(ys) + pad) + 1
    else:
        left, top, right, bottom = 0, 0, W, H
    left, top = max(0, min(left, W - 8)), max(0, min(top, H - 8))
    right, bottom = min(W, max(right, left + 8)), min(H, max(bottom, top + 8))
    return left, top, right, bottom


def sharpness(image: torch.Tensor, box: Box) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image inside ``box``; image [1, 3, H, W] in about
    [-1, 1] → a float ≥ 0 (0 for a flat region)."""
    left, top, right, bottom = box
    region = _grey(image[..., top:bottom, left:right])[None, None]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=region.device)[None, None]
    lap = F.conv2d(region, kernel)
    return float(lap.var()) if lap.numel() > 1 else 0.0


def _grey(image: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] in about [-1, 1] → [H, W] float32 luma."""
    rgb = image[0].detach().to(torch.float32)
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
