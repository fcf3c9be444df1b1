"""Where feature values come from: coordinate conventions, bilinear sampling at image pixels, search windows.

Trackers and losses build on these public helpers (docs/architecture.md §3).

Conventions: points are ``[N, 2]`` float tensors of (x, y) *image* pixels, pixel (x, y) being the centre of column
x, row y of an ``H × W`` image; feature maps are ``[1, C, h, w]`` and may be smaller than the image (the native grid
of a synthesis block) or exactly ``H × W`` (an upsampled map). Masks are bool ``[H, W]``, True = movable.

**Feature value at an image pixel.** The official code upsamples F bilinearly to ``H × W`` (``F.interpolate``,
``align_corners=False``) and indexes it. :func:`sample_at_pixels` gives the same value without upsampling: with
``align_corners=False`` the upsampled value at integer pixel X is the native map sampled at
``u = (X + 0.5)·w/W − 0.5`` (clamped to ``[0, w − 1]``) — which is exactly what ``grid_sample(...,
align_corners=False, padding_mode='border')`` computes at the normalised coordinate ``g = (2X + 1)/W − 1``, since
it un-normalises ``u = ((g + 1)·w − 1)/2``. When ``(h, w) == (H, W)`` the mapping is the identity.

**At fractional points** (the shifted patch ``q + d`` of the motion loss) the official code bilinearly interpolates
the *upsampled* map between the four surrounding image pixels (``grid_sample(align_corners=True)``, zero padding).
Bilinear-of-bilinear is not the same as a single bilinear sample at the mapped point (the upsampled map has kinks
at native knots between image pixels), so :func:`sample_bilinear` evaluates the four surrounding image pixels with
:func:`sample_at_pixels` and combines them with the image-lattice weights: equal to the official value for any
scale, and still only ``4 · P`` native samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dragkit.errors import InvalidInputError

__all__ = [
    "cell_size",
    "centred",
    "check_feat",
    "check_points",
    "image_shape_of",
    "inside",
    "point_distances",
    "sample_at_pixels",
    "sample_bilinear",
    "upsample_features",
    "window_offsets",
]


def check_feat(feat: torch.Tensor) -> None:
    """Raise :class:`InvalidInputError` unless ``feat`` is a ``[1, C, h, w]`` feature map."""
    if feat.ndim != 4 or feat.shape[0] != 1:
        raise InvalidInputError(f"feature map: expected [1, C, h, w], got {list(feat.shape)}")


def check_points(name: str, points: torch.Tensor) -> None:
    """Raise :class:`InvalidInputError` unless ``points`` is ``[..., 2]`` (x, y)."""
    if points.ndim < 1 or points.shape[-1] != 2:
        raise InvalidInputError(f"{name}: expected [..., 2] (x, y) points, got {list(points.shape)}")


def inside(points: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Which (x, y) points [..., 2] lie in the H × W image (pixel centres 0 … W − 1, 0 … H − 1): bool [...]."""
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)


def image_shape_of(feat: torch.Tensor, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    """``image_shape`` as ints, or the map's own (h, w) when None."""
    if image_shape is None:
        return int(feat.shape[-2]), int(feat.shape[-1])
    return int(image_shape[0]), int(image_shape[1])


def window_offsets(radius: int, device: torch.device) -> torch.Tensor:
    """Integer (x, y) offsets of the square |o|∞ ≤ radius, row-major (y outer, x inner): [(2r+1)², 2] float32."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    oy, ox = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([ox.reshape(-1), oy.reshape(-1)], dim=-1)


def cell_size(feat: torch.Tensor, image_shape: tuple[int, int]) -> int:
    """Image pixels per native feature cell (1 when the map is already at image size), at least 1."""
    return max(1, round(image_shape[1] / feat.shape[-1]))


def centred(feat: torch.Tensor) -> torch.Tensor:
    """``feat`` minus its per-channel mean over the whole map: [1, C, h, w] → [1, C, h, w]."""
    return feat - feat.mean(dim=(2, 3), keepdim=True)


def upsample_features(feat: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``feat`` [1, C, h, w] to [1, C, H, W], ``align_corners=False`` (official code)."""
    check_feat(feat)
    if tuple(feat.shape[-2:]) == tuple(image_shape):
        return feat
    return F.interpolate(feat, size=tuple(image_shape), mode="bilinear", align_corners=False)


def sample_at_pixels(
    feat: torch.Tensor,
    points: torch.Tensor,
    image_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Features at image pixels, equal to ``upsample_features(feat, image_shape)[0, :, y, x]``.

    feat: [1, C, h, w]; points: [..., 2] (x, y) image pixels (integer-valued for the identity above; coordinates
    outside the image are clamped to the border); image_shape: (H, W), default (h, w). Returns [..., C],
    differentiable w.r.t. ``feat``.
    """
    check_feat(feat)
    check_points("points", points)
    H, W = image_shape_of(feat, image_shape)
    C = feat.shape[1]
    flat = points.reshape(-1, 2).to(torch.float64)
    gx = (2 * flat[:, 0] + 1) / W - 1
    gy = (2 * flat[:, 1] + 1) / H - 1
    grid = torch.stack([gx, gy], dim=-1).to(feat.dtype).reshape(1, 1, -1, 2)
    out = F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=False)  # [1, C, 1, P]
    return out[0, :, 0, :].transpose(0, 1).reshape(*points.shape[:-1], C)


def sample_bilinear(
    feat: torch.Tensor,
    points: torch.Tensor,
    image_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Features at fractional image points, bilinear on the image pixel lattice with zeros outside the image.

    Equals ``F.grid_sample(upsample_features(feat, image_shape), grid, align_corners=True)`` at the same points
    (the official motion-loss sampling). feat: [1, C, h, w]; points: [..., 2] (x, y); returns [..., C].
    """
    check_points("points", points)
    H, W = image_shape_of(feat, image_shape)
    x0 = points[..., 0].floor()
    y0 = points[..., 1].floor()
    ax = (points[..., 0] - x0).to(feat.dtype)
    ay = (points[..., 1] - y0).to(feat.dtype)
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)  # [..., 4]
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)
    weights = torch.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], dim=-1)
    corners = torch.stack([xs, ys], dim=-1)  # [..., 4, 2]
    weights = torch.where(inside(corners, H, W), weights, torch.zeros_like(weights))
    values = sample_at_pixels(feat, corners, (H, W))  # [..., 4, C]
    return (values * weights.unsqueeze(-1)).sum(dim=-2)


def point_distances(handles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """‖t_i − p_i‖ in pixels: [N, 2], [N, 2] → [N]."""
    check_points("handles", handles)
    check_points("targets", targets)
    if handles.shape != targets.shape:
        raise InvalidInputError(
            f"handles and targets: expected the same shape, got {list(handles.shape)} and {list(targets.shape)}"
        )
    return (targets - handles).norm(dim=-1)
