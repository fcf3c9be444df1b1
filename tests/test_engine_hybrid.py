"""The hybrid tracker: its Lucas–Kanade half (known shifts, edges), the mean with the patch match, and sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dragkit.engine import DragConfig, DragSession
from dragkit.engine.sampling import sample_at_pixels
from dragkit.engine.trackers import hybrid
from dragkit.engine.trackers.patch import PatchParams, patch_templates, track_points_patch
from dragkit.errors import InvalidInputError
from dragkit.nn.stylegan2 import StyleGAN2Generator


def _texture(seed: int = 0, size: int = 160) -> torch.Tensor:
    torch.manual_seed(seed)
    return F.avg_pool2d(torch.randn(1, 1, size + 6, size + 6, dtype=torch.float64), 7, 1).float()  # smooth


def _shift(base: torch.Tensor, dx: float, dy: float, size: int = 128) -> torch.Tensor:
    """Content moved by (dx, dy) pixels: out(x, y) = base(x − dx + 16, y − dy + 16), bilinear."""
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    pts = torch.stack([xs - dx + 16, ys - dy + 16], dim=-1)
    n = base.shape[-1]
    return sample_at_pixels(base, pts.reshape(-1, 2), (n, n)).reshape(1, 1, size, size)


@pytest.mark.parametrize("shift", [(0.6, -0.3), (1.5, 1.0), (-3.0, 2.5), (0.0, 0.0)])
def test_flow_recovers_a_shift_of_a_texture_also_under_gain_and_offset(shift: tuple[float, float]) -> None:
    base = _texture()
    prev = _shift(base, 0.0, 0.0)
    cur = 1.3 * _shift(base, *shift) + 0.2
    handles = torch.tensor([[60.0, 64.0], [90.0, 40.0]])  # image pixels of a 256² image (2 image px per frame px)
    got = hybrid.track_points_flow(prev, cur, handles, (256, 256))
    expected = handles + 2 * torch.tensor(shift)
    torch.testing.assert_close(got, expected, rtol=0, atol=0.3)  # 0.15 frame pixels


def test_flow_along_an_edge_does_not_invent_tangential_motion() -> None:
    ys = torch.arange(128, dtype=torch.float32).reshape(1, 1, 128, 1).expand(1, 1, 128, 128)
    edge = torch.sigmoid(ys - 64.0)  # horizontal edge: a shift along x is invisible
    handles = torch.tensor([[64.0, 64.0]])
    got = hybrid.track_points_flow(edge, edge, handles, (128, 128))
    torch.testing.assert_close(got, handles, rtol=0, atol=1e-3)
    moved = torch.sigmoid(ys - 65.0)  # the edge moved down by 1
    got = hybrid.track_points_flow(edge, moved, handles, (128, 128))
    assert abs(float(got[0, 0]) - 64.0) < 1e-2 and abs(float(got[0, 1]) - 65.0) < 0.1


def test_flow_image_and_bad_input() -> None:
    img = torch.rand(1, 3, 64, 64) * 2 - 1
    grey = hybrid.flow_image(img, size=32)
    assert grey.shape == (1, 1, 32, 32)
    expected = F.avg_pool2d((img * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True), 2)
    torch.testing.assert_close(grey, expected)
    with pytest.raises(InvalidInputError, match="image"):
        hybrid.flow_image(torch.rand(3, 64, 64))
    with pytest.raises(InvalidInputError, match="frames"):
        hybrid.track_points_flow(grey, torch.rand(1, 1, 16, 16), torch.zeros(1, 2), (64, 64))


CFG = DragConfig(lr=0.02, r1=2, r2=3, tracker="hybrid", tracker_params={"patch": 1})
HANDLES = [(10.0, 12.0), (20.0, 8.0)]
TARGETS = [(16.0, 14.0), (14.0, 4.0)]


def _session(G: StyleGAN2Generator, config: DragConfig = CFG) -> DragSession:
    sess = DragSession.from_seed(G, 0, config=config)
    sess.set_points(HANDLES, TARGETS)
    return sess


def test_session_hybrid_save_load_and_undo_continue_exactly(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    whole, part = _session(tiny_g), _session(tiny_g)
    whole.run(max_steps=9)
    part.run(max_steps=5)
    loaded = DragSession.load(part.save(tmp_path / "s.pt"), tiny_g)
    loaded.run(max_steps=4)
    assert loaded.trajectory == whole.trajectory
    assert torch.equal(loaded.ws, whole.ws)
    assert any(r.handles != HANDLES for r in whole.trajectory[1:])  # the handles moved
    # hybrid keeps the segment's first frame: undo and step again gives the same steps
    whole.undo(3)
    redo = [whole.step() for _ in range(3)]
    assert [r.handles for r in redo] == [r.handles for r in loaded.trajectory[-3:]]


def test_flow_init_starts_the_search_where_told() -> None:
    base = _texture(1)
    prev, cur = _shift(base, 0.0, 0.0), _shift(base, 9.0, -7.0)  # beyond what two levels find from zero
    handles = torch.tensor([[128.0, 128.0]])
    expected = handles + 2 * torch.tensor([[9.0, -7.0]])
    near = 2 * torch.tensor([[8.0, -6.0]])  # a start 1.4 frame pixels off
    got = hybrid.track_points_flow(prev, cur, handles, (256, 256), init=near)
    torch.testing.assert_close(got, expected, rtol=0, atol=0.3)
    with pytest.raises(InvalidInputError, match="init"):
        hybrid.track_points_flow(prev, cur, handles, (256, 256), init=torch.zeros(2, 2))


def test_hybrid_is_the_mean_of_first_frame_flow_and_the_patch_match() -> None:
    base = _texture(2)
    frame0, cur = _shift(base, 0.0, 0.0), _shift(base, 2.0, 1.0)
    anchors = torch.tensor([[120.0, 130.0]])
    handles = torch.tensor([[122.0, 131.0]])  # where the previous step left the handle
    torch.manual_seed(0)
    feat0 = torch.randn(1, 4, 32, 32)
    feat = torch.roll(feat0, shifts=(1, 2), dims=(2, 3))  # features moved by (2, 1) cells = (16, 8) image px
    templates = patch_templates(feat0, anchors, 1, (256, 256))
    got = hybrid.track_points_hybrid(frame0, cur, anchors, feat, templates, handles, 24, 1, (256, 256))
    image = hybrid.track_points_flow(
        frame0, cur, anchors, (256, 256), hybrid.HYBRID_RADIUS, hybrid.HYBRID_LEVELS, init=handles - anchors
    )
    features = track_points_patch(feat, templates, handles, 24, 1, (256, 256))
    torch.testing.assert_close(image, anchors + torch.tensor([[4.0, 2.0]]), rtol=0, atol=0.3)
    torch.testing.assert_close(features, torch.tensor([[136.0, 138.0]]))
    torch.testing.assert_close(got, (image + features) / 2)
    with pytest.raises(InvalidInputError, match="anchors"):
        hybrid.track_points_hybrid(frame0, cur, anchors[:0], feat, templates, handles, 24, 1, (256, 256))


def test_set_tracker_mid_drag_keeps_the_edit_and_starts_fresh_templates(
    tiny_g: StyleGAN2Generator, tmp_path: Path
) -> None:
    nn = CFG.replace(tracker="nn")
    plain, same = _session(tiny_g, nn), _session(tiny_g, nn)
    plain.run(max_steps=6)
    same.run(max_steps=3)
    same.set_config(tracker="nn")  # no change: the segment goes on
    same.run(max_steps=3)
    assert same.trajectory == plain.trajectory and torch.equal(same.ws, plain.ws)

    whole, part = _session(tiny_g, nn), _session(tiny_g, nn)
    for s in (whole, part):
        s.run(max_steps=3)
        s.set_config(tracker="hybrid", tracker_params={"patch": 1})
    assert whole.settings.tracker == "hybrid" and whole.config.tracker_params == PatchParams(patch=1)
    before = whole.handles
    first = whole.step()
    # fresh templates at the handles, taken now: the first step after the switch keeps them
    assert torch.allclose(torch.tensor(first.handles), torch.tensor(before), atol=1e-4)
    whole.run(max_steps=3)
    assert whole.step_count == 7
    # saved right after the switch (the current segment is still nn's), loaded and continued: the same steps
    loaded = DragSession.load(part.save(tmp_path / "s.pt"), tiny_g)
    assert loaded.settings.tracker == "hybrid"
    loaded.run(max_steps=4)
    assert loaded.trajectory == whole.trajectory and torch.equal(loaded.ws, whole.ws)
    # undo to before the switch: the old nn segment is not reused by the hybrid tracker
    whole.undo(5)
    assert whole.step_count == 2
    again = whole.step()
    assert torch.allclose(torch.tensor(again.handles), torch.tensor(whole.trajectory[-2].handles), atol=1e-4)
    with pytest.raises(InvalidInputError, match="tracker"):
        whole.set_config(tracker="optical")
    assert whole.settings.tracker == "hybrid"
