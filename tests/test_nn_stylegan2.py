"""StyleGAN2 generator: names, shapes, protocol, synthesize/resume equivalence, reference op answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dragkit.errors import CheckpointError
from dragkit.nn import ops
from dragkit.nn.protocol import Generator
from dragkit.nn.stylegan2 import StyleGAN2Config, StyleGAN2Generator

from .conftest import TINY_CONFIG, make_tiny_generator


def test_protocol_and_num_ws(tiny_g: StyleGAN2Generator) -> None:
    assert isinstance(tiny_g, Generator)
    # 32 px: blocks b4 b8 b16 b32 → num_ws = 2·log2(32) − 2 = 8.
    assert tiny_g.num_ws == 8
    assert [lv.resolution for lv in tiny_g.feature_levels()] == [4, 8, 16, 32]
    assert tiny_g.drag_hints().feature_block == 2  # b16 = H/2 for a 32 px model
    assert tiny_g.drag_hints().optimize_ws == (0, 1, 2, 3, 4, 5)
    assert tiny_g.img_shape == (32, 32)


def test_official_512_names_and_feature_block() -> None:
    cfg = StyleGAN2Config(img_resolution=512, channel_base=32768, channel_max=512, conv_clamp=256)
    with torch.device("meta"):
        G = StyleGAN2Generator(cfg)
    keys = set(G.state_dict())
    for k in [
        "mapping.fc0.weight",
        "mapping.fc7.bias",
        "mapping.w_avg",
        "synthesis.b4.const",
        "synthesis.b4.resample_filter",
        "synthesis.b4.conv1.noise_const",
        "synthesis.b4.torgb.affine.weight",
        "synthesis.b8.conv0.resample_filter",
        "synthesis.b512.conv1.noise_strength",
        "synthesis.b512.torgb.bias",
    ]:
        assert k in keys, k
    assert G.num_ws == 16
    assert G.drag_hints().feature_block == 5
    assert G.feature_levels()[5].resolution == 128 and G.feature_levels()[5].channels == 256


@pytest.mark.parametrize("architecture", ["skip", "resnet", "orig"])
def test_synthesize_then_resume_equals_full_forward(architecture: str) -> None:
    cfg = StyleGAN2Config(**{**TINY_CONFIG.to_dict(), "architecture": architecture, "resample_filter": (1, 3, 3, 1)})
    G = make_tiny_generator(1, cfg)
    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3)), psi=0.7)
    full = G.synthesis(ws)
    assert full.shape == (2, 3, 32, 32)
    for k in range(len(G.feature_levels())):
        res = G.synthesize(ws, feature_block=k, stop_after_features=True)
        assert res.image is None
        lv = G.feature_levels()[k]
        assert res.features.shape == (2, lv.channels, lv.resolution, lv.resolution)
        img = G.resume(res.state, ws)
        assert torch.equal(img, full), f"block {k}: max diff {(img - full).abs().max()}"
        whole = G.synthesize(ws, feature_block=k)
        assert whole.image is not None and torch.equal(whole.image, full)


def test_features_carry_gradient_to_ws(tiny_g: StyleGAN2Generator) -> None:
    ws = tiny_g.mapping(torch.randn(1, tiny_g.z_dim)).detach().requires_grad_(True)
    res = tiny_g.synthesize(ws, feature_block=2, stop_after_features=True)
    res.features.square().mean().backward()
    assert ws.grad is not None and ws.grad[:, :6].abs().sum() > 0
    # Layers after b16 (ws[6:]) are not used up to the b16 features.
    assert ws.grad[:, 6:].abs().sum() == 0


def test_truncation_and_cutoff(tiny_g: StyleGAN2Generator) -> None:
    z = torch.randn(3, tiny_g.z_dim)
    w1 = tiny_g.mapping(z)
    w = tiny_g.mapping(z, psi=0.7)
    torch.testing.assert_close(w, tiny_g.w_avg.lerp(w1, 0.7))
    wc = tiny_g.mapping(z, psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(wc[:, :3], tiny_g.w_avg.lerp(w1[:, :3], 0.5))
    torch.testing.assert_close(wc[:, 3:], w1[:, 3:])


def test_noise_modes(tiny_g: StyleGAN2Generator) -> None:
    ws = tiny_g.mapping(torch.randn(1, tiny_g.z_dim))
    a = tiny_g.synthesis(ws, noise_mode="const")
    b = tiny_g.synthesis(ws, noise_mode="const")
    assert torch.equal(a, b)
    n = tiny_g.synthesis(ws, noise_mode="none")
    assert not torch.equal(a, n)
    torch.manual_seed(0)
    r1 = tiny_g.synthesis(ws, noise_mode="random")
    torch.manual_seed(1)
    r2 = tiny_g.synthesis(ws, noise_mode="random")
    assert not torch.equal(r1, r2)
    with pytest.raises(ValueError, match="noise_mode"):
        tiny_g.synthesize(ws, 1, noise_mode="bogus")


def test_conditional_mapping() -> None:
    cfg = StyleGAN2Config(**{**TINY_CONFIG.to_dict(), "c_dim": 4, "resample_filter": (1, 3, 3, 1)})
    G = make_tiny_generator(2, cfg)
    assert "mapping.embed.weight" in G.state_dict()
    z = torch.randn(2, G.z_dim)
    c = F.one_hot(torch.tensor([0, 3]), 4).float()
    assert G(z, c).shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="conditional"):
        G.mapping(z)


def test_bad_inputs(tiny_g: StyleGAN2Generator) -> None:
    with pytest.raises(ValueError, match=r"ws must be \[N, 8, 16\]"):
        tiny_g.synthesize(torch.zeros(1, 7, 16), 1)
    with pytest.raises(ValueError, match="feature_block"):
        tiny_g.synthesize(torch.zeros(1, 8, 16), 4)
    with pytest.raises(ValueError, match="z must be"):
        tiny_g.mapping(torch.zeros(1, 5))
    with pytest.raises(CheckpointError, match="unknown StyleGAN2 config keys"):
        StyleGAN2Config.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Config(img_resolution=48)


def test_config_round_trip() -> None:
    assert StyleGAN2Config.from_dict(TINY_CONFIG.to_dict()) == TINY_CONFIG


# -- reference ops: known answers ------------------------------------------------------------------------------


def test_setup_filter_known_answer() -> None:
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4)
    assert math.isclose(float(f.sum()), 1.0, rel_tol=1e-6)
    assert math.isclose(float(f[1, 1]), 9 / 64, rel_tol=1e-6)


def test_upsample2d_preserves_constant_and_shape() -> None:
    f = ops.setup_filter([1, 3, 3, 1])
    x = torch.full([1, 2, 5, 5], 3.0)
    y = ops.upsample2d(x, f)
    assert y.shape == (1, 2, 10, 10)
    # Interior of an upsampled constant stays constant (borders see the zero padding).
    torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 3.0))


def test_upfirdn2d_identity_and_down() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    torch.testing.assert_close(ops.upfirdn2d(x, None), x)
    torch.testing.assert_close(ops.upfirdn2d(x, None, down=2), x[:, :, ::2, ::2])


def test_bias_act_known_answer() -> None:
    x = torch.tensor([[-1.0, 2.0]]).reshape(1, 2, 1, 1)
    b = torch.tensor([0.5, -0.5])
    y = ops.bias_act(x, b, act="lrelu", clamp=1.0)
    expected = torch.tensor([-0.5 * 0.2 * math.sqrt(2), 1.0]).reshape(1, 2, 1, 1)
    torch.testing.assert_close(y, expected)


def test_conv2d_resample_up_matches_upsample_then_conv() -> None:
    """Transposed-conv fast path == zero-insert + FIR + plain convolution (float64)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1]).double()
    fast = ops.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)
    # Generic path: upsample with FIR (padding per NVIDIA's generic fallback) then a true convolution.
    p0, p1 = 1 + 2, 1 + 1
    up = ops.upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4)
    ref = F.conv2d(up, w.flip([2, 3]))
    assert fast.shape == ref.shape == (1, 4, 12, 12)
    torch.testing.assert_close(fast, ref)


def test_modulated_conv_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    s = torch.randn(1, 2, generator=g, dtype=torch.float64, requires_grad=True)
    f = ops.setup_filter([1, 3, 3, 1]).double()

    def fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return ops.modulated_conv2d(x, w, s, up=2, padding=1, resample_filter=f, flip_weight=False)

    assert torch.autograd.gradcheck(fn, (x, s))


def test_per_layer_ws_equals_tensor_and_limits_gradients(tiny_g: StyleGAN2Generator) -> None:
    """The per-layer ws form gives the same result; rows without grad stay out of autograd."""
    ws = tiny_g.mapping(torch.randn(1, tiny_g.z_dim), psi=0.7)
    full = tiny_g.synthesize(ws, feature_block=2)
    opt = ws[:, :2].clone().requires_grad_(True)
    layers = [opt[:, 0], opt[:, 1], *ws[:, 2:].unbind(1)]
    part = tiny_g.synthesize(layers, feature_block=2, stop_after_features=True)
    torch.testing.assert_close(part.features, full.features, rtol=0, atol=0)
    assert torch.equal(tiny_g.resume(part.state, layers), full.image)
    part.features.sum().backward()
    assert opt.grad is not None and opt.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="8 tensors of shape"):
        tiny_g.synthesize(layers[:-1], feature_block=2)
