"""MobileStyleGAN module and IR reader on tiny, seeded networks (no download needed).

The real model's parity with OpenVINO is in test_mobilestylegan_parity.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dragkit.errors import CheckpointError, InvalidInputError
from dragkit.io.openvino_ir import IRGraph
from dragkit.nn.mobilestylegan import (
    MobileStyleGANConfig,
    MobileStyleGANGenerator,
    MobileStyleGANResumeState,
    compute_w_avg,
)
from dragkit.nn.mobilestylegan_ops import haar_idwt
from dragkit.nn.protocol import Generator

TINY = MobileStyleGANConfig(z_dim=16, w_dim=16, mapping_layers=2, channels=(32, 16, 8))  # 4² → 8² → 16² → 32²


def make_tiny(seed: int = 0, impl: str = "fast", config: MobileStyleGANConfig = TINY) -> MobileStyleGANGenerator:
    """Random-init tiny generator with scaled weights, non-trivial noise maps and w_avg (seeded)."""
    torch.manual_seed(seed)
    G = MobileStyleGANGenerator(config, impl=impl)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("weight", "weight_pw", "weight_dw")) and p.ndim > 1:
                p.mul_(1.0 / math.sqrt(p[0].numel()))
            if name.endswith("affine.bias"):
                p.fill_(1.0).add_(0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
        for name, b in G.named_buffers():
            if name.endswith("noise_const"):
                b.normal_(0.0, 0.1)
        G.mapping.w_avg.normal_(0.0, 0.1)
    return G.eval().requires_grad_(False)


def _ws(G: MobileStyleGANGenerator, n: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn([n, G.num_ws, G.w_dim], generator=g)


def haar_dwt(y: torch.Tensor) -> torch.Tensor:
    """Forward Haar transform (orthonormal), the inverse of haar_idwt: [N, C, 2h, 2w] → [N, 4C, h, w]."""
    a, b = y[:, :, 0::2, 0::2], y[:, :, 0::2, 1::2]
    c, d = y[:, :, 1::2, 0::2], y[:, :, 1::2, 1::2]
    ll = (a + b + c + d) / 2
    lh = (a + b - c - d) / 2
    hl = (a - b + c - d) / 2
    hh = (a - b - c + d) / 2
    high = torch.stack((lh, hl, hh), dim=2).flatten(1, 2)  # [N, 3C, h, w], channel-major
    return torch.cat((ll, high), dim=1)


# -- config ------------------------------------------------------------------------------------------------------


def test_config_defaults_are_the_released_model() -> None:
    cfg = MobileStyleGANConfig()
    assert cfg.img_resolution == 1024
    assert cfg.num_ws == 23
    assert cfg.block_resolutions == [4, 8, 16, 32, 64, 128, 256, 512]


def test_config_round_trip_and_unknown_keys() -> None:
    assert MobileStyleGANConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(CheckpointError, match="unknown"):
        MobileStyleGANConfig.from_dict({**TINY.to_dict(), "bogus": 1})
    with pytest.raises(CheckpointError, match="multiple of 4"):
        MobileStyleGANConfig.from_dict({**TINY.to_dict(), "channels": [32, 10]})


# -- inverse Haar transform --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 4, 1, 1), (2, 8, 3, 5), (1, 48, 6, 4)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_haar_idwt_fast_equals_reference(shape: tuple[int, int, int, int], channels_last: bool) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref = haar_idwt(x, impl="reference")
    assert ref.shape == (shape[0], shape[1] // 4, 2 * shape[2], 2 * shape[3])
    torch.testing.assert_close(haar_idwt(x, impl="fast"), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(haar_idwt(x * 0.5, impl="fast", halved=True), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(haar_idwt(x * 0.5, impl="reference", halved=True), ref, atol=1e-6, rtol=0)


def test_haar_idwt_inverts_the_forward_transform() -> None:
    y = torch.randn(2, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    for impl in ("fast", "reference"):
        torch.testing.assert_close(haar_idwt(haar_dwt(y), impl=impl), y, atol=1e-6, rtol=0)


def test_haar_idwt_known_answer() -> None:
    # LL = 2, LH = 1, HL = HH = 0 → rows differ by ±LH/2: [[1.5, 1.5], [0.5, 0.5]].
    x = torch.tensor([2.0, 1.0, 0.0, 0.0]).view(1, 4, 1, 1)
    expected = torch.tensor([[1.5, 1.5], [0.5, 0.5]]).view(1, 1, 2, 2)
    for impl in ("fast", "reference"):
        torch.testing.assert_close(haar_idwt(x, impl=impl), expected)


def test_haar_idwt_gradcheck_and_bad_input() -> None:
    x = torch.randn(1, 8, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: haar_idwt(t, impl="fast"), (x,))
    with pytest.raises(ValueError, match="4\\*C"):
        haar_idwt(torch.zeros(1, 6, 2, 2))
    with pytest.raises(ValueError, match="impl"):
        haar_idwt(torch.zeros(1, 4, 2, 2), impl="cuda")


# -- generator ---------------------------------------------------------------------------------------------------


def test_protocol_and_shapes() -> None:
    G = make_tiny()
    assert isinstance(G, Generator)
    assert (G.z_dim, G.c_dim, G.w_dim, G.num_ws, G.img_resolution, G.img_channels) == (16, 0, 16, 8, 32, 3)
    assert G.img_shape == (32, 32)
    assert G.w_avg.shape == (16,)
    levels = G.feature_levels()
    assert [(lv.index, lv.channels, lv.resolution, lv.name) for lv in levels] == [
        (0, 32, 4, "b4"),
        (1, 16, 8, "b8"),
        (2, 8, 16, "b16"),
    ]
    ws = _ws(G)
    for lv in levels:
        r = G.synthesize(ws, lv.index)
        assert r.features.shape == (1, lv.channels, lv.resolution, lv.resolution)
        assert r.features.is_contiguous()
        assert r.image is not None and r.image.shape == (1, 3, 32, 32)


def test_ws_levels_and_drag_hints() -> None:
    G = MobileStyleGANGenerator(MobileStyleGANConfig())
    levels = G.ws_levels()
    assert len(levels) == 23
    assert levels[:7] == [0, 1, 1, 1, 2, 2, 2] and levels[-1] == 7
    assert levels == sorted(levels)
    hints = G.drag_hints()
    assert G.feature_levels()[hints.feature_block].name == "b128"
    assert G.feature_levels()[hints.feature_block].channels == 256
    assert hints.optimize_ws == tuple(range(10))  # the style inputs of b4 … b32
    tiny_hints = make_tiny().drag_hints()
    assert 0 <= tiny_hints.feature_block < len(TINY.channels) - 1


@pytest.mark.parametrize("noise_mode", ["const", "none"])
@pytest.mark.parametrize("n", [1, 2])
def test_fast_equals_reference(noise_mode: str, n: int) -> None:
    fast, ref = make_tiny(impl="fast"), make_tiny(impl="reference")
    ws = _ws(fast, n)
    a = fast.synthesize(ws, 1, noise_mode=noise_mode)
    b = ref.synthesize(ws, 1, noise_mode=noise_mode)
    assert a.image is not None and b.image is not None
    torch.testing.assert_close(a.image, b.image, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=0)


def test_fast_equals_reference_gradients() -> None:
    fast, ref = make_tiny(impl="fast"), make_tiny(impl="reference")
    ws0 = _ws(fast)
    grads = []
    for G in (fast, ref):
        ws = ws0.clone().requires_grad_(True)
        feats = G.synthesize(ws, 2, stop_after_features=True).features
        (feats.square().mean() + feats[:, :, 3:6, 4:9].abs().mean()).backward()
        assert ws.grad is not None
        grads.append(ws.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)
    assert grads[0][:, : 3 * 2 + 1].abs().sum() > 0  # ws of levels ≤ 2 get gradients
    assert grads[0][:, 3 * 2 + 1 :].abs().sum() == 0  # later ws do not affect b16


def test_batch_equals_single() -> None:
    G = make_tiny()
    ws = _ws(G, 3)
    batch = G.synthesis_forward(ws)
    for i in range(3):
        torch.testing.assert_close(G.synthesis_forward(ws[i : i + 1]), batch[i : i + 1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_stop_and_resume_equals_full_forward(impl: str) -> None:
    G = make_tiny(impl=impl)
    ws = _ws(G, 2)
    full = G.synthesis_forward(ws)
    for lv in G.feature_levels():
        r = G.synthesize(ws, lv.index, stop_after_features=True)
        assert r.image is None
        assert isinstance(r.state, MobileStyleGANResumeState)
        img = G.resume(r.state, ws)
        torch.testing.assert_close(img, full, atol=1e-6, rtol=0)


def test_resume_has_no_grad_and_features_do() -> None:
    G = make_tiny()
    ws = _ws(G).requires_grad_(True)
    r = G.synthesize(ws, 1, stop_after_features=True)
    assert r.features.requires_grad
    img = G.resume(r.state, ws)
    assert not img.requires_grad
    with pytest.raises(TypeError):
        G.resume(object(), ws)


def test_mapping_truncation_and_errors() -> None:
    G = make_tiny()
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    ws = G.mapping(z)
    assert ws.shape == (2, 8, 16)
    torch.testing.assert_close(ws, ws[:, :1].expand_as(ws))
    trunc = G.mapping(z, psi=0.5)
    torch.testing.assert_close(trunc, G.w_avg.lerp(ws, 0.5))
    cut = G.mapping(z, psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], trunc[:, :3])
    torch.testing.assert_close(cut[:, 3:], ws[:, 3:])
    assert G.mapping(z, c=torch.zeros(2, 0)).shape == (2, 8, 16)
    with pytest.raises(InvalidInputError, match="unconditional"):
        G.mapping(z, c=torch.zeros(2, 3))
    with pytest.raises(InvalidInputError, match="z must be"):
        G.mapping(torch.zeros(2, 5))


def test_bad_ws_level_and_noise_mode_raise() -> None:
    G = make_tiny()
    with pytest.raises(InvalidInputError, match="ws must be"):
        G.synthesize(torch.zeros(1, 7, 16), 0)
    with pytest.raises(InvalidInputError, match="feature_block"):
        G.synthesize(_ws(G), 3)
    with pytest.raises(InvalidInputError, match="noise_mode"):
        G.synthesize(_ws(G), 0, noise_mode="fixed")


def test_noise_modes() -> None:
    G = make_tiny()
    ws = _ws(G)
    const = G.synthesis_forward(ws, noise_mode="const")
    torch.testing.assert_close(G.synthesis_forward(ws, noise_mode="const"), const, atol=0, rtol=0)
    assert not torch.allclose(G.synthesis_forward(ws, noise_mode="none"), const)
    torch.manual_seed(0)
    r1 = G.synthesis_forward(ws, noise_mode="random")
    torch.manual_seed(1)
    r2 = G.synthesis_forward(ws, noise_mode="random")
    assert not torch.allclose(r1, r2)


def test_forward_is_mapping_then_synthesis() -> None:
    G = make_tiny()
    z = torch.randn(1, 16, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(G(z, psi=0.7), G.synthesis_forward(G.mapping(z, psi=0.7)))


def test_compute_w_avg_is_deterministic() -> None:
    G = make_tiny()
    a = compute_w_avg(G, num_samples=300, seed=0, batch_size=128)
    b = compute_w_avg(G, num_samples=300, seed=0, batch_size=300)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    z = torch.from_numpy(np.random.RandomState(0).randn(300, 16)).float()
    torch.testing.assert_close(a, G.mapping.map_w(z).mean(0), atol=1e-5, rtol=0)


def test_native_round_trip_is_bit_exact(tmp_path: object) -> None:
    from pathlib import Path

    from dragkit.io import load_generator, save_native

    G = make_tiny()
    out = save_native(G, Path(str(tmp_path)) / "tiny", provenance={"licence": "test"})
    H = load_generator(out)
    assert isinstance(H, MobileStyleGANGenerator)
    assert H.config == TINY
    for k, v in G.state_dict().items():
        assert torch.equal(v, H.state_dict()[k]), k
    ws = _ws(G)
    assert torch.equal(G.synthesis_forward(ws), H.synthesis_forward(ws))


# -- IR reader ---------------------------------------------------------------------------------------------------

_TINY_IR = b"""<?xml version="1.0" ?>
<net name="tiny" version="10">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1">
      <data shape="1, 2" element_type="f32"/>
      <output><port id="0" precision="FP32"><dim>1</dim><dim>2</dim></port></output>
    </layer>
    <layer id="1" name="c" type="Const" version="opset1">
      <data element_type="f32" shape="1, 2" offset="0" size="8"/>
      <output><port id="0" precision="FP32"><dim>1</dim><dim>2</dim></port></output>
    </layer>
    <layer id="2" name="add" type="Add" version="opset1">
      <data auto_broadcast="numpy"/>
      <input><port id="0"/><port id="1"/></input>
      <output><port id="2" precision="FP32"><dim>1</dim><dim>2</dim></port></output>
    </layer>
    <layer id="3" name="out" type="Result" version="opset1">
      <input><port id="0"/></input>
    </layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="2" to-port="0"/>
    <edge from-layer="1" from-port="0" to-layer="2" to-port="1"/>
    <edge from-layer="2" from-port="2" to-layer="3" to-port="0"/>
  </edges>
</net>
"""


def test_ir_graph_reads_layers_edges_and_constants() -> None:
    g = IRGraph(_TINY_IR, np.array([1.5, -2.0], dtype=np.float32).tobytes(), source="tiny.xml")
    assert g.op_counts() == {"Parameter": 1, "Const": 1, "Add": 1, "Result": 1}
    assert [layer.name for layer in g.topological()] == ["x", "c", "add", "out"]
    add = g.of_type("Add")[0]
    assert [layer.name for layer in g.inputs(add)] == ["x", "c"]
    assert [layer.name for layer in g.consumers(add)] == ["out"]
    np.testing.assert_array_equal(g.const(1), [[1.5, -2.0]])
    with pytest.raises(CheckpointError, match="not Const"):
        g.const(add)


def test_ir_graph_refuses_truncated_weights_and_entities() -> None:
    g = IRGraph(_TINY_IR, b"\x00" * 4, source="tiny.xml")
    with pytest.raises(CheckpointError, match="truncated"):
        g.const(1)
    evil = b'<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaa">]><net>&a;</net>'
    with pytest.raises(CheckpointError, match="DOCTYPE"):
        IRGraph(evil, b"")
    with pytest.raises(CheckpointError, match="not a valid IR"):
        IRGraph(b"<net", b"")


def test_per_layer_ws_equal_the_tensor_form() -> None:
    G = make_tiny()
    ws = _ws(G, 2)
    a = G.synthesize(ws, 1)
    b = G.synthesize(list(ws.unbind(1)), 1)
    assert a.image is not None and b.image is not None
    assert torch.equal(a.image, b.image) and torch.equal(a.features, b.features)
    torch.testing.assert_close(G.resume(b.state, list(ws.unbind(1))), a.image, atol=1e-6, rtol=0)
    with pytest.raises(InvalidInputError, match="tensors of shape"):
        G.synthesize(list(ws.unbind(1))[:-1], 0)
