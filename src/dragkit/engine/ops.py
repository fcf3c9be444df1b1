"""Pure functions of the DragGAN algorithm (Pan et al. 2023, §3.2–3.3; design.md §3).

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

import math
from typing import Literal

import torch
import torch.nn.functional as F

from dragkit.errors import InvalidInputError

__all__ = [
    "add_motion_prior",
    "cell_size",
    "fixed_region_weights",
    "flow_image",
    "latent_loss",
    "mask_loss",
    "motion_loss",
    "patch_templates",
    "point_distances",
    "radii",
    "sample_at_pixels",
    "sample_bilinear",
    "stop_distance",
    "track_points",
    "track_points_flow",
    "track_points_patch",
    "upsample_features",
]


# ---------------------------------------------------------------------------------------------------------------
# Scalars


def radii(height: int) -> tuple[int, int]:
    """(r1, r2) = (round(3/512·H), round(12/512·H)), each at least 1 (design.md §3; Python's round, as official)."""
    if isinstance(height, bool) or not isinstance(height, int) or height < 1:
        raise InvalidInputError(f"image height: expected an int ≥ 1, got {height!r}")
    return max(1, round(3 / 512 * height)), max(1, round(12 / 512 * height))


def stop_distance(rule: str | float, num_handles: int, height: int) -> float:
    """Distance d in pixels below which a handle counts as arrived (design.md §3, step 6).

    ``'paper'``: d = 1 for ≤ 5 handles, 2 otherwise; ``'official'``: max(2/512·H, 2); a number: that number.
    """
    if rule == "paper":
        return 1.0 if num_handles <= 5 else 2.0
    if rule == "official":
        return max(2 / 512 * height, 2.0)
    if isinstance(rule, int | float) and not isinstance(rule, bool) and math.isfinite(rule) and rule > 0:
        return float(rule)
    raise InvalidInputError(f"stop rule: expected 'paper', 'official' or a positive number, got {rule!r}")


# ---------------------------------------------------------------------------------------------------------------
# Sampling


def _check_feat(feat: torch.Tensor) -> None:
    if feat.ndim != 4 or feat.shape[0] != 1:
        raise InvalidInputError(f"feature map: expected [1, C, h, w], got {list(feat.shape)}")


def _check_points(name: str, points: torch.Tensor) -> None:
    if points.ndim < 1 or points.shape[-1] != 2:
        raise InvalidInputError(f"{name}: expected [..., 2] (x, y) points, got {list(points.shape)}")


def _inside(points: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Which (x, y) points [..., 2] lie in the H × W image (pixel centres 0 … W − 1, 0 … H − 1): bool [...]."""
    x, y = points[..., 0], points[..., 1]
    return (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)


def _image_shape(feat: torch.Tensor, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    if image_shape is None:
        return int(feat.shape[-2]), int(feat.shape[-1])
    return int(image_shape[0]), int(image_shape[1])


def upsample_features(feat: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``feat`` [1, C, h, w] to [1, C, H, W], ``align_corners=False`` (official code)."""
    _check_feat(feat)
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
    _check_feat(feat)
    _check_points("points", points)
    H, W = _image_shape(feat, image_shape)
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
    _check_points("points", points)
    H, W = _image_shape(feat, image_shape)
    x0 = points[..., 0].floor()
    y0 = points[..., 1].floor()
    ax = (points[..., 0] - x0).to(feat.dtype)
    ay = (points[..., 1] - y0).to(feat.dtype)
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)  # [..., 4]
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)
    weights = torch.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], dim=-1)
    corners = torch.stack([xs, ys], dim=-1)  # [..., 4, 2]
    weights = torch.where(_inside(corners, H, W), weights, torch.zeros_like(weights))
    values = sample_at_pixels(feat, corners, (H, W))  # [..., 4, C]
    return (values * weights.unsqueeze(-1)).sum(dim=-2)


# ---------------------------------------------------------------------------------------------------------------
# The algorithm


def point_distances(handles: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """‖t_i − p_i‖ in pixels: [N, 2], [N, 2] → [N]."""
    _check_points("handles", handles)
    _check_points("targets", targets)
    if handles.shape != targets.shape:
        raise InvalidInputError(
            f"handles and targets: expected the same shape, got {list(handles.shape)} and {list(targets.shape)}"
        )
    return (targets - handles).norm(dim=-1)


def _window_offsets(radius: int, device: torch.device) -> torch.Tensor:
    """Integer (x, y) offsets of the square |o|∞ ≤ radius, row-major (y outer, x inner): [(2r+1)², 2]."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    oy, ox = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([ox.reshape(-1), oy.reshape(-1)], dim=-1)


def track_points(
    feat: torch.Tensor,
    templates: torch.Tensor,
    handles: torch.Tensor,
    r2: int,
    image_shape: tuple[int, int] | None = None,
    norm: Literal["l2", "l1"] = "l2",
    prior: float = 0.0,
) -> torch.Tensor:
    """Point tracking (paper Eq. 2): p_i ← argmin_{q ∈ Ω2(p_i, r2)} ‖F(q) − f_i‖ (+ the motion prior below).

    Ω2 is the square window |q − round(p_i)|∞ ≤ r2 of image pixels, clipped to the image. Ties go to the first
    pixel in row-major order (as the official ``torch.min`` over the clipped window). Vectorised over points.

    feat: [1, C, h, w] current features (native grid or upsampled); templates: [N, C] (f_i = F0 at the initial
    handles); handles: [N, 2] (x, y); image_shape: (H, W), default (h, w); norm: 'l2' (official) or 'l1' (paper);
    prior: weight μ of the least-motion prior (0 = the paper's tracker), see :func:`add_motion_prior`.
    Returns [N, 2] integer-valued (x, y), without gradient.
    """
    _check_feat(feat)
    _check_points("handles", handles)
    H, W = _image_shape(feat, image_shape)
    N, C = handles.shape[0], feat.shape[1]
    if templates.shape != (N, C):
        raise InvalidInputError(f"templates: expected [{N}, {C}], got {list(templates.shape)}")
    if norm not in ("l2", "l1"):
        raise InvalidInputError(f"norm: expected 'l2' or 'l1', got {norm!r}")
    if r2 < 0:
        raise InvalidInputError(f"r2: expected an int ≥ 0, got {r2!r}")
    with torch.no_grad():
        centres = handles.to(torch.float32).round()
        cand = centres.unsqueeze(1) + _window_offsets(r2, handles.device).unsqueeze(0)  # [N, K, 2]
        inside = _inside(cand, H, W)
        values = sample_at_pixels(feat.detach(), cand, (H, W))  # [N, K, C]
        diff = values - templates.detach().to(values.dtype).unsqueeze(1)
        dist = diff.norm(dim=-1) if norm == "l2" else diff.abs().sum(dim=-1)  # [N, K]
        dist = dist.masked_fill(~inside, math.inf)
        if prior > 0:
            dist = add_motion_prior(dist, cand, centres, r2, prior)
        best = dist.argmin(dim=1)
        return cand[torch.arange(N, device=cand.device), best]


def add_motion_prior(
    cost: torch.Tensor, cand: torch.Tensor, centres: torch.Tensor, r2: int, prior: float
) -> torch.Tensor:
    """cost + μ · spread · ‖q − p‖ / r2: a least-motion prior that makes tracking scale-free and pessimistic.

    Along an edge or in a textureless region the matching cost is almost flat, and the plain argmin lands anywhere
    on the flat part — usually ahead of the content, since the motion loss makes the features there resemble the
    handle. The prior keeps the handle where it was unless the cost clearly prefers a move: spread is each point's
    (max − min) finite cost over its window, so μ is a fraction of the cost range per window radius.
    cost: [N, K] (inf outside the image); cand: [N, K, 2]; centres: [N, 2]. Returns [N, K].
    """
    finite = torch.isfinite(cost)
    high = cost.masked_fill(~finite, -math.inf).amax(dim=1, keepdim=True)
    low = cost.masked_fill(~finite, math.inf).amin(dim=1, keepdim=True)
    spread = (high - low).clamp_min(0)
    moved = (cand - centres.unsqueeze(1)).norm(dim=-1) / max(r2, 1)
    return cost + prior * spread * moved


def _centred(feat: torch.Tensor) -> torch.Tensor:
    """``feat`` minus its per-channel mean over the whole map: [1, C, h, w] → [1, C, h, w]."""
    return feat - feat.mean(dim=(2, 3), keepdim=True)


def cell_size(feat: torch.Tensor, image_shape: tuple[int, int]) -> int:
    """Image pixels per native feature cell (1 when the map is already at image size), at least 1."""
    return max(1, round(image_shape[1] / feat.shape[-1]))


def patch_templates(
    feat0: torch.Tensor,
    handles: torch.Tensor,
    patch: int,
    image_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Templates of the patch tracker: centred F0 on a (2·patch + 1)² grid of feature cells around each handle.

    feat0: [1, C, h, w]; handles: [N, 2] (x, y), rounded to pixels; patch: half-size in native feature cells
    (≥ 0; grid spacing = image pixels per cell). "Centred" = each channel's mean over the whole map removed.
    Returns [N, P, C] with P = (2·patch + 1)², without gradient.
    """
    _check_feat(feat0)
    _check_points("handles", handles)
    if patch < 0:
        raise InvalidInputError(f"patch: expected an int ≥ 0, got {patch!r}")
    H, W = _image_shape(feat0, image_shape)
    with torch.no_grad():
        offsets = _window_offsets(patch, handles.device) * cell_size(feat0, (H, W))
        points = handles.to(torch.float32).round().unsqueeze(1) + offsets.unsqueeze(0)  # [N, P, 2]
        return sample_at_pixels(_centred(feat0.detach()), points, (H, W))


def track_points_patch(
    feat: torch.Tensor,
    templates: torch.Tensor,
    handles: torch.Tensor,
    r2: int,
    patch: int,
    image_shape: tuple[int, int] | None = None,
    prior: float = 0.0,
) -> torch.Tensor:
    """Patch tracking: p_i ← argmax_{q ∈ Ω2(p_i, r2)} cos(P(q), T_i), a sturdier alternative to Eq. 2.

    P(q) is the centred current map (per-channel mean removed) sampled on the (2·patch + 1)² grid of feature cells
    around pixel q, flattened to one vector; T_i the same from F0 at the initial handle (:func:`patch_templates`).
    Removing the map mean and comparing directions makes the match insensitive to the global appearance drift
    that a latent update causes, and the patch adds the spatial layout around the point, which a single
    feature vector lacks. Ω2 is the square window |q − round(p_i)|∞ ≤ r2 clipped to the image; ties go to the
    first pixel in row-major order. patch = 0 is cosine nearest-neighbour on centred features; prior: the
    least-motion prior of :func:`add_motion_prior` on the cost 1 − cos.

    feat: [1, C, h, w]; templates: [N, P, C]; handles: [N, 2]; returns [N, 2] integer-valued (x, y), no gradient.
    """
    _check_feat(feat)
    _check_points("handles", handles)
    H, W = _image_shape(feat, image_shape)
    N, C = handles.shape[0], feat.shape[1]
    side = 2 * patch + 1
    if templates.shape != (N, side * side, C):
        raise InvalidInputError(f"templates: expected [{N}, {side * side}, {C}], got {list(templates.shape)}")
    if r2 < 0:
        raise InvalidInputError(f"r2: expected an int ≥ 0, got {r2!r}")
    device = handles.device
    with torch.no_grad():
        cell = cell_size(feat, (H, W))
        reach = r2 + patch * cell  # every patch sample of every candidate lies in this square around the centre
        grid = _window_offsets(reach, device)  # [G, 2], row-major on a (2·reach + 1)² lattice
        n = 2 * reach + 1
        cand = _window_offsets(r2, device)  # [K, 2]
        offsets = _window_offsets(patch, device) * cell  # [P, 2]
        pos = cand.unsqueeze(1) + offsets.unsqueeze(0) + reach  # [K, P, 2], lattice coordinates
        index = (pos[..., 1] * n + pos[..., 0]).long()  # [K, P]
        column = torch.arange(side * side, device=device).expand_as(index)
        centred = _centred(feat.detach())
        out = []
        for i in range(N):  # one point at a time keeps memory at (2·reach + 1)² · C floats
            centre = handles[i].to(torch.float32).round()
            values = sample_at_pixels(centred, centre + grid, (H, W))  # [G, C]
            template = templates[i].detach().to(values.dtype)  # [P, C]
            dots = values @ template.T  # [G, P]
            sq = values.pow(2).sum(dim=-1)  # [G]
            num = dots[index, column].sum(dim=-1)  # [K]
            den = sq[index].sum(dim=-1).sqrt() * template.norm()
            score = num / den.clamp_min(1e-12)
            q = centre + cand
            cost = (1 - score).masked_fill(~_inside(q, H, W), math.inf)
            if prior > 0:
                cost = add_motion_prior(cost[None], q[None], centre[None], r2, prior)[0]
            out.append(q[int(cost.argmin())])
        return torch.stack(out)


def flow_image(image: torch.Tensor, size: int = 512) -> torch.Tensor:
    """A display image → the grey image the flow tracker works on: [1, 3, H, W] in about [-1, 1] → [1, 1, h, w].

    Luma (Rec. 601 weights), area-downsampled so that the longer side is at most ``size`` (H / h must then be an
    integer factor, as for every generator here).
    """
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise InvalidInputError(f"image: expected [1, 3, H, W], got {list(image.shape)}")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device).reshape(1, 3, 1, 1)
    grey = (image.detach() * weights).sum(dim=1, keepdim=True)
    factor = max(1, max(image.shape[-2:]) // size)
    return F.avg_pool2d(grey, factor) if factor > 1 else grey


def _central_difference(img: torch.Tensor, points: torch.Tensor, axis: int, size: tuple[int, int]) -> torch.Tensor:
    """∂img/∂x (axis 0) or ∂img/∂y (axis 1) at points [N, K, 2] of a grey image [1, 1, h, w], by ±½ pixel: [N, K]."""
    half = torch.zeros(2, device=points.device, dtype=points.dtype)
    half[axis] = 0.5
    return (sample_at_pixels(img, points + half, size) - sample_at_pixels(img, points - half, size))[..., 0]


def _zero_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """values [N, K] minus their ``weight``-weighted mean over K (the brightness offset of each window)."""
    return values - (values * weight).sum(-1, keepdim=True) / weight.sum()


def track_points_flow(
    prev: torch.Tensor,
    cur: torch.Tensor,
    handles: torch.Tensor,
    image_shape: tuple[int, int],
    radius: int = 8,
    levels: int = 2,
    iters: int = 8,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flow tracking: each handle follows the image motion between two consecutive frames (pyramidal Lucas–Kanade).

    prev, cur: grey frames [1, 1, h, w] (:func:`flow_image`) of the latents the previous and this step started from;
    handles: [N, 2] (x, y) image pixels of an ``image_shape`` image, where they were in ``prev``. Each point's
    (2·radius + 1)² window (grey-frame pixels, Gaussian-weighted, brightness offset removed) is matched in ``cur`` by
    Gauss–Newton, coarse to fine over ``levels`` halvings, starting from the displacement ``init`` ([N, 2] image
    pixels; default zero). Where the window has texture in one direction only (an edge) the tangential motion is
    unobservable and stays near its start: the handle then lags rather than runs ahead.
    Returns [N, 2] fractional (x, y) image pixels, without gradient.
    """
    if prev.shape != cur.shape or prev.ndim != 4 or prev.shape[:2] != (1, 1):
        raise InvalidInputError(
            f"frames: expected two [1, 1, h, w] grey images, got {list(prev.shape)}, {list(cur.shape)}"
        )
    _check_points("handles", handles)
    H, W = image_shape
    h, w = int(prev.shape[-2]), int(prev.shape[-1])
    sx, sy = w / W, h / H
    # image pixel → grey-frame pixel (pixel centres)
    pts = torch.stack([(handles[:, 0] + 0.5) * sx - 0.5, (handles[:, 1] + 0.5) * sy - 0.5], dim=-1).to(torch.float32)
    offsets = _window_offsets(radius, handles.device)  # [K, 2]
    sigma = max(radius / 2, 1.0)
    weight = torch.exp(-(offsets.pow(2).sum(-1)) / (2 * sigma**2))  # [K]
    pyr_prev, pyr_cur = [prev.detach().float()], [cur.detach().float()]
    for _ in range(levels - 1):
        pyr_prev.append(F.avg_pool2d(pyr_prev[-1], 2))
        pyr_cur.append(F.avg_pool2d(pyr_cur[-1], 2))
    flow = torch.zeros_like(pts)  # at the finest level, grey-frame pixels
    if init is not None:
        if init.shape != handles.shape:
            raise InvalidInputError(f"init: expected {list(handles.shape)}, got {list(init.shape)}")
        flow = torch.stack([init[:, 0] * sx, init[:, 1] * sy], dim=-1).to(torch.float32)
    with torch.no_grad():
        for level in reversed(range(levels)):
            scale = 2.0**level
            a, b = pyr_prev[level], pyr_cur[level]
            lh, lw = int(a.shape[-2]), int(a.shape[-1])
            p = (pts + 0.5) / scale - 0.5  # [N, 2] at this level
            u = flow / scale
            grid = p.unsqueeze(1) + offsets.unsqueeze(0)  # [N, K, 2]
            tmpl = sample_at_pixels(a, grid, (lh, lw))[..., 0]  # [N, K]
            gx, gy = (_central_difference(a, grid, axis, (lh, lw)) for axis in (0, 1))
            tmpl, gx, gy = (_zero_mean(v, weight) for v in (tmpl, gx, gy))
            axx, axy, ayy = (weight * gx * gx).sum(-1), (weight * gx * gy).sum(-1), (weight * gy * gy).sum(-1)
            ridge = 1e-3 * (axx + ayy).clamp_min(1e-12)  # keeps unobservable directions at zero motion
            axx, ayy = axx + ridge, ayy + ridge
            det = axx * ayy - axy * axy
            for _ in range(iters):
                warped = sample_at_pixels(b, grid + u.unsqueeze(1), (lh, lw))[..., 0]
                warped = _zero_mean(warped, weight)
                err = warped - tmpl
                bx, by = (weight * gx * err).sum(-1), (weight * gy * err).sum(-1)
                du = torch.stack([(ayy * bx - axy * by) / det, (axx * by - axy * bx) / det], dim=-1)
                u = u - du
                if float(du.abs().max()) < 1e-3:
                    break
            flow = u * scale
    moved = pts + flow
    out = torch.stack([(moved[:, 0] + 0.5) / sx - 0.5, (moved[:, 1] + 0.5) / sy - 0.5], dim=-1)
    limit = torch.tensor([W - 1.0, H - 1.0], device=out.device)
    return torch.minimum(out.clamp_min(0.0), limit).to(handles.dtype)


HYBRID_RADIUS = 24  # Lucas–Kanade window half-size of the hybrid tracker, in pixels of the ≤ 512² grey frame
HYBRID_LEVELS = 3


def track_points_hybrid(
    frame0: torch.Tensor,
    cur: torch.Tensor,
    anchors: torch.Tensor,
    feat: torch.Tensor,
    templates: torch.Tensor,
    handles: torch.Tensor,
    r2: int,
    patch: int,
    image_shape: tuple[int, int],
    prior: float = 0.0,
) -> torch.Tensor:
    """Hybrid tracking: the mean of an image estimate that lags and a feature estimate that runs ahead.

    Image: the (2·24 + 1)² Gaussian-weighted window of the *first* frame around each anchor (where the handle was
    when its templates were taken) is found in the current frame by Lucas–Kanade (:func:`track_points_flow`, three
    levels), starting at the current handle. Against a fixed template errors do not accumulate as they do between
    consecutive frames, and the large window holds the face around a deforming part, but a region that re-forms
    rather than slides makes it lag. Features: :func:`track_points_patch` (centred-cosine patch match against F0),
    which the motion loss's own feature changes pull ahead of the content. On real faces the two err in opposite
    directions along the drag, and their mean cancels much of it (docs/default_model.md, "Fourth study").

    frame0, cur: grey frames [1, 1, h, w] (:func:`flow_image`) of the segment's first latent and of this step's;
    anchors: [N, 2] handles in ``frame0``; feat: [1, C, h', w'] this step's features (native grid); templates:
    [N, P, C] (:func:`patch_templates` of F0 at the anchors); handles: [N, 2] current positions; r2, patch, prior:
    as :func:`track_points_patch`. All points are (x, y) image pixels of ``image_shape``. Returns [N, 2] fractional
    (x, y), without gradient.
    """
    _check_points("anchors", anchors)
    _check_points("handles", handles)
    if anchors.shape != handles.shape:
        raise InvalidInputError(f"anchors: expected {list(handles.shape)}, got {list(anchors.shape)}")
    start = handles.to(torch.float32) - anchors.to(torch.float32)
    image = track_points_flow(frame0, cur, anchors, image_shape, radius=HYBRID_RADIUS, levels=HYBRID_LEVELS, init=start)
    features = track_points_patch(feat, templates, handles, r2, patch, image_shape, prior)
    return (0.5 * (image.to(torch.float32) + features.to(torch.float32))).to(handles.dtype)


def motion_loss(
    feat: torch.Tensor,
    handles: torch.Tensor,
    targets: torch.Tensor,
    r1: int,
    image_shape: tuple[int, int] | None = None,
    step: float = 1.0,
) -> torch.Tensor:
    """Motion supervision (paper Eq. 1, official form): Σ_i mean_{q ∈ Ω1(p_i, r1)} |F(q).detach() − F(q + d_i)|.

    Only handles with ‖t_i − p_i‖ > 1 contribute; d_i = step · (t_i − p_i)/‖t_i − p_i‖ (official: step = 1 px);
    Ω1 = image pixels q with ‖q − p_i‖ < r1 inside the image; the mean runs over Ω1 and the C channels; F(q + d_i)
    is :func:`sample_bilinear` (zero outside the image). The gradient flows through the shifted samples only, which
    pulls the patch content one step towards the target. Vectorised over points.

    feat: [1, C, h, w]; handles, targets: [N, 2] (x, y); image_shape: (H, W), default (h, w).
    Returns a scalar tensor (a zero connected to ``feat`` when no handle is active).
    """
    _check_feat(feat)
    H, W = _image_shape(feat, image_shape)
    dist = point_distances(handles, targets)
    active = dist > 1
    if not bool(active.any()):
        return feat.sum() * 0.0
    p = handles[active].to(torch.float32)
    d = step * (targets[active].to(torch.float32) - p) / dist[active].to(torch.float32).unsqueeze(-1)  # [M, 2]
    base = p.floor()
    # floor(p) + [-r1 - 1, r1 + 1]² holds every pixel q with ‖q − p‖ < r1, also for fractional p
    cand = base.unsqueeze(1) + _window_offsets(r1 + 1, p.device).unsqueeze(0)  # [M, K, 2]
    valid = _inside(cand, H, W) & ((cand - p.unsqueeze(1)).norm(dim=-1) < r1)  # [M, K]
    fixed = sample_at_pixels(feat.detach(), cand, (H, W))  # [M, K, C]
    moved = sample_bilinear(feat, cand + d.unsqueeze(1), (H, W))  # [M, K, C]
    per_pixel = (fixed - moved).abs().sum(dim=-1)  # [M, K]
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    count = valid.sum(dim=1).clamp_min(1).to(feat.dtype) * feat.shape[1]
    return (per_pixel.sum(dim=1) / count).sum()


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
    _check_feat(feat)
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
