"""The optimised terms of a drag step (paper Eq. 1; docs/architecture.md §3, steps 3–5).

- :func:`motion_loss` — motion supervision on the native feature grid, vectorised over points, and
  :func:`motion_loss_reference`, the literal per-point form of the official renderer on the upsampled map; a test
  holds them equal;
- :func:`mask_loss` with :func:`fixed_region_weights` — the fixed-region term (:class:`FixedRegionTerm` caches
  what stays fixed between steps);
- :func:`latent_loss` — the optional latent regulariser.

Points are (x, y) image pixels; feature maps ``[1, C, h, w]``; masks bool ``[H, W]``, True = movable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dragkit.engine.sampling import (
    check_feat,
    image_shape_of,
    inside,
    point_distances,
    sample_at_pixels,
    sample_bilinear,
    upsample_features,
    window_offsets,
)
from dragkit.errors import InvalidInputError

__all__ = [
    "FixedRegionTerm",
    "fixed_region_weights",
    "latent_loss",
    "mask_loss",
    "motion_loss",
    "motion_loss_reference",
]


def motion_loss(
    feat: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    r1: int,
    image_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Motion supervision (paper Eq. 1, official form): Σ_i mean_{q ∈ Ω1(p_i, r1)} |F(q).detach() − F(q + d_i)|.

    Only handles with ‖t_i − p_i‖ > 1 contribute; d_i = (t_i − p_i)/‖t_i − p_i‖ (a one-pixel shift); Ω1 = image
    pixels q with ‖q − p_i‖ < r1 inside the image; the mean runs over Ω1 and the C channels; F(q + d_i) is
    :func:`~dragkit.engine.sampling.sample_bilinear` (zero outside the image). The gradient flows through the
    shifted samples only, which pulls the patch content one step towards the target. Vectorised over points.

    feat: [1, C, h, w]; handles, targets: [N, 2] (x, y); image_shape: (H, W), default (h, w).
    Returns a scalar tensor (a zero connected to ``feat`` when no handle is active).
    """
    check_feat(feat)
    H, W = image_shape_of(feat, image_shape)
    dist = point_distances(handles, targets)
    active = dist > 1
    if not bool(active.any()):
        return feat.sum() * 0.0
    p = handles[active].to(torch.float32)
    d = (targets[active].to(torch.float32) - p) / dist[active].to(torch.float32).unsqueeze(-1)  # [M, 2]
    base = p.floor()
    # floor(p) + [-r1 - 1, r1 + 1]² holds every pixel q with ‖q − p‖ < r1, also for fractional p
    cand = base.unsqueeze(1) + window_offsets(r1 + 1, p.device).unsqueeze(0)  # [M, K, 2]
    valid = inside(cand, H, W) & ((cand - p.unsqueeze(1)).norm(dim=-1) < r1)  # [M, K]
    fixed = sample_at_pixels(feat.detach(), cand, (H, W))  # [M, K, C]
    moved = sample_bilinear(feat, cand + d.unsqueeze(1), (H, W))  # [M, K, C]
    per_pixel = (fixed - moved).abs().sum(dim=-1)  # [M, K]
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    count = valid.sum(dim=1).clamp_min(1).to(feat.dtype) * feat.shape[1]
    return (per_pixel.sum(dim=1) / count).sum()


def motion_loss_reference(
    feat_up: torch.Tensor,
    handles: list[tuple[float, float]],
    targets: list[tuple[float, float]],
    r1: int,
) -> torch.Tensor:
    """Official motion supervision, written like the official DragGAN renderer: one point at a time on the map
    already upsampled to image size [1, C, H, W] (handles are integer pixels after tracking).

    Ω1 is an integer pixel grid here, where the official code builds it with ``torch.linspace(0, h, h)`` (spacing
    h/(h−1), not 1). ``impl="reference"`` sessions use it; a test holds :func:`motion_loss` equal to it.
    """
    H, W = feat_up.shape[-2:]
    device = feat_up.device
    yy, xx = torch.meshgrid(
        torch.arange(H, device=device, dtype=torch.float32),
        torch.arange(W, device=device, dtype=torch.float32),
        indexing="ij",
    )
    loss = feat_up.sum() * 0.0
    for (px, py), (tx, ty) in zip(handles, targets, strict=True):
        direction = torch.tensor([tx - px, ty - py], dtype=torch.float32, device=device)
        norm = torch.linalg.norm(direction)
        if norm > 1:
            distance = ((yy - py) ** 2 + (xx - px) ** 2) ** 0.5
            relis, reljs = torch.where(distance < r1)
            direction = direction / norm
            gridh = (relis + direction[1]) / (H - 1) * 2 - 1
            gridw = (reljs + direction[0]) / (W - 1) * 2 - 1
            grid = torch.stack([gridw, gridh], dim=-1).unsqueeze(0).unsqueeze(0)
            target = F.grid_sample(feat_up.float(), grid, align_corners=True).squeeze(2)
            loss = loss + F.l1_loss(feat_up[:, :, relis, reljs].detach(), target)
    return loss


def fixed_region_weights(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Weights of the fixed region (1 − M) on a ``size`` grid: [H, W] bool (True = movable) → [1, 1, h, w] float.

    At image size this is (1 − M) exactly; on a smaller native grid each cell gets the fraction of its image
    pixels that are fixed (area resampling), so the native mask term approximates the upsampled one.
    """
    if mask.ndim != 2 or mask.dtype != torch.bool:
        raise InvalidInputError(f"mask: expected a bool [H, W] tensor, got {mask.dtype} {list(mask.shape)}")
    fixed = (~mask).to(torch.float32)[None, None]
    if tuple(size) == tuple(mask.shape):
        return fixed
    return F.interpolate(fixed, size=tuple(size), mode="area")


def mask_loss(feat: torch.Tensor, feat0: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Fixed-region term (paper Eq. 1, second part): mean |(F − F0) · (1 − M)| over all C·h·w elements.

    feat, feat0: [1, C, h, w]; fixed: (1 − M) broadcastable to [1, 1, h, w], see :func:`fixed_region_weights`.
    Zero when F == F0; pixels with weight 0 (movable) never count. Returns a scalar.
    """
    check_feat(feat)
    if feat0.shape != feat.shape:
        raise InvalidInputError(f"feat0: expected {list(feat.shape)}, got {list(feat0.shape)}")
    if fixed.shape[-2:] != feat.shape[-2:]:
        raise InvalidInputError(
            f"fixed weights: expected [.., {feat.shape[-2]}, {feat.shape[-1]}], got {list(fixed.shape)}"
        )
    return ((feat - feat0.detach()) * fixed).abs().mean()


def latent_loss(ws: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
    """Latent regularisation mean |ws − w0| over every W+ entry (official ``F.l1_loss(ws, w0)``): scalar."""
    if ws.shape != w0.shape:
        raise InvalidInputError(f"w0: expected {list(ws.shape)}, got {list(w0.shape)}")
    return (ws - w0.detach()).abs().mean()


class FixedRegionTerm:
    """:func:`mask_loss` for one session, caching what stays fixed between steps: the mask weights on the feature
    grid, and F0 brought to the grid of F (the reference path compares maps upsampled to image size)."""

    def __init__(self) -> None:
        self._weights: tuple[torch.Tensor, tuple[int, int], torch.Tensor] | None = None
        self._feat0: tuple[torch.Tensor, tuple[int, int], torch.Tensor] | None = None

    def __call__(self, feat: torch.Tensor, feat0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """feat: [1, C, h, w] (native or upsampled); feat0: [1, C, h0, w0] on the native grid; mask: bool [H, W]."""
        size = (int(feat.shape[-2]), int(feat.shape[-1]))
        if self._weights is None or self._weights[0] is not mask or self._weights[1] != size:
            self._weights = (mask, size, fixed_region_weights(mask, size))
        if self._feat0 is None or self._feat0[0] is not feat0 or self._feat0[1] != size:
            self._feat0 = (feat0, size, upsample_features(feat0, size))
        return mask_loss(feat, self._feat0[2], self._weights[2])
