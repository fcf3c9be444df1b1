"""Generator output → displayable pixels (the lowest layer, so the engine and io both use it)."""

from __future__ import annotations

import numpy as np
import torch

from dragkit.errors import InvalidInputError

__all__ = ["to_uint8"]


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """[N, C, H, W] (or [C, H, W]) float in [-1, 1] → uint8 [N, H, W, C] (or [H, W, C]).

    NVIDIA's rounding: ``(img * 127.5 + 128).clamp(0, 255)`` then truncation to uint8.
    """
    t = torch.as_tensor(img).detach()
    if t.ndim not in (3, 4) or not t.is_floating_point():
        raise InvalidInputError(f"expected a float image [N, C, H, W] or [C, H, W], got {t.dtype} {list(t.shape)}")
    t = (t.to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    t = t.permute(0, 2, 3, 1) if t.ndim == 4 else t.permute(1, 2, 0)
    return t.cpu().numpy()
