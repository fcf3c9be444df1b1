"""rosinality ``.pt`` checkpoints: the key map is exact, proved against an independent rosinality forward pass."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dragkit.errors import CheckpointError, UnsafeCheckpointError
from dragkit.io import load_generator
from dragkit.io.rosinality import W_AVG_SAMPLES, read_rosinality
from dragkit.nn.seeds import z_from_seed
from dragkit.nn.stylegan2 import StyleGAN2Generator
from tests.ckpt_writers import to_rosinality_state_dict, write_rosinality
from tests.conftest import TINY_CONFIG, make_tiny_generator

ROS_CONFIG = dataclasses.replace(TINY_CONFIG, conv_clamp=None)  # rosinality's generator has no clamp


@pytest.fixture
def ros_g() -> StyleGAN2Generator:
    return make_tiny_generator(config=ROS_CONFIG)


# ---------------------------------------------------------------------------------------------------------------
# An independent re-implementation of rosinality's Generator.forward (model.py: EqualLinear, ModulatedConv2d with
# fused grouped conv, NoiseInjection, FusedLeakyReLU, ToRGB with Upsample), working on its raw state dict.


def _upfirdn(x: torch.Tensor, k: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """Zero-insert upsampling by ``up``, pad (p0, p1) on both axes, correlate with the flipped kernel."""
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros([n, c, h * up, w * up])
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(k, [0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, groups=c)


def _modconv(sd: dict, prefix: str, x: torch.Tensor, w: torch.Tensor, demodulate: bool, upsample: bool) -> torch.Tensor:
    weight = sd[f"{prefix}.conv.weight"]  # [1, O, I, k, k]
    _, out_ch, in_ch, k, _ = weight.shape
    mod_w = sd[f"{prefix}.conv.modulation.weight"]
    style = F.linear(w, mod_w * (1 / math.sqrt(mod_w.shape[1])), bias=sd[f"{prefix}.conv.modulation.bias"])
    batch = x.shape[0]
    weight = (1 / math.sqrt(in_ch * k * k)) * weight * style.view(batch, 1, in_ch, 1, 1)
    if demodulate:
        demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demod.view(batch, out_ch, 1, 1, 1)
    h, wd = x.shape[2:]
    if upsample:
        weight = weight.transpose(1, 2).reshape(batch * in_ch, out_ch, k, k)
        out = F.conv_transpose2d(x.reshape(1, batch * in_ch, h, wd), weight, padding=0, stride=2, groups=batch)
        out = out.view(batch, out_ch, *out.shape[2:])
        return _upfirdn(out, sd[f"{prefix}.conv.blur.kernel"], up=1, pad=(1, 1))
    weight = weight.view(batch * out_ch, in_ch, k, k)
    out = F.conv2d(x.reshape(1, batch * in_ch, h, wd), weight, padding=k // 2, groups=batch)
    return out.view(batch, out_ch, *out.shape[2:])


def _styled(sd: dict, prefix: str, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor, up: bool) -> torch.Tensor:
    out = _modconv(sd, prefix, x, w, demodulate=True, upsample=up)
    out = out + sd[f"{prefix}.noise.weight"] * noise
    return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def _to_rgb(sd: dict, prefix: str, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
    out = _modconv(sd, prefix, x, w, demodulate=False, upsample=False) + sd[f"{prefix}.bias"]
    if skip is not None:
        out = out + _upfirdn(skip, sd[f"{prefix}.upsample.kernel"], up=2, pad=(2, 1))
    return out


def rosinality_forward(sd: dict, latent_avg: torch.Tensor, z: torch.Tensor, psi: float) -> torch.Tensor:
    """rosinality ``g_ema([z], truncation=psi, truncation_latent=latent_avg, randomize_noise=False)[0]``."""
    n_mlp = sum(1 for k in sd if k.startswith("style.") and k.endswith(".weight"))
    x = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, n_mlp + 1):
        wt, b = sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]
        x = F.leaky_relu(F.linear(x, wt * (0.01 / math.sqrt(wt.shape[1]))) + b * 0.01, 0.2) * math.sqrt(2)
    style = latent_avg + psi * (x - latent_avg)
    n_rgbs = sum(1 for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    latent = style.unsqueeze(1).repeat(1, 2 * n_rgbs + 2, 1)
    noise = [sd[f"noises.noise_{j}"] for j in range(2 * n_rgbs + 1)]
    out = sd["input.input"].repeat(z.shape[0], 1, 1, 1)
    out = _styled(sd, "conv1", out, latent[:, 0], noise[0], up=False)
    skip = _to_rgb(sd, "to_rgb1", out, latent[:, 1], None)
    i = 1
    for k in range(n_rgbs):
        out = _styled(sd, f"convs.{2 * k}", out, latent[:, i], noise[i], up=True)
        out = _styled(sd, f"convs.{2 * k + 1}", out, latent[:, i + 1], noise[i + 1], up=False)
        skip = _to_rgb(sd, f"to_rgbs.{k}", out, latent[:, i + 2], skip)
        i += 2
    return skip


# ---------------------------------------------------------------------------------------------------------------


def test_key_map_matches_rosinality_forward(ros_g: StyleGAN2Generator, tmp_path: Path) -> None:
    """Loaded through the key map, our generator reproduces rosinality's own computation (mapping + synthesis)."""
    path = write_rosinality(ros_g, tmp_path / "g.pt")
    G = load_generator(path)
    ckpt = torch.load(path, weights_only=False)
    z = torch.cat([z_from_seed(s, 16) for s in (0, 1, 2)])
    for psi in (1.0, 0.7):
        with torch.no_grad():
            ref = rosinality_forward(ckpt["g_ema"], ckpt["latent_avg"], z, psi)
            ours = G.synthesis(G.mapping(z, psi=psi), noise_mode="const")
        assert ours.shape == ref.shape == (3, 3, 32, 32)
        # Differences come only from where the 1e-8 demodulation epsilon sits and float summation order.
        torch.testing.assert_close(ours, ref, rtol=0, atol=2e-5)
        assert ref.abs().max() > 0.1  # a non-trivial image


def test_equal_linear_equals_fully_connected() -> None:
    """rosinality EqualLinear (scale = lr_mul/√in, bias·lr_mul) == NVIDIA FullyConnectedLayer on the same W, b."""
    from dragkit.nn.stylegan2 import FullyConnectedLayer

    torch.manual_seed(0)
    for lr_mul, act in ((0.01, "lrelu"), (1.0, "linear")):
        fc = FullyConnectedLayer(64, 32, activation=act, lr_multiplier=lr_mul)
        with torch.no_grad():
            fc.bias.normal_()
        x = torch.randn(5, 64)
        scale = (1 / math.sqrt(64)) * lr_mul
        ref = F.linear(x, fc.weight * scale)
        ref = F.leaky_relu(ref + fc.bias * lr_mul, 0.2) * math.sqrt(2) if act == "lrelu" else ref + fc.bias * lr_mul
        torch.testing.assert_close(fc(x), ref, rtol=1e-6, atol=1e-6)


def test_state_dict_round_trip_is_exact(ros_g: StyleGAN2Generator, tmp_path: Path) -> None:
    """NVIDIA → rosinality (writer) → NVIDIA (loader) gives back every tensor bit for bit, and the config."""
    for legacy in (False, True):
        G = load_generator(write_rosinality(ros_g, tmp_path / f"g{legacy}.pt", legacy=legacy))
        assert G.config == ros_g.config
        ref = ros_g.state_dict()
        got = G.state_dict()
        assert ref.keys() == got.keys()
        for k in ref:
            assert torch.equal(ref[k], got[k]), k


def test_shapes_of_rosinality_layout(ros_g: StyleGAN2Generator) -> None:
    sd = to_rosinality_state_dict(ros_g)
    assert sd["conv1.conv.weight"].shape == (1, 16, 16, 3, 3)
    assert sd["to_rgb1.bias"].shape == (1, 3, 1, 1)
    assert sd["conv1.noise.weight"].shape == (1,)
    assert sd["noises.noise_0"].shape == (1, 1, 4, 4)
    assert sd["noises.noise_6"].shape == (1, 1, 32, 32)
    assert torch.allclose(sd["convs.0.conv.blur.kernel"].sum(), torch.tensor(4.0))


def test_missing_latent_avg_uses_mean_of_mapping(ros_g: StyleGAN2Generator, tmp_path: Path) -> None:
    parsed = read_rosinality(write_rosinality(ros_g, tmp_path / "g.pt", latent_avg=False, with_args=False))
    gen = torch.Generator().manual_seed(0)
    z = torch.randn([W_AVG_SAMPLES, 16], generator=gen)
    expected = ros_g.mapping(z)[:, 0].mean(dim=0)
    torch.testing.assert_close(parsed.state_dict["mapping.w_avg"], expected, rtol=1e-5, atol=1e-5)
    assert "4096" in parsed.details["w_avg"]


def test_bare_state_dict_and_channel_multiplier_1(tmp_path: Path) -> None:
    """A file that is just a g_ema state dict; channels 16·cm at high resolutions (cm=1 → channel_base 16384/…)."""
    cfg = dataclasses.replace(ROS_CONFIG, channel_base=128, channel_max=16)  # 4:16, 8:16, 16:8, 32:4
    G0 = make_tiny_generator(config=cfg)
    torch.save(to_rosinality_state_dict(G0), tmp_path / "bare.pt")
    parsed = read_rosinality(tmp_path / "bare.pt")
    assert (parsed.config.channel_base, parsed.config.channel_max) == (128, 16)
    assert parsed.details["network"] == "<root>"


def test_unexpected_and_missing_keys(ros_g: StyleGAN2Generator, tmp_path: Path) -> None:
    sd = to_rosinality_state_dict(ros_g)
    torch.save({"g_ema": {**sd, "extra.weight": torch.zeros(1)}, "latent_avg": torch.zeros(16)}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys in rosinality checkpoint: extra\.weight"):
        load_generator(tmp_path / "a.pt")
    del sd["convs.1.activate.bias"]
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(16)}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match=r"lacks convs\.1\.activate\.bias"):
        load_generator(tmp_path / "b.pt")
    torch.save({"g_ema": to_rosinality_state_dict(ros_g), "latent_avg": torch.zeros(7)}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="latent_avg has 7 values, expected w_dim = 16"):
        load_generator(tmp_path / "c.pt")
    torch.save({"model": {}}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        load_generator(tmp_path / "d.pt")


class WholeModel(torch.nn.Module):
    """Users sometimes ``torch.save`` a whole module: its class is a non-weights global."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)


def test_non_weights_global_in_pt_is_refused(tmp_path: Path) -> None:
    """A torch.save file naming anything outside torch's weights-only list is refused, naming the global."""
    torch.save({"g_ema": WholeModel()}, tmp_path / "c.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"refused global 'tests\.test_io_rosinality\.WholeModel'"):
        load_generator(tmp_path / "c.pt")
