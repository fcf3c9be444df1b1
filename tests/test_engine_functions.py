"""Known-answer tests of the pure DragGAN functions (sampling, losses, the nn and patch trackers' search) and their
literal reference twins."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dragkit.engine.config import radii, stop_distance
from dragkit.engine.latent import adam_step
from dragkit.engine.losses import fixed_region_weights, latent_loss, mask_loss, motion_loss, motion_loss_reference
from dragkit.engine.result import StepFailedError
from dragkit.engine.sampling import sample_at_pixels, sample_bilinear, upsample_features
from dragkit.engine.trackers.nn import templates_reference, track_points, track_points_reference
from dragkit.engine.trackers.patch import patch_templates, track_points_patch
from dragkit.errors import InvalidInputError


def _pts(points: list[tuple[float, float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(points, dtype=dtype)


# -- scalars ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "expected"),
    [(512, (3, 12)), (256, (2, 6)), (1024, (6, 24)), (128, (1, 3)), (32, (1, 1)), (4, (1, 1))],
)
def test_radii_scale_with_resolution(height: int, expected: tuple[int, int]) -> None:
    assert radii(height) == expected


def test_radii_rejects_bad_height() -> None:
    with pytest.raises(InvalidInputError, match="height"):
        radii(0)


def test_stop_rule_paper_is_1_up_to_5_handles_then_2() -> None:
    assert [stop_distance("paper", n, 512) for n in (1, 2, 5)] == [1.0, 1.0, 1.0]
    assert [stop_distance("paper", n, 512) for n in (6, 10, 68)] == [2.0, 2.0, 2.0]


def test_stop_rule_official_and_number() -> None:
    assert stop_distance("official", 1, 512) == 2.0
    assert stop_distance("official", 1, 256) == 2.0
    assert stop_distance("official", 1, 1024) == 4.0
    assert stop_distance(3.5, 20, 512) == 3.5
    for bad in ("nearest", -1.0, math.nan, True):
        with pytest.raises(InvalidInputError, match="stop rule"):
            stop_distance(bad, 1, 512)  # type: ignore[arg-type]


# -- sampling: native grid == upsample then index ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("native", "image"), [((4, 4), (16, 16)), ((5, 5), (13, 13)), ((8, 8), (8, 8)), ((4, 6), (12, 20))]
)
def test_sample_at_pixels_equals_upsample_then_index(native: tuple[int, int], image: tuple[int, int]) -> None:
    torch.manual_seed(0)
    feat = torch.randn(1, 3, *native, dtype=torch.float64)
    up = F.interpolate(feat, size=image, mode="bilinear", align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(image[0]), torch.arange(image[1]), indexing="ij")
    points = torch.stack([xs, ys], dim=-1).to(torch.float64)  # every pixel, borders included
    got = sample_at_pixels(feat, points, image)  # [H, W, C]
    torch.testing.assert_close(got, up[0].permute(1, 2, 0), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("native", "image"), [((4, 4), (16, 16)), ((5, 7), (13, 15)), ((6, 6), (6, 6))])
def test_sample_bilinear_equals_official_grid_sample_on_upsampled_map(
    native: tuple[int, int], image: tuple[int, int]
) -> None:
    torch.manual_seed(1)
    H, W = image
    feat = torch.randn(1, 4, *native, dtype=torch.float64)
    up = F.interpolate(feat, size=image, mode="bilinear", align_corners=False)
    # fractional points, including ones within a pixel outside the image (zero padding there)
    points = torch.rand(50, 2, dtype=torch.float64) * torch.tensor([W + 1.0, H + 1.0], dtype=torch.float64) - 1
    grid = torch.stack([points[:, 0] / (W - 1) * 2 - 1, points[:, 1] / (H - 1) * 2 - 1], dim=-1)
    expected = F.grid_sample(up, grid[None, None], align_corners=True)[0, :, 0].T
    torch.testing.assert_close(sample_bilinear(feat, points, image), expected, rtol=0, atol=1e-12)


def test_sample_bilinear_gradcheck() -> None:
    torch.manual_seed(2)
    feat = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    points = torch.tensor([[3.3, 5.7], [0.2, 0.9], [10.6, 11.5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: sample_bilinear(f, points, (12, 12)), (feat,))


# -- tracking -------------------------------------------------------------------------------------------------------


def _shifted_pair(shift: tuple[int, int], size: tuple[int, int] = (24, 20), C: int = 8, pad: int = 6):
    """F0 and F with F(q) = F0(q − shift) for every pixel q (content moved by ``shift`` = (dx, dy))."""
    torch.manual_seed(3)
    H, W = size
    base = torch.randn(1, C, H + 2 * pad, W + 2 * pad)
    dx, dy = shift
    feat0 = base[:, :, pad : pad + H, pad : pad + W]
    feat = base[:, :, pad - dy : pad - dy + H, pad - dx : pad - dx + W]
    return feat0, feat


@pytest.mark.parametrize("shift", [(2, -1), (-3, 3), (0, 0), (3, 2)])
@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_tracking_recovers_a_shift_exactly(shift: tuple[int, int], norm: str) -> None:
    feat0, feat = _shifted_pair(shift)
    H, W = feat.shape[-2:]
    dx, dy = shift
    # interior points and points whose windows are clipped by every border (the shifted point stays inside)
    handles = [(10.0, 12.0), (5.0, 7.0), (max(0, -dx), max(0, -dy)), (W - 1 - max(0, dx), H - 1 - max(0, dy))]
    handles += [(max(0, -dx), H - 1 - max(0, dy)), (14.0, 3.0)]
    p = _pts(handles)
    templates = sample_at_pixels(feat0, p)
    got = track_points(feat, templates, p, r2=3, norm=norm)  # type: ignore[arg-type]
    torch.testing.assert_close(got, p + torch.tensor([float(dx), float(dy)]), rtol=0, atol=0)
    assert track_points_reference(feat, templates, handles, 3, norm=norm) == [  # type: ignore[arg-type]
        (x + dx, y + dy) for x, y in handles
    ]


def test_tracking_stays_within_the_window() -> None:
    feat0, feat = _shifted_pair((5, 0))  # shift larger than r2: the true match is outside the window
    p = _pts([(10.0, 10.0)])
    got = track_points(feat, sample_at_pixels(feat0, p), p, r2=2)
    assert (got - p).abs().max() <= 2


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_tracking_native_grid_equals_reference_on_upsampled_map(norm: str) -> None:
    torch.manual_seed(4)
    image = (32, 32)
    feat = torch.randn(1, 6, 16, 16)
    up = upsample_features(feat, image)
    handles = [(0.0, 0.0), (31.0, 31.0), (15.0, 2.0), (7.0, 29.0), (20.0, 20.0)]
    templates = torch.randn(len(handles), 6) * 0.1 + sample_at_pixels(feat, _pts([(9, 9)] * len(handles)), image)
    fast = track_points(feat, templates, _pts(handles), r2=4, image_shape=image, norm=norm)  # type: ignore[arg-type]
    ref = track_points_reference(up, templates, handles, 4, norm=norm)  # type: ignore[arg-type]
    assert [tuple(r) for r in fast.tolist()] == ref


def test_tracking_bad_templates_raise() -> None:
    feat = torch.randn(1, 4, 8, 8)
    with pytest.raises(InvalidInputError, match="templates"):
        track_points(feat, torch.randn(2, 3), _pts([(1, 1), (2, 2)]), r2=1)


def _smooth(channels: int, size: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    base = torch.randn(1, channels, size + 4, size + 4, dtype=torch.float64)
    return F.avg_pool2d(base, 5, 1)  # [1, C, size, size], smooth like generator features


@pytest.mark.parametrize("shift", [(2, -1), (-3, 2), (0, 0)])  # in native cells
@pytest.mark.parametrize("patch", [0, 1, 2])
def test_patch_tracking_recovers_a_shift_under_global_appearance_change(shift: tuple[int, int], patch: int) -> None:
    """Content moved by whole cells, plus a per-channel offset and a gain on the whole map: found exactly."""
    feat0 = _smooth(8, 40, seed=11)
    dx, dy = shift
    moved = torch.roll(feat0, shifts=(dy, dx), dims=(2, 3))
    offset = torch.linspace(-2.0, 2.0, 8, dtype=torch.float64).reshape(1, 8, 1, 1)
    feat = 1.7 * moved + offset  # the centred cosine ignores both
    image = (160, 160)  # 4 image pixels per cell
    handles = _pts([(60.0, 64.0), (100.0, 80.0)], torch.float64)
    templates = patch_templates(feat0, handles, patch, image)
    assert templates.shape == (2, (2 * patch + 1) ** 2, 8)
    got = track_points_patch(feat, templates, handles, r2=14, patch=patch, image_shape=image)
    expected = handles.float() + torch.tensor([4.0 * dx, 4.0 * dy])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the paper's L2 nearest neighbour is thrown off by the gain and offset
    plain = track_points(feat, sample_at_pixels(feat0, handles, image), handles, r2=14, image_shape=image)
    assert not torch.equal(plain, expected)


def test_patch_tracking_stays_in_the_window_and_the_image() -> None:
    feat0 = _smooth(4, 16, seed=3)
    feat = torch.roll(feat0, shifts=(0, 6), dims=(2, 3))  # true match 12 px away, window only 5
    handles = _pts([(20.0, 16.0), (0.0, 0.0), (31.0, 31.0)], torch.float64)
    templates = patch_templates(feat0, handles, 1, (32, 32))
    got = track_points_patch(feat, templates, handles, r2=5, patch=1, image_shape=(32, 32))
    assert (got - handles).abs().max() <= 5
    assert got.min() >= 0 and got.max() <= 31


def test_patch_tracking_bad_input_raises() -> None:
    feat = torch.randn(1, 4, 8, 8)
    with pytest.raises(InvalidInputError, match="templates"):
        track_points_patch(feat, torch.randn(1, 4, 4), _pts([(1, 1)]), r2=1, patch=1)
    with pytest.raises(InvalidInputError, match="patch"):
        patch_templates(feat, _pts([(1, 1)]), -1)


# -- motion supervision ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "expected"), [((15.0, 10.0), 1.0), ((13.0, 14.0), 0.6), ((10.0, 15.0), 0.0)])
def test_motion_loss_on_a_ramp(target: tuple[float, float], expected: float) -> None:
    """F(x, y) = x: |F(q) − F(q + d)| = |d_x| at every interior pixel, so the loss is |d_x|."""
    W = 24
    feat = torch.arange(W, dtype=torch.float64).repeat(1, 1, W, 1).clone()  # [1, 1, 24, 24]
    loss = motion_loss(feat, _pts([(10.0, 10.0)], torch.float64), _pts([target], torch.float64), r1=3)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_motion_loss_ignores_handles_within_one_pixel() -> None:
    feat = torch.randn(1, 3, 16, 16, requires_grad=True)
    loss = motion_loss(feat, _pts([(5.0, 5.0), (9.0, 9.0)]), _pts([(6.0, 5.0), (9.5, 9.5)]), r1=2)
    assert loss.item() == 0.0
    loss.backward()  # still connected to feat (zero gradient)
    assert feat.grad is not None and feat.grad.abs().sum() == 0


def _blob(centre: tuple[float, float], size: int = 32, sigma: float = 2.0) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    g = torch.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    return torch.stack([g, 0.5 * g])[None].to(torch.float32)


def _centroid(feat: torch.Tensor) -> torch.Tensor:
    m = feat[0, 0].clamp_min(0)
    ys, xs = torch.meshgrid(torch.arange(m.shape[0]), torch.arange(m.shape[1]), indexing="ij")
    return torch.stack([(m * xs).sum(), (m * ys).sum()]) / m.sum()


@pytest.mark.parametrize("target", [(22.0, 12.0), (12.0, 4.0), (18.0, 18.0)])
def test_motion_loss_gradient_moves_the_patch_toward_the_target(target: tuple[float, float]) -> None:
    handle = (12.0, 12.0)
    feat = _blob(handle).requires_grad_(True)
    start = _centroid(feat.detach())
    opt = torch.optim.SGD([feat], lr=2.0)
    for _ in range(10):
        opt.zero_grad()
        motion_loss(feat, _pts([handle]), _pts([target]), r1=3).backward()
        opt.step()
    moved = _centroid(feat.detach()) - start
    direction = torch.tensor(target) - torch.tensor(handle)
    direction = direction / direction.norm()
    assert float(moved @ direction) > 0.1  # along d
    assert abs(float(moved[0] * direction[1] - moved[1] * direction[0])) < 0.25 * float(moved @ direction)


def test_motion_loss_native_equals_reference_value_and_gradient() -> None:
    torch.manual_seed(5)
    image = (32, 32)
    feat = torch.randn(1, 5, 16, 16, dtype=torch.float64, requires_grad=True)
    handles = [(10.0, 12.0), (0.0, 31.0), (30.0, 1.0), (16.0, 16.0)]
    targets = [(20.0, 5.0), (3.0, 28.0), (31.0, 1.5), (16.0, 25.0)]
    fast = motion_loss(feat, _pts(handles, torch.float64), _pts(targets, torch.float64), r1=3, image_shape=image)
    (g_fast,) = torch.autograd.grad(fast, feat)
    ref = motion_loss_reference(upsample_features(feat, image).float(), handles, targets, r1=3)
    (g_ref,) = torch.autograd.grad(ref, feat)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-7)


def test_templates_reference_equals_sample_at_pixels() -> None:
    torch.manual_seed(7)
    feat = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    up = upsample_features(feat, (32, 32))
    handles = [(0.0, 0.0), (31.0, 5.0), (12.4, 19.6)]
    expected = sample_at_pixels(feat, _pts(handles, torch.float64).round(), (32, 32))
    torch.testing.assert_close(templates_reference(up, handles), expected, rtol=0, atol=1e-12)


# -- mask term ------------------------------------------------------------------------------------------------------


def test_mask_loss_is_zero_when_features_are_unchanged() -> None:
    torch.manual_seed(8)
    feat = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :3] = True
    assert mask_loss(feat, feat.clone(), fixed_region_weights(mask, (8, 8))).item() == 0.0


def test_mask_loss_counts_only_the_fixed_region() -> None:
    feat0 = torch.zeros(1, 2, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :4] = True  # left half movable, right half fixed
    fixed = fixed_region_weights(mask, (8, 8))
    moved_in_movable = feat0.clone()
    moved_in_movable[..., :4] = 3.0
    assert mask_loss(moved_in_movable, feat0, fixed).item() == 0.0
    moved_everywhere = feat0 + 1.0
    assert mask_loss(moved_everywhere, feat0, fixed).item() == pytest.approx(0.5)  # mean over all C·h·w


def test_fixed_region_weights_native_grid_is_area_fraction() -> None:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:, 0] = True  # column 0 movable
    weights = fixed_region_weights(mask, (2, 2))
    torch.testing.assert_close(weights[0, 0], torch.tensor([[0.5, 1.0], [0.5, 1.0]]))
    with pytest.raises(InvalidInputError, match="mask"):
        fixed_region_weights(mask.float(), (2, 2))  # type: ignore[arg-type]


def test_latent_loss() -> None:
    w0 = torch.zeros(1, 4, 3)
    ws = w0.clone()
    ws[0, 0] = 2.0
    assert latent_loss(ws, w0).item() == pytest.approx(0.5)


@pytest.mark.parametrize("lr", [2e-3, 0.5])
def test_adam_step_equals_torch_adam_bit_for_bit(lr: float) -> None:
    """The pure Adam is torch.optim.Adam's arithmetic, op for op, including a state carried between steps."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(1, 4, 8, generator=gen)
    grads = [torch.randn(1, 4, 8, generator=gen) * 10 ** (k - 2) for k in range(5)]
    ref = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=lr)
    param, state = start.clone(), None
    for g in grads:
        ref.grad = g.clone()
        opt.step()
        param, state = adam_step(param.requires_grad_(True), g, state, lr)
        assert torch.equal(param, ref.detach())
        assert all(torch.equal(state[k], opt.state[ref][k]) for k in ("step", "exp_avg", "exp_avg_sq"))


def test_adam_step_leaves_inputs_untouched_and_reports_a_bad_state() -> None:
    param, grad = torch.zeros(2, 3), torch.ones(2, 3)
    new, state = adam_step(param, grad, None, 0.1)
    again, _ = adam_step(param, grad, state, 0.1)
    assert torch.equal(param, torch.zeros(2, 3)) and float(state["step"]) == 1 and not torch.equal(new, again)
    with pytest.raises(StepFailedError, match="Adam update failed"):
        adam_step(param, grad, {**state, "exp_avg": torch.zeros(5)}, 0.1)
    with pytest.raises(StepFailedError, match="non-finite"):
        adam_step(param, grad, None, float("inf"))
