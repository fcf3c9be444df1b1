"""The template-driven drag (dragkit.engine.freedrag): known answers for its pure functions, and a session using it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dragkit.engine import DragConfig, DragSession
from dragkit.engine.trackers import freedrag
from dragkit.errors import InvalidInputError
from dragkit.nn.stylegan2 import StyleGAN2Generator


def _ramp(size: int = 32) -> torch.Tensor:
    """F(x, y) = (x, y, 0) on a size² grid (image = feature grid): patch L1 mismatches are known in closed form."""
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs, ys, torch.zeros_like(xs)])[None]


def test_patch_offsets_are_a_3x3_grid_of_spacing_r1() -> None:
    offsets = freedrag.patch_offsets(4)
    assert offsets.shape == (9, 2)
    assert sorted({float(v) for v in offsets.flatten()}) == [-4.0, 0.0, 4.0]
    with pytest.raises(InvalidInputError, match="r1"):
        freedrag.patch_offsets(0)


def test_patch_loss_and_calibration_on_a_ramp() -> None:
    feat = _ramp()
    offsets = freedrag.patch_offsets(2)
    points = torch.tensor([[10.0, 12.0], [20.0, 8.0]])
    templates = freedrag.sample_patches(feat, points, offsets, (32, 32))
    assert templates.shape == (2, 9, 3)
    shifted = points + torch.tensor([[1.5, 0.0], [0.0, -2.0]])
    # |Δx| in channel 0 (or |Δy| in channel 1), averaged over 3 channels
    torch.testing.assert_close(
        freedrag.patch_loss(feat, shifted, templates, offsets, (32, 32)), torch.tensor([0.5, 2 / 3])
    )
    # one cell = one pixel here: each of the 4 shifts changes one channel by 1 → m1 = 1/3
    assert freedrag.calibrate(feat, points, offsets, (32, 32)) == pytest.approx(1 / 3)
    with pytest.raises(InvalidInputError, match="templates"):
        freedrag.patch_loss(feat, points, templates[:, :4], offsets, (32, 32))


def test_template_weight() -> None:
    w = freedrag.template_weight(torch.tensor([0.2, 0.8, 0.0, 5.0]), expected=1.0)
    assert w[0].item() == pytest.approx(0.5)
    assert w[1].item() == pytest.approx(0.1)
    assert w[2].item() == pytest.approx(1 / (1 + 9 ** (-1 / 3)))
    assert w[3].item() < 1e-6


def test_choose_targets_rules() -> None:
    feat = _ramp(64)
    offsets = freedrag.patch_offsets(2)
    virtual = torch.tensor([[10.0, 10.0], [10.0, 30.0], [30.0, 30.0], [40.0, 40.0]])
    targets = torch.tensor([[50.0, 10.0], [10.0, 50.0], [50.0, 30.0], [60.0, 40.0]])
    templates = freedrag.sample_patches(feat, virtual, offsets, (64, 64))
    args = dict(expected=2.0, d_max=10.0, offsets=offsets, image_shape=(64, 64))
    out = freedrag.choose_targets(
        feat,
        virtual,
        targets,
        templates,
        loss_start=torch.tensor([0.0, 0.0, 0.5, 0.5]),
        loss_end=torch.tensor([0.0, 0.0, 2.0, 5.0]),
        arrived=torch.tensor([False, True, False, False]),
        **args,  # type: ignore[arg-type]
    )
    # 0: went well → on the segment, ≤ d_max, mismatch |Δx|/3 closest to l = 2 → Δx = 6
    torch.testing.assert_close(out[0], torch.tensor([16.0, 10.0]))
    torch.testing.assert_close(out[1], virtual[1])  # arrived: stays
    # 2: got worse (2.0 ≥ start 0.5) → back by d_max to x = 20, least mismatch on [20, 40] → x = 30 (the template's)
    torch.testing.assert_close(out[2], torch.tensor([30.0, 30.0]))
    out = freedrag.choose_targets(
        feat,
        virtual[3:],
        targets[3:],
        templates[3:],
        loss_start=torch.tensor([3.0]),
        loss_end=torch.tensor([1.5]),
        arrived=torch.tensor([False]),
        **args,  # type: ignore[arg-type]
    )
    torch.testing.assert_close(out[0], virtual[3])  # improved but not below l/2: keeps pulling at the same place


CFG = DragConfig(lr=0.02, r1=2, r2=3, tracker="freedrag", tracker_params={"sub_motion_cells": 1.0})
HANDLES = [(10.0, 12.0), (20.0, 8.0)]
TARGETS = [(16.0, 14.0), (14.0, 4.0)]


def test_session_moves_virtual_handles_towards_the_targets(tiny_g: StyleGAN2Generator) -> None:
    sess = DragSession.from_seed(tiny_g, 0, config=CFG)
    sess.set_points(HANDLES, TARGETS)
    start = [math.dist(h, t) for h, t in zip(HANDLES, TARGETS, strict=True)]
    results = [sess.step() for _ in range(30)]
    assert all(r.loss is not None or r.done for r in results)
    end = results[-1].distances
    assert sum(end) < 0.6 * sum(start)
    # the virtual handles only ever move along their segments: each stays on the line through handle and target
    for r in results:
        for (x, y), (hx, hy), (tx, ty) in zip(r.handles, HANDLES, TARGETS, strict=True):
            cross = (x - hx) * (ty - hy) - (y - hy) * (tx - hx)
            assert abs(cross) / math.dist((hx, hy), (tx, ty)) < 1e-3


def test_session_freedrag_fast_equals_reference_and_survives_save_load(tiny_g: StyleGAN2Generator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fast = DragSession.from_seed(tiny_g, 0, config=CFG)
    ref = DragSession.from_seed(tiny_g, 0, config=CFG.replace(impl="reference"))
    for s in (fast, ref):
        s.set_points(HANDLES, TARGETS)
    for _ in range(8):
        a, b = fast.step(), ref.step()
        assert a.handles == b.handles
    torch.testing.assert_close(fast.ws, ref.ws, rtol=0, atol=1e-4)
    loaded = DragSession.load(fast.save(tmp_path / "s.pt"), tiny_g)
    for _ in range(6):
        a, b = fast.step(), loaded.step()
        assert a == b
    assert torch.equal(fast.ws, loaded.ws)
    loaded.undo(6)
    fresh = DragSession.from_seed(tiny_g, 0, config=CFG)
    fresh.set_points(HANDLES, TARGETS)
    fresh.run(max_steps=8)
    assert torch.equal(loaded.ws, fresh.ws)


def test_points_change_restarts_the_sub_motions(tiny_g: StyleGAN2Generator) -> None:
    sess = DragSession.from_seed(tiny_g, 0, config=CFG)
    sess.set_points(HANDLES, TARGETS)
    sess.run(max_steps=4)
    sess.add_point((5.0, 5.0), (8.0, 5.0))
    r = sess.step()
    assert len(r.handles) == 3  # a fresh state for three points, not the old two-point one
    assert F.l1_loss(torch.tensor(r.handles[2]), torch.tensor([5.0, 5.0])) < 4
