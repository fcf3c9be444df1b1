"""``freedrag``: the template-driven drag of FreeDrag (Ling et al., CVPR 2024; docs/architecture.md §3).

DragGAN pulls a patch one pixel towards the target and then searches for the handle by nearest neighbour; when the
search is fooled (similar structures, global appearance drift) the handle is reported ahead of the content and the
drag stops early. The template-driven drag replaces both halves:

- each handle i has a *virtual position* v_i and an *adaptive template* T_i (its feature patch);
- the motion loss asks the features at v_i to equal T_i: ``mean |F_patch(v_i) − T_i|`` (L1), so the content
  itself has to arrive at v_i;
- the whole move is cut into *sub-motions*: v_i advances along the segment towards t_i by at most ``d_max``
  (a line search picks the point whose mismatch with T_i is about the expected loss ``l``), then up to
  ``inner`` optimiser steps pull the content there;
- after a sub-motion, T_i is blended with the features now at v_i, by a weight that is high when the content
  arrived (low loss) and low when it did not; a sub-motion that made things worse rolls v_i back.

All positions are (x, y) image pixels; features are native maps ``[1, C, h, w]`` sampled bilinearly
(:func:`dragkit.engine.sampling.sample_at_pixels`). The patch is a 3 × 3 grid with spacing r1 image pixels around the
point (the official implementation's ±¾ feature cell at 512 px with 128² features, i.e. Ω1's extent).

The loss scale differs between generators, so the expected loss is calibrated per edit from F0:
``l = ratio · m1``, where ``m1`` is the mean L1 between each handle's patch and the same patch one feature cell
away (:func:`calibrate`); the official code instead fixes ``l`` per model by hand (0.3 for its FFHQ model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from dragkit.engine.sampling import cell_size, check_feat, check_points, sample_at_pixels, window_offsets
from dragkit.engine.trackers.base import TrackContext, Tracker
from dragkit.errors import InvalidInputError

__all__ = [
    "FreeDrag",
    "FreeDragParams",
    "FreeDragState",
    "calibrate",
    "choose_targets",
    "mismatch",
    "patch_loss",
    "patch_offsets",
    "sample_patches",
    "template_weight",
]

LINE_SAMPLES = 10  # candidates on the search segment (official: 10)


def patch_offsets(r1: int, device: torch.device | None = None) -> torch.Tensor:
    """The 3 × 3 patch around a point, spacing ``r1`` image pixels: [9, 2] (x, y) offsets, row-major."""
    if r1 < 1:
        raise InvalidInputError(f"r1: expected an int ≥ 1, got {r1!r}")
    return window_offsets(1, device or torch.device("cpu")) * float(r1)


def sample_patches(
    feat: torch.Tensor, points: torch.Tensor, offsets: torch.Tensor, image_shape: tuple[int, int]
) -> torch.Tensor:
    """Feature patches at fractional points: feat [1, C, h, w], points [..., 2], offsets [P, 2] → [..., P, C]."""
    check_feat(feat)
    check_points("points", points)
    return sample_at_pixels(feat, points.unsqueeze(-2) + offsets, image_shape)


def patch_loss(
    feat: torch.Tensor,
    points: torch.Tensor,
    templates: torch.Tensor,
    offsets: torch.Tensor,
    image_shape: tuple[int, int],
) -> torch.Tensor:
    """Per point ``mean |F_patch(v_i) − T_i|`` over the patch and channels: [N, 2], [N, P, C] → [N].

    Differentiable w.r.t. ``feat`` (the templates are constants).
    """
    values = sample_patches(feat, points, offsets, image_shape)
    if values.shape != templates.shape:
        raise InvalidInputError(f"templates: expected {list(values.shape)}, got {list(templates.shape)}")
    return mismatch(values, templates)


def mismatch(values: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """``mean |values − T|`` over the patch and channels of already sampled patches: [..., P, C] → [...]."""
    return (values - templates.detach()).abs().mean(dim=(-2, -1))


def calibrate(feat0: torch.Tensor, handles: torch.Tensor, offsets: torch.Tensor, image_shape: tuple[int, int]) -> float:
    """m1: mean L1 between each handle's F0 patch and the patches one native cell left/right/up/down (> 0)."""
    with torch.no_grad():
        cell = float(cell_size(feat0, image_shape))
        shifts = torch.tensor([[cell, 0.0], [-cell, 0.0], [0.0, cell], [0.0, -cell]], device=handles.device)
        base = sample_patches(feat0, handles, offsets, image_shape)  # [N, P, C]
        moved = sample_patches(feat0, handles.unsqueeze(1) + shifts, offsets, image_shape)  # [N, 4, P, C]
        m1 = float((moved - base.unsqueeze(1)).abs().mean())
    return max(m1, 1e-8)


def template_weight(loss_end: torch.Tensor, expected: float) -> torch.Tensor:
    """Blend weight λ of the template update: 1 / (1 + exp(a·(loss − b))), a = ln 9 / (0.6·l), b = 0.2·l.

    λ = ½ at loss = 0.2·l, 0.1 at 0.8·l, about ⅔ at 0: templates follow content that arrived, not content that did
    not. loss_end: [N] → [N] in (0, 1).
    """
    a = math.log(9.0) / (0.6 * expected)
    b = 0.2 * expected
    return torch.sigmoid(-a * (loss_end - b))


def choose_targets(
    feat: torch.Tensor,
    virtual: torch.Tensor,
    targets: torch.Tensor,
    templates: torch.Tensor,
    loss_start: torch.Tensor,
    loss_end: torch.Tensor,
    arrived: torch.Tensor,
    expected: float,
    d_max: float,
    offsets: torch.Tensor,
    image_shape: tuple[int, int],
) -> torch.Tensor:
    """Next virtual positions (the line search and fuzzy localisation of FreeDrag), one rule per point:

    - arrived: stays;
    - the last sub-motion went well (loss_end < ½·l): among ``LINE_SAMPLES`` points on the segment from v_i
      towards t_i of length ≤ d_max, the one whose patch mismatch with T_i is closest to l (a sub-motion of
      controlled difficulty);
    - it improved (loss_end < loss_start): stays, to keep pulling;
    - it got worse: v_i steps back by d_max and the point of least mismatch on a segment of 2·d_max is taken.

    feat: current features [1, C, h, w]; virtual, targets: [N, 2]; templates [N, P, C]; loss_start, loss_end,
    arrived: [N]; d_max in image pixels. Returns [N, 2] (fractional) without gradient.
    """
    H, W = image_shape
    limit = torch.tensor([W - 1.0, H - 1.0], device=virtual.device)
    out = virtual.clone()
    with torch.no_grad():
        fractions = torch.arange(1, LINE_SAMPLES + 1, device=virtual.device, dtype=torch.float32) / LINE_SAMPLES
        for i in range(virtual.shape[0]):
            if bool(arrived[i]):
                continue
            v, t = virtual[i].to(torch.float32), targets[i].to(torch.float32)
            remain = float((t - v).norm())
            good = float(loss_end[i]) < 0.5 * expected
            if not good and float(loss_end[i]) < float(loss_start[i]):
                continue
            if not good:
                v = (v - min(d_max / (remain + 1e-8), 1.0) * (t - v)).clamp(torch.zeros_like(limit), limit)
                remain = float((t - v).norm())
            reach = d_max if good else 2 * d_max
            end = v + min(reach / (remain + 1e-8), 1.0) * (t - v)
            cand = v + fractions.unsqueeze(1) * (end - v)  # [S, 2]
            costs = patch_loss(feat, cand, templates[i].expand(len(cand), -1, -1), offsets, image_shape)  # [S]
            pick = (costs - expected).abs().argmin() if good else costs.argmin()
            out[i] = cand[pick]
    return out


@dataclass(frozen=True)
class FreeDragParams:
    """sub_motion_cells: longest sub-motion in native feature cells (official: 3); sub_motion_loss: expected loss l
    of a sub-motion in units of the one-cell patch mismatch m1 of F0; sub_motion_steps: optimiser steps per
    sub-motion at most (official: 5)."""

    sub_motion_cells: float = field(default=3.0, metadata={"help": "longest sub-motion in feature cells (3)"})
    sub_motion_loss: float = field(default=1.0, metadata={"help": "expected sub-motion loss, one-cell units (1)"})
    sub_motion_steps: int = field(default=5, metadata={"help": "optimiser steps per sub-motion at most (5)"})

    def __post_init__(self) -> None:
        for name in ("sub_motion_cells", "sub_motion_loss"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InvalidInputError(f"tracker 'freedrag' {name}: expected a positive finite float, got {value!r}")
        steps = self.sub_motion_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InvalidInputError(f"tracker 'freedrag' sub_motion_steps: expected an int ≥ 1, got {steps!r}")


@dataclass(frozen=True)
class FreeDragState:
    """Per-point state of the template-driven drag."""

    virtual: torch.Tensor  # [N, 2] virtual handle positions (x, y), fractional
    templates: torch.Tensor  # [N, P, C] adaptive templates
    loss_start: torch.Tensor  # [N] loss at the first step of the current sub-motion
    arrived: torch.Tensor  # bool [N]
    inner: int  # optimiser steps taken in the current sub-motion (0: a new one starts at the next step)
    started: bool  # False until the first sub-motion was planned
    expected: float  # expected loss l of a sub-motion (calibrated from F0)
    finished: bool = False  # every point arrived at the last sub-motion boundary (nothing is optimised)


class FreeDrag(Tracker[FreeDragParams, FreeDragState]):
    """Virtual positions advanced by line search along p → t, adaptive templates, its own motion loss."""

    name = "freedrag"
    label = "FreeDrag"
    description = "FreeDrag's template-driven sub-motions along the line to the target, with adaptive templates"
    Params = FreeDragParams
    State = FreeDragState
    state_shapes = (
        ("virtual", ("N", 2)),
        ("templates", ("N", "*", "C")),
        ("loss_start", ("N",)),
        ("arrived", ("N",)),
    )

    def start(self, ctx: TrackContext) -> FreeDragState:
        """Templates from F0 at the handles, the expected loss calibrated on F0 (:func:`calibrate`)."""
        features0 = ctx.features.detach()
        points = ctx.handles
        offsets = patch_offsets(ctx.r1, ctx.device)
        n = points.shape[0]
        return FreeDragState(
            virtual=points,
            templates=sample_patches(features0, points, offsets, ctx.image_shape).detach(),
            loss_start=torch.zeros(n, device=ctx.device),
            arrived=torch.zeros(n, dtype=torch.bool, device=ctx.device),
            inner=0,
            started=False,
            expected=self.params.sub_motion_loss * calibrate(features0, points, offsets, ctx.image_shape),
        )

    def track(self, ctx: TrackContext, state: FreeDragState) -> tuple[torch.Tensor, FreeDragState]:
        """At a sub-motion boundary: score the last one, update templates, test arrival, pick the next virtual
        positions; in between, the virtual positions stay. Returns them as the handles."""
        fd = self._plan(ctx, state)
        return fd.virtual, fd

    def _plan(self, ctx: TrackContext, fd: FreeDragState) -> FreeDragState:
        if fd.inner > 0:
            return fd
        feat = ctx.features.detach()
        offsets = patch_offsets(ctx.r1, ctx.device)
        tgt = ctx.targets
        n = tgt.shape[0]
        templates, arrived = fd.templates, fd.arrived
        loss_end = torch.zeros(n, device=ctx.device)
        with torch.no_grad():
            if fd.started:
                current = sample_patches(feat, fd.virtual, offsets, ctx.image_shape)  # [N, P, C]
                loss_end = mismatch(current, fd.templates)
                close = (tgt - fd.virtual).norm(dim=-1) <= ctx.stop_distance
                arrived = close & (loss_end <= 0.25 * fd.expected)
                weight = torch.where(arrived, 1.0, template_weight(loss_end, fd.expected)).reshape(-1, 1, 1)
                templates = weight * current + (1 - weight) * fd.templates
                if bool(arrived.all()):
                    return replace(fd, templates=templates, arrived=arrived, finished=True)
            cell = cell_size(feat, ctx.image_shape)
            virtual = choose_targets(
                feat,
                fd.virtual,
                tgt,
                templates,
                fd.loss_start,
                loss_end,
                arrived,
                fd.expected,
                self.params.sub_motion_cells * cell,
                offsets,
                ctx.image_shape,
            )
        return replace(fd, virtual=virtual, templates=templates, arrived=arrived, started=True, finished=False)

    def motion_loss(
        self, ctx: TrackContext, handles: torch.Tensor, state: FreeDragState
    ) -> tuple[torch.Tensor, FreeDragState]:
        """Σ_i mean |F_patch(v_i) − T_i| (:func:`patch_loss`); after it, the sub-motion's bookkeeping: remember its
        first loss, end it after ``sub_motion_steps`` steps or once every point's loss is below ¼·l."""
        offsets = patch_offsets(ctx.r1, ctx.device)
        per_point = patch_loss(ctx.features, state.virtual, state.templates, offsets, ctx.image_shape)
        done = per_point.detach()
        loss_start = done if state.inner == 0 else state.loss_start
        inner = state.inner + 1
        if inner >= self.params.sub_motion_steps or float(done.max()) < 0.25 * state.expected:
            inner = 0
        return per_point.sum(), replace(state, loss_start=loss_start, inner=inner)

    def arrived(self, state: FreeDragState, distances: list[float], stop_distance: float) -> bool:
        """Done when every point arrived at the last sub-motion boundary (position and template match)."""
        return state.finished
