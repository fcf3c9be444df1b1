"""``patch`` (experimental): each handle goes where the centred feature patch around it best matches its template.

Removing the map mean and comparing directions (cosine) makes the match insensitive to the global appearance drift
that a latent update causes, and the patch adds the spatial layout around the point, which a single feature vector
lacks. On the default face model it improved the landmark ratio for single points but left destroyed faces on some
drags (docs/default_model.md), hence experimental. There is no official form: both impls track on the native grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dragkit.engine.sampling import (
    cell_size,
    centred,
    check_feat,
    check_points,
    image_shape_of,
    inside,
    sample_at_pixels,
    window_offsets,
)
from dragkit.engine.trackers.base import TrackContext, Tracker
from dragkit.errors import InvalidInputError

__all__ = ["PatchMatch", "PatchParams", "PatchState", "patch_templates", "track_points_patch"]


@dataclass(frozen=True)
class PatchParams:
    """patch: half-size of the matched patch in native feature cells (2: a 5 × 5 grid of cells). Also the params
    of the ``hybrid`` tracker, whose feature half is this match."""

    patch: int = field(
        default=2, metadata={"flag": "--track-patch", "help": "patch half-size in feature cells (2: 5 × 5 cells)"}
    )

    def __post_init__(self) -> None:
        patch = self.patch
        if isinstance(patch, bool) or not isinstance(patch, int) or not 0 <= patch <= 16:
            raise InvalidInputError(f"tracker params patch: expected an int in [0, 16] (feature cells), got {patch!r}")


@dataclass(frozen=True)
class PatchState:
    templates: torch.Tensor  # [N, P, C] centred F0 on the (2·patch + 1)² cell grid around each initial handle


def patch_templates(
    feat0: torch.Tensor,
    handles: torch.Tensor,
    patch: int,
    image_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Templates of the patch match: centred F0 on a (2·patch + 1)² grid of feature cells around each handle.

    feat0: [1, C, h, w]; handles: [N, 2] (x, y), rounded to pixels; patch: half-size in native feature cells
    (≥ 0; grid spacing = image pixels per cell). "Centred" = each channel's mean over the whole map removed.
    Returns [N, P, C] with P = (2·patch + 1)², without gradient.
    """
    check_feat(feat0)
    check_points("handles", handles)
    if patch < 0:
        raise InvalidInputError(f"patch: expected an int ≥ 0, got {patch!r}")
    H, W = image_shape_of(feat0, image_shape)
    with torch.no_grad():
        offsets = window_offsets(patch, handles.device) * cell_size(feat0, (H, W))
        points = handles.to(torch.float32).round().unsqueeze(1) + offsets.unsqueeze(0)  # [N, P, 2]
        return sample_at_pixels(centred(feat0.detach()), points, (H, W))


def track_points_patch(
    feat: torch.Tensor,
    templates: torch.Tensor,
    handles: torch.Tensor,
    r2: int,
    patch: int,
    image_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Patch tracking: p_i ← argmax_{q ∈ Ω2(p_i, r2)} cos(P(q), T_i).

    P(q) is the centred current map (per-channel mean removed) sampled on the (2·patch + 1)² grid of feature cells
    around pixel q, flattened to one vector; T_i the same from F0 at the initial handle (:func:`patch_templates`).
    Ω2 is the square window |q − round(p_i)|∞ ≤ r2 clipped to the image; ties go to the first pixel in row-major
    order. patch = 0 is cosine nearest-neighbour on centred features.

    feat: [1, C, h, w]; templates: [N, P, C]; handles: [N, 2]; returns [N, 2] integer-valued (x, y), no gradient.
    """
    check_feat(feat)
    check_points("handles", handles)
    H, W = image_shape_of(feat, image_shape)
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
        grid = window_offsets(reach, device)  # [G, 2], row-major on a (2·reach + 1)² lattice
        n = 2 * reach + 1
        cand = window_offsets(r2, device)  # [K, 2]
        offsets = window_offsets(patch, device) * cell  # [P, 2]
        pos = cand.unsqueeze(1) + offsets.unsqueeze(0) + reach  # [K, P, 2], lattice coordinates
        index = (pos[..., 1] * n + pos[..., 0]).long()  # [K, P]
        column = torch.arange(side * side, device=device).expand_as(index)
        centred_feat = centred(feat.detach())
        out = []
        for i in range(N):  # one point at a time keeps memory at (2·reach + 1)² · C floats
            centre = handles[i].to(torch.float32).round()
            values = sample_at_pixels(centred_feat, centre + grid, (H, W))  # [G, C]
            template = templates[i].detach().to(values.dtype)  # [P, C]
            dots = values @ template.T  # [G, P]
            sq = values.pow(2).sum(dim=-1)  # [G]
            num = dots[index, column].sum(dim=-1)  # [K]
            den = sq[index].sum(dim=-1).sqrt() * template.norm()
            score = num / den.clamp_min(1e-12)
            q = centre + cand
            cost = (1 - score).masked_fill(~inside(q, H, W), math.inf)
            out.append(q[int(cost.argmin())])
        return torch.stack(out)


class PatchMatch(Tracker[PatchParams, PatchState]):
    """Centred-cosine match of a (2·patch + 1)² grid of feature cells around each handle."""

    name = "patch"
    label = "Patch match"
    description = "cosine match of the centred feature patch around each handle (can wreck faces on large drags)"
    experimental = True
    Params = PatchParams
    State = PatchState
    state_shapes = (("templates", ("N", "*", "C")),)

    def start(self, ctx: TrackContext) -> PatchState:
        return PatchState(patch_templates(ctx.features.detach(), ctx.handles, self.params.patch, ctx.image_shape))

    def track(self, ctx: TrackContext, state: PatchState) -> tuple[torch.Tensor, PatchState]:
        found = track_points_patch(
            ctx.features, state.templates, ctx.handles, ctx.r2, self.params.patch, ctx.image_shape
        )
        return found, state
