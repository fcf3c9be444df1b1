"""Literal per-point versions of tracking and motion supervision, written like the official DragGAN renderer.

They work on the feature map already upsampled to image size ``[1, C, H, W]`` and loop over points, indexing and
``grid_sample``-ing exactly as ``viz/renderer.py`` does (with (x, y) points instead of its (row, col) pairs, and an
integer pixel grid for Ω1 where the official code builds it with ``torch.linspace(0, h, h)``, whose spacing is
h/(h−1), not 1). ``impl="reference"`` sessions use them; tests check the vectorised :mod:`dragkit.engine.ops`
functions against them.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from dragkit.errors import InvalidInputError


def templates_reference(feat0_up: torch.Tensor, handles: list[tuple[float, float]]) -> torch.Tensor:
    """f_i = F0[:, :, round(y_i), round(x_i)] of the upsampled map: [1, C, H, W] → [N, C]."""
    rows = [feat0_up[0, :, round(y), round(x)] for x, y in handles]
    return torch.stack(rows).detach()


def track_points_reference(
    feat_up: torch.Tensor,
    templates: torch.Tensor,
    handles: list[tuple[float, float]],
    r2: int,
    norm: Literal["l2", "l1"] = "l2",
    prior: float = 0.0,
) -> list[tuple[float, float]]:
    """Official nearest-neighbour tracking, one point at a time, on the upsampled map [1, C, H, W]
    (``prior`` > 0: plus dragkit's least-motion prior, see :func:`dragkit.engine.ops.add_motion_prior`)."""
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
            if prior > 0:
                ys, xs = torch.meshgrid(
                    torch.arange(up, down, dtype=torch.float32, device=dist.device),
                    torch.arange(left, right, dtype=torch.float32, device=dist.device),
                    indexing="ij",
                )
                moved = ((xs - x) ** 2 + (ys - y) ** 2).sqrt() / max(r2, 1)
                dist = dist + prior * (dist.max() - dist.min()) * moved
            _, idx = torch.min(dist.view(1, -1), -1)
            width = right - left
            out.append((float(int(idx.item()) % width + left), float(int(idx.item()) // width + up)))
    return out


def motion_loss_reference(
    feat_up: torch.Tensor,
    handles: list[tuple[float, float]],
    targets: list[tuple[float, float]],
    r1: int,
    step: float = 1.0,
) -> torch.Tensor:
    """Official motion supervision on the upsampled map [1, C, H, W] (handles are integer pixels after tracking);
    ``step`` scales the unit shift d (official: 1 px)."""
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
            direction = step * direction / norm
            gridh = (relis + direction[1]) / (H - 1) * 2 - 1
            gridw = (reljs + direction[0]) / (W - 1) * 2 - 1
            grid = torch.stack([gridw, gridh], dim=-1).unsqueeze(0).unsqueeze(0)
            target = F.grid_sample(feat_up.float(), grid, align_corners=True).squeeze(2)
            loss = loss + F.l1_loss(feat_up[:, :, relis, reljs].detach(), target)
    return loss
