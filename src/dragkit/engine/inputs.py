"""Validation of what users hand a drag session: points, masks, starting latents. Each raises
:class:`~dragkit.errors.InvalidInputError` naming the input, the expected and the actual value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dragkit.errors import InvalidInputError

__all__ = ["check_mask", "check_meta", "check_points", "check_psi", "check_seed", "check_ws0"]


def check_meta(meta: Any) -> dict[str, Any]:
    """Session metadata: None or a dict of at most 32 short string keys to str, int, float, bool or None."""
    if meta is None:
        return {}
    ok = isinstance(meta, dict) and len(meta) <= 32
    ok = ok and all(isinstance(k, str) and len(k) <= 64 for k in meta)
    ok = ok and all(
        v is None or isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) <= 4096) for v in meta.values()
    )
    if not ok:
        raise InvalidInputError("meta: expected a dict of ≤ 32 short names to strings, numbers, booleans or None")
    return dict(meta)


def check_seed(seed: Any) -> int:
    """A seed for ``z_from_seed``: an int in [0, 2**32)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidInputError(f"seed: expected an int in [0, 2**32), got {seed!r}")
    return seed


def check_psi(psi: Any) -> float:
    """A truncation ψ: a finite number."""
    if isinstance(psi, bool) or not (isinstance(psi, int | float) and math.isfinite(psi)):
        raise InvalidInputError(f"psi: expected a finite float, got {psi!r}")
    return float(psi)


def check_points(name: str, points: Any, image_shape: tuple[int, int]) -> tuple[tuple[float, float], ...]:
    """A list of (x, y) image pixels (or an [N, 2] array) → a tuple of float pairs inside the H × W image."""
    H, W = image_shape
    if isinstance(points, torch.Tensor | np.ndarray):
        points = points.tolist()
    if not isinstance(points, Sequence) or isinstance(points, str):
        raise InvalidInputError(f"{name}: expected a list of (x, y) points, got {type(points).__name__}")
    out = []
    for p in points:
        try:
            x, y = (float(v) for v in p)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name}: expected (x, y) pairs of numbers, got {p!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidInputError(f"{name}: point {p!r} is not finite")
        if not (0 <= x <= W - 1 and 0 <= y <= H - 1):
            raise InvalidInputError(
                f"{name}: point ({x:g}, {y:g}) is outside the {W}×{H} image (x in [0, {W - 1}], y in [0, {H - 1}])"
            )
        out.append((x, y))
    return tuple(out)


def check_mask(mask: Any, image_shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A bool [H, W] array or tensor (True = movable) → a bool tensor on ``device`` (a copy)."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise InvalidInputError(f"mask: expected a bool [H, W] array, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise InvalidInputError(f"mask: expected dtype bool (True = movable), got {mask.dtype}")
    if tuple(mask.shape) != tuple(image_shape):
        raise InvalidInputError(f"mask: expected shape {list(image_shape)} (H, W), got {list(mask.shape)}")
    return mask.to(device).clone()


def check_ws0(ws0: Any, num_ws: int, w_dim: int, device: torch.device) -> torch.Tensor:
    """A finite W+ latent [1, num_ws, w_dim] → a detached float32 copy on ``device``."""
    expected = (1, num_ws, w_dim)
    if not isinstance(ws0, torch.Tensor) or tuple(ws0.shape) != expected:
        got = list(ws0.shape) if isinstance(ws0, torch.Tensor) else type(ws0).__name__
        raise InvalidInputError(f"ws0: expected a W+ latent of shape {list(expected)}, got {got}")
    if not torch.isfinite(ws0).all():
        raise InvalidInputError("ws0: contains NaN or infinite values")
    return ws0.detach().to(device=device, dtype=torch.float32).clone()
