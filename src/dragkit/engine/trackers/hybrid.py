"""``hybrid`` (experimental): the mean of an image estimate that lags and a feature estimate that runs ahead.

On the default face model it gave the best landmark ratio for single points, but on large drags it can turn a face
into texture where ``nn`` only blurs it (docs/default_model.md), hence experimental. It needs the display frame
of every step (``needs_frame``): the image half is pyramidal Lucas–Kanade on grey frames (:func:`flow_image`,
:func:`track_points_flow`), the feature half the ``patch`` tracker's match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dragkit.engine.sampling import check_points, sample_at_pixels, window_offsets
from dragkit.engine.trackers.base import TrackContext, Tracker
from dragkit.engine.trackers.patch import PatchParams, patch_templates, track_points_patch
from dragkit.errors import InvalidInputError

__all__ = ["Hybrid", "HybridState", "flow_image", "track_points_flow", "track_points_hybrid"]


@dataclass(frozen=True)
class HybridState:
    templates: torch.Tensor  # [N, P, C] patch templates of F0 at the anchors
    frame0: torch.Tensor  # [1, 1, h, w] grey frame of the segment's first latent
    anchors: torch.Tensor  # [N, 2] (x, y) where the handles were in frame0


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
    check_points("handles", handles)
    H, W = image_shape
    h, w = int(prev.shape[-2]), int(prev.shape[-1])
    sx, sy = w / W, h / H
    # image pixel → grey-frame pixel (pixel centres)
    pts = torch.stack([(handles[:, 0] + 0.5) * sx - 0.5, (handles[:, 1] + 0.5) * sy - 0.5], dim=-1).to(torch.float32)
    offsets = window_offsets(radius, handles.device)  # [K, 2]
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
) -> torch.Tensor:
    """Hybrid tracking: the mean of an image estimate that lags and a feature estimate that runs ahead.

    Image: the (2·24 + 1)² Gaussian-weighted window of the *first* frame around each anchor (where the handle was
    when its templates were taken) is found in the current frame by Lucas–Kanade (:func:`track_points_flow`, three
    levels), starting at the current handle. Against a fixed template errors do not accumulate as they do between
    consecutive frames, and the large window holds the face around a deforming part, but a region that re-forms
    rather than slides makes it lag. Features: :func:`track_points_patch` (centred-cosine patch match against F0),
    which the motion loss's own feature changes pull ahead of the content. On real faces the two err in opposite
    directions along the drag, and their mean cancels much of it (docs/research/).

    frame0, cur: grey frames [1, 1, h, w] (:func:`flow_image`) of the segment's first latent and of this step's;
    anchors: [N, 2] handles in ``frame0``; feat: [1, C, h', w'] this step's features (native grid); templates:
    [N, P, C] (:func:`patch_templates` of F0 at the anchors); handles: [N, 2] current positions; r2, patch:
    as :func:`track_points_patch`. All points are (x, y) image pixels of ``image_shape``. Returns [N, 2] fractional
    (x, y), without gradient.
    """
    check_points("anchors", anchors)
    check_points("handles", handles)
    if anchors.shape != handles.shape:
        raise InvalidInputError(f"anchors: expected {list(handles.shape)}, got {list(anchors.shape)}")
    start = handles.to(torch.float32) - anchors.to(torch.float32)
    image = track_points_flow(frame0, cur, anchors, image_shape, radius=HYBRID_RADIUS, levels=HYBRID_LEVELS, init=start)
    features = track_points_patch(feat, templates, handles, r2, patch, image_shape)
    return (0.5 * (image.to(torch.float32) + features.to(torch.float32))).to(handles.dtype)


class Hybrid(Tracker[PatchParams, HybridState]):
    """Mean of Lucas–Kanade against the segment's first frame and the centred-cosine patch match."""

    name = "hybrid"
    label = "Hybrid (image + features)"
    description = "mean of an image tracker and the patch match: best on single face landmarks, can wreck large drags"
    experimental = True
    needs_frame = True
    Params = PatchParams  # the feature half's patch size (3: 7 × 7 cells, the measured best on faces)
    State = HybridState
    state_shapes = (("templates", ("N", "*", "C")), ("frame0", (1, 1, "*", "*")), ("anchors", ("N", 2)))

    def start(self, ctx: TrackContext) -> HybridState:
        if ctx.image is None:
            raise InvalidInputError("tracker 'hybrid' needs the display frame (ctx.image)")
        templates = patch_templates(ctx.features.detach(), ctx.handles, self.params.patch, ctx.image_shape)
        return HybridState(templates, flow_image(ctx.image), ctx.handles)

    def track(self, ctx: TrackContext, state: HybridState) -> tuple[torch.Tensor, HybridState]:
        if ctx.image is None:
            raise InvalidInputError("tracker 'hybrid' needs the display frame (ctx.image)")
        found = track_points_hybrid(
            state.frame0,
            flow_image(ctx.image),
            state.anchors,
            ctx.features,
            state.templates,
            ctx.handles,
            ctx.r2,
            self.params.patch,
            ctx.image_shape,
        )
        return found, state
