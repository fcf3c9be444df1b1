"""``nn``: the paper's point tracking, nearest neighbour of each handle's feature in a window (paper Eq. 2).

The default tracker. ``impl='fast'`` searches on the native feature grid (:func:`track_points`);
``impl='reference'`` is the official renderer's loop on the upsampled map (:func:`track_points_reference`); a test
holds them equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from dragkit.engine.sampling import (
    check_feat,
    check_points,
    image_shape_of,
    inside,
    sample_at_pixels,
    window_offsets,
)
from dragkit.engine.trackers.base import TrackContext, Tracker, as_points
from dragkit.errors import InvalidInputError

__all__ = ["NNParams", "NNState", "NearestNeighbour", "templates_reference", "track_points", "track_points_reference"]

Norm = Literal["l2", "l1"]
NORMS: tuple[str, ...] = ("l2", "l1")


@dataclass(frozen=True)
class NNParams:
    """norm: distance between features, 'l2' (the official code) or 'l1' (the paper's text)."""

    norm: Norm = field(
        default="l2",
        metadata={"flag": "--track-norm", "choices": NORMS, "help": "feature distance: l2 (official) or l1"},
    )

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise InvalidInputError(f"tracker 'nn' norm: expected one of {list(NORMS)}, got {self.norm!r}")


@dataclass(frozen=True)
class NNState:
    templates: torch.Tensor  # [N, C] f_i = F0 at each handle (rounded to pixels)


def track_points(
    feat: torch.Tensor,
    templates: torch.Tensor,
    handles: torch.Tensor,
    r2: int,
    image_shape: tuple[int, int] | None = None,
    norm: Norm = "l2",
) -> torch.Tensor:
    """Point tracking (paper Eq. 2): p_i ← argmin_{q ∈ Ω2(p_i, r2)} ‖F(q) − f_i‖.

    Ω2 is the square window |q − round(p_i)|∞ ≤ r2 of image pixels, clipped to the image. Ties go to the first
    pixel in row-major order (as the official ``torch.min`` over the clipped window). Vectorised over points.

    feat: [1, C, h, w] current features (native grid or upsampled); templates: [N, C] (f_i = F0 at the initial
    handles); handles: [N, 2] (x, y); image_shape: (H, W), default (h, w); norm: 'l2' (official) or 'l1' (paper).
    Returns [N, 2] integer-valued (x, y), without gradient.
    """
    check_feat(feat)
    check_points("handles", handles)
    H, W = image_shape_of(feat, image_shape)
    N, C = handles.shape[0], feat.shape[1]
    if templates.shape != (N, C):
        raise InvalidInputError(f"templates: expected [{N}, {C}], got {list(templates.shape)}")
    if norm not in NORMS:
        raise InvalidInputError(f"norm: expected 'l2' or 'l1', got {norm!r}")
    if r2 < 0:
        raise InvalidInputError(f"r2: expected an int ≥ 0, got {r2!r}")
    with torch.no_grad():
        centres = handles.to(torch.float32).round()
        cand = centres.unsqueeze(1) + window_offsets(r2, handles.device).unsqueeze(0)  # [N, K, 2]
        values = sample_at_pixels(feat.detach(), cand, (H, W))  # [N, K, C]
        diff = values - templates.detach().to(values.dtype).unsqueeze(1)
        dist = diff.norm(dim=-1) if norm == "l2" else diff.abs().sum(dim=-1)  # [N, K]
        dist = dist.masked_fill(~inside(cand, H, W), math.inf)
        best = dist.argmin(dim=1)
        return cand[torch.arange(N, device=cand.device), best]


def templates_reference(feat0_up: torch.Tensor, handles: list[tuple[float, float]]) -> torch.Tensor:
    """f_i = F0[:, :, round(y_i), round(x_i)] of the upsampled map, as the official code: [1, C, H, W] → [N, C]."""
    rows = [feat0_up[0, :, round(y), round(x)] for x, y in handles]
    return torch.stack(rows).detach()


def track_points_reference(
    feat_up: torch.Tensor,
    templates: torch.Tensor,
    handles: list[tuple[float, float]],
    r2: int,
    norm: Norm = "l2",
) -> list[tuple[float, float]]:
    """Official nearest-neighbour tracking, one point at a time on the upsampled map [1, C, H, W], indexing as the
    official renderer does (with (x, y) points instead of its (row, col) pairs)."""
    H, W = feat_up.shape[-2:]
    out: list[tuple[float, float]] = []
    with torch.no_grad():
        for j, (px, py) in enumerate(handles):
            x, y = round(px), round(py)
            up, down = max(y - r2, 0), min(y + r2 + 1, H)
            left, right = max(x - r2, 0), min(x + r2 + 1, W)
            patch = feat_up[:, :, up:down, left:right]
            diff = patch - templates[j].reshape(1, -1, 1, 1)
            if norm == "l2":
                dist = torch.linalg.norm(diff, dim=1)
            elif norm == "l1":
                dist = diff.abs().sum(dim=1)
            else:
                raise InvalidInputError(f"norm: expected 'l2' or 'l1', got {norm!r}")
            _, idx = torch.min(dist.view(1, -1), -1)
            width = right - left
            out.append((float(int(idx.item()) % width + left), float(int(idx.item()) // width + up)))
    return out


class NearestNeighbour(Tracker[NNParams, NNState]):
    """The paper's tracker: each handle goes to the pixel of its window whose feature is nearest its template."""

    name = "nn"
    label = "Nearest neighbour (paper)"
    description = "DragGAN's tracking: the nearest feature to each handle's template in a window around it"
    Params = NNParams
    State = NNState
    state_shapes = (("templates", ("N", "C")),)

    def start(self, ctx: TrackContext) -> NNState:
        if ctx.impl == "reference":
            return NNState(templates_reference(ctx.features_up.detach(), as_points(ctx.handles)))
        templates = sample_at_pixels(ctx.features.detach(), ctx.handles.round(), ctx.image_shape).detach()
        return NNState(templates)

    def track(self, ctx: TrackContext, state: NNState) -> tuple[torch.Tensor, NNState]:
        norm = self.params.norm
        if ctx.impl == "reference":
            found = track_points_reference(ctx.features_up, state.templates, as_points(ctx.handles), ctx.r2, norm)
            return torch.tensor(found, dtype=torch.float32, device=ctx.device).reshape(-1, 2), state
        return track_points(ctx.features, state.templates, ctx.handles, ctx.r2, ctx.image_shape, norm), state
