"""StyleGAN3 (configs T and R) on tiny seeded generators: the filtered_lrelu implementations agree, filters are
designed as NVIDIA's (scipy's Kaiser design), the protocol holds, pickles in the stylegan3 repo's layout load, and
lying or hostile pickles are refused."""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from dragkit.engine import DragConfig, DragSession
from dragkit.errors import CheckpointError, UnsafeCheckpointError
from dragkit.io import load_generator
from dragkit.io.loader import inspect_checkpoint
from dragkit.nn.protocol import Generator
from dragkit.nn.stylegan3 import StyleGAN3Config, StyleGAN3Generator, layer_specs
from dragkit.nn.stylegan3_ops import design_lowpass_filter, filtered_lrelu_fast, filtered_lrelu_ref
from tests.ckpt_writers import child, stylegan3_snapshot

T_CONFIG = StyleGAN3Config(z_dim=16, w_dim=16, img_resolution=32, channel_base=512, channel_max=16)
R_CONFIG = StyleGAN3Config(
    z_dim=16, w_dim=16, img_resolution=32, channel_base=1024, channel_max=32, conv_kernel=1, use_radial_filters=True
)


def make_sg3(config: StyleGAN3Config = T_CONFIG, seed: int = 0) -> StyleGAN3Generator:
    """A seeded StyleGAN3 with non-trivial biases, magnitudes, w_avg and input transform."""
    torch.manual_seed(seed)
    G = StyleGAN3Generator(config)
    with torch.no_grad():
        for name, t in G.state_dict().items():
            if name.endswith(".bias") or name.endswith("w_avg"):
                t.add_(0.1 * torch.randn_like(t))
            elif name.endswith("magnitude_ema"):
                t.fill_(float(torch.rand([]) + 0.5))
        a = 0.3
        G.synthesis.input.transform.copy_(
            torch.tensor([[math.cos(a), -math.sin(a), 0.1], [math.sin(a), math.cos(a), -0.05], [0, 0, 1]])
        )
        G.synthesis.input.affine.weight.normal_(0, 0.3)
    return G.eval().requires_grad_(False)


# -- ops --------------------------------------------------------------------------------------------------------


def test_designed_filter_matches_scipy_firwin() -> None:
    """scipy.signal.firwin(numtaps=12, cutoff=5, width=3, fs=32) as float32 (the values NVIDIA's design gives)."""
    expected = [-0.04021994, -0.06472249, -0.026483936, 0.0839396, 0.22461249, 0.32287428]
    f = design_lowpass_filter(12, 5.0, 3.0, 32.0)
    assert f is not None and f.shape == (12,)
    torch.testing.assert_close(f[:6], torch.tensor(expected), rtol=0, atol=2e-7)
    torch.testing.assert_close(f, f.flip(0))
    assert design_lowpass_filter(1, 5.0, 3.0, 32.0) is None


def test_radial_filter_is_symmetric_with_unit_gain() -> None:
    f = design_lowpass_filter(12, 5.0, 3.0, 32.0, radial=True)
    assert f is not None and f.shape == (12, 12)
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    torch.testing.assert_close(f, f.t())
    torch.testing.assert_close(f, f.flip(0))


@pytest.mark.parametrize("radial", [False, True])
@pytest.mark.parametrize(
    ("up", "down", "padding"),
    [(2, 2, (11, 10, 11, 10)), (4, 2, (3, -2, 3, -2)), (1, 2, (5, 5, 5, 5)), (2, 1, (0, 1, 0, 1))],
)
def test_fast_filtered_lrelu_equals_the_reference(up: int, down: int, padding: tuple[int, ...], radial: bool) -> None:
    gen = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn([2, 5, 13, 13], generator=gen) * 3
    b = torch.randn([5], generator=gen)
    fu = design_lowpass_filter(6 * up, 4.0, 3.0, 16.0 * up) if up > 1 else None
    fd = design_lowpass_filter(6 * down, 4.0, 3.0, 16.0 * up, radial=radial) if down > 1 else None
    for clamp, gain, slope in [(None, math.sqrt(2), 0.2), (2.5, 1.0, 1.0)]:
        ref = filtered_lrelu_ref(x, fu, fd, b, up, down, padding, gain, slope, clamp)
        fast = filtered_lrelu_fast(x, fu, fd, b, up, down, padding, gain, slope, clamp)
        assert fast.shape == ref.shape
        torch.testing.assert_close(fast, ref, rtol=0, atol=2e-5)


def test_fast_filtered_lrelu_gradients_equal_the_reference() -> None:
    x = torch.randn([1, 3, 9, 9], dtype=torch.float64, requires_grad=True)
    fu = design_lowpass_filter(12, 4.0, 3.0, 32.0)
    fd = design_lowpass_filter(12, 4.0, 3.0, 32.0)
    assert fu is not None and fd is not None
    args = (fu.double(), fd.double(), None, 2, 2, (11, 10, 11, 10))
    (g_ref,) = torch.autograd.grad(filtered_lrelu_ref(x, *args).square().sum(), x)
    (g_fast,) = torch.autograd.grad(filtered_lrelu_fast(x, *args).square().sum(), x)
    torch.testing.assert_close(g_fast, g_ref)


# -- the generator ------------------------------------------------------------------------------------------------


def test_official_1024_t_layer_names_and_hints() -> None:
    """NVIDIA's stylegan3-t-ffhq-1024 names its layers L0_36_512 … L14_1024_3; 16 ws; features at 128 px."""
    specs = layer_specs(StyleGAN3Config())
    assert [s.name for s in specs][:3] == ["L0_36_512", "L1_36_512", "L2_52_512"]
    assert specs[-1].name == "L14_1024_3" and specs[-3].name == "L12_1044_32"
    G = StyleGAN3Generator(StyleGAN3Config(z_dim=8, w_dim=8, img_resolution=64, channel_base=256, channel_max=8))
    assert G.num_ws == 16
    level = G.feature_levels()[G.drag_hints().feature_block]
    assert level.resolution == 32 and G.drag_hints().optimize_ws == (0, 1, 2, 3, 4, 5)


@pytest.mark.parametrize("config", [T_CONFIG, R_CONFIG], ids=["T", "R"])
def test_protocol_synthesize_resume_and_impls(config: StyleGAN3Config) -> None:
    G = make_sg3(config)
    assert isinstance(G, Generator)
    ws = G.mapping(torch.randn(2, 16), psi=0.7)
    full = G.synthesis(ws)
    assert full.shape == (2, 3, 32, 32) and torch.isfinite(full).all() and full.std() > 1e-3
    for level in G.feature_levels():
        r = G.synthesize(ws, feature_block=level.index)
        assert r.features.shape == (2, level.channels, level.resolution, level.resolution)
        assert r.image is not None
        torch.testing.assert_close(r.image, full, rtol=0, atol=1e-6)
        torch.testing.assert_close(G.resume(r.state, ws), full, rtol=0, atol=1e-6)
    G.set_impl("ref")
    torch.testing.assert_close(G.synthesis(ws), full, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="impl"):
        G.set_impl("cuda")


def test_features_lie_over_the_image() -> None:
    """The margin is cropped: a tap's map spans the image, so a shift of the input transform moves features and
    image alike (the feature map's centre of mass follows the image's)."""
    G = make_sg3()
    level = G.drag_hints().feature_block
    ws = G.mapping(torch.randn(1, 16), psi=0.7)
    r = G.synthesize(ws, feature_block=level)
    assert r.features.shape[-1] == G.feature_levels()[level].resolution
    spec = G.synthesis.specs[level - 1]
    assert spec.out_size - 2 * spec.crop == spec.out_sampling_rate


def test_drag_runs_and_moves_the_handle() -> None:
    G = make_sg3(R_CONFIG)
    sess = DragSession.from_seed(G, 0, psi=0.7, config=DragConfig(lr=0.02, r1=2, r2=3), model_id="tiny-sg3")
    sess.set_points([(12.0, 14.0)], [(20.0, 14.0)])
    start = math.dist(sess.handles[0], sess.targets[0])
    for _ in range(8):
        res = sess.step()
        assert all(math.isfinite(v) for p in res.handles for v in p)
    assert torch.isfinite(sess.ws).all()
    assert math.dist(sess.handles[0], sess.targets[0]) < start


def test_config_round_trip_and_validation() -> None:
    assert StyleGAN3Config.from_dict(R_CONFIG.to_dict()) == R_CONFIG
    assert (T_CONFIG.name, R_CONFIG.name) == ("T", "R")
    with pytest.raises(ValueError, match="num_critical"):
        StyleGAN3Config(num_layers=2, num_critical=2)
    with pytest.raises(CheckpointError, match="unknown StyleGAN3 config keys"):
        StyleGAN3Config.from_dict({"bogus": 1})


# -- pickles ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [T_CONFIG, R_CONFIG], ids=["T", "R"])
def test_stylegan3_repo_pickle_loads_and_inspects(config: StyleGAN3Config, tmp_path: Path) -> None:
    G = make_sg3(config)
    (tmp_path / "g.pkl").write_bytes(stylegan3_snapshot(G))
    G2 = load_generator(tmp_path / "g.pkl")
    assert isinstance(G2, StyleGAN3Generator) and G2.config == config
    ws = G.mapping(torch.randn(1, 16), psi=0.7)
    assert torch.equal(G2.synthesis(ws), G.synthesis(ws))
    info = inspect_checkpoint(tmp_path / "g.pkl")
    assert info.family == "stylegan3" and info.resolution == (32, 32) and info.num_ws == 16
    assert info.config["conv_kernel"] == config.conv_kernel


def _patched(G: StyleGAN3Generator, patch: Any) -> bytes:
    return stylegan3_snapshot(G, patch=patch)


def test_a_pickle_whose_recorded_geometry_lies_is_refused(tmp_path: Path) -> None:
    G = make_sg3()

    def pad(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        layer = child(data["G_ema"], "synthesis", G.synthesis.layer_names[3])
        layer.meta["state"]["padding"] = [0, 0, 0, 0]

    (tmp_path / "pad.pkl").write_bytes(_patched(G, pad))
    with pytest.raises(CheckpointError, match=r"L3_\w+\.padding is \[0, 0, 0, 0\]"):
        load_generator(tmp_path / "pad.pkl")

    def shape(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        layer = child(data["G_ema"], "synthesis", G.synthesis.layer_names[2])
        layer.meta["state"]["_parameters"]["weight"] = torch.zeros([3, 3, 3, 3])

    (tmp_path / "shape.pkl").write_bytes(_patched(G, shape))
    with pytest.raises(CheckpointError, match=r"L2_\w+\.weight"):
        load_generator(tmp_path / "shape.pkl")

    def sizes(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        child(data["G_ema"], "synthesis").meta["state"]["_init_kwargs"]["channel_max"] = 8

    (tmp_path / "sizes.pkl").write_bytes(_patched(G, sizes))
    with pytest.raises(CheckpointError, match=r"should be .L0_36_8. for this configuration"):
        load_generator(tmp_path / "sizes.pkl")


def test_malicious_module_src_is_never_run(tmp_path: Path) -> None:
    """A StyleGAN3 pickle whose module_src would write a file loads as data; the code is never executed."""
    G = make_sg3()
    marker = tmp_path / "pwned"

    def evil(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        stack = [data["G_ema"]]
        while stack:
            p = stack.pop()
            p.meta["module_src"] = f"open({str(marker)!r}, 'w').write('x')\n"
            stack.extend(c for c in p.meta["state"]["_modules"].values())

    (tmp_path / "evil.pkl").write_bytes(_patched(G, evil))
    G2 = load_generator(tmp_path / "evil.pkl")
    assert isinstance(G2, StyleGAN3Generator) and not marker.exists()


def test_a_pickle_naming_os_system_is_refused(tmp_path: Path) -> None:
    G = make_sg3()

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return (os.system, ("true",))

    def evil(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        layer = child(data["G_ema"], "synthesis", G.synthesis.layer_names[0])
        layer.meta["state"]["magnitude_ema_beta"] = Boom()

    blob = _patched(G, evil)
    (tmp_path / "os.pkl").write_bytes(blob)
    with pytest.raises(UnsafeCheckpointError, match=r"refused global '(posix|os)\.system'"):
        load_generator(tmp_path / "os.pkl")
    assert b"system" in blob
