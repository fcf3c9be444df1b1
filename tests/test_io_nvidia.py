"""NVIDIA network pickles: both repos' layouts, every pickle protocol, config read from the data."""

from __future__ import annotations

import dataclasses
import io
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from dragkit.errors import CheckpointError
from dragkit.io import load_generator
from dragkit.io.nvidia import parse_nvidia
from dragkit.io.safe_pickle import safe_load
from dragkit.nn.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from tests.ckpt_writers import Persistent, child, nvidia_snapshot, nvidia_snapshot_with
from tests.conftest import TINY_CONFIG, make_tiny_generator


def _parse(blob: bytes) -> Any:
    return parse_nvidia(safe_load(io.BytesIO(blob), "x.pkl"), Path("x.pkl"))


def _assert_same_weights(G: StyleGAN2Generator, state: dict[str, torch.Tensor]) -> None:
    ref = G.state_dict()
    assert ref.keys() == state.keys()
    for k, v in ref.items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("variant", ["ada", "sg3"])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_layouts_and_protocols(tiny_g: StyleGAN2Generator, variant: str, protocol: int) -> None:
    parsed = _parse(nvidia_snapshot_with(tiny_g, variant, protocol))
    assert parsed.family == "stylegan2" and parsed.format == "nvidia-pickle"
    assert parsed.config == tiny_g.config
    assert parsed.details["network"] == "G_ema"  # not the (perturbed) training G
    _assert_same_weights(tiny_g, parsed.state_dict)
    assert "torch_utils.persistence._reconstruct_persistent_obj" in parsed.globals_named
    if protocol == 2:
        assert "_codecs.encode" in parsed.globals_named  # how protocol 2 stores bytes


def test_kwargs_layout_is_recognised(tiny_g: StyleGAN2Generator) -> None:
    assert "nested" in _parse(nvidia_snapshot(tiny_g, "ada")).details["kwargs_layout"]
    assert "flattened" in _parse(nvidia_snapshot(tiny_g, "sg3")).details["kwargs_layout"]


def test_numpy_1x_global_names(tiny_g: StyleGAN2Generator) -> None:
    """Pickles written under numpy 1.x name numpy.core.multiarray (protocol ≤ 3 GLOBAL lines can be renamed)."""
    blob = nvidia_snapshot(tiny_g, "ada").replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    parsed = _parse(blob)
    assert "numpy.core.multiarray.scalar" in parsed.globals_named
    assert "numpy._core.multiarray.scalar" not in parsed.globals_named
    _assert_same_weights(tiny_g, parsed.state_dict)


@pytest.mark.parametrize(
    "changes",
    [
        {"conv_clamp": None},
        {"architecture": "resnet"},
        {"architecture": "orig"},
        {"c_dim": 3, "mapping_embed_features": 8},
        {"mapping_layers": 3, "mapping_layer_features": 24, "num_fp16_res": 2},
        {"channel_base": 128, "channel_max": 12},
    ],
)
def test_config_read_from_data(changes: dict[str, Any]) -> None:
    cfg = dataclasses.replace(TINY_CONFIG, **changes)
    G = make_tiny_generator(config=cfg)
    for variant in ("ada", "sg3"):
        parsed = _parse(nvidia_snapshot(G, variant))
        assert parsed.config == cfg
        _assert_same_weights(G, parsed.state_dict)


def test_layer_attributes_win_over_recorded_kwargs(tiny_g: StyleGAN2Generator) -> None:
    """What the layers used (conv_clamp / architecture attributes, shapes) beats stale constructor kwargs."""

    def patch(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        kw = data["G_ema"].meta["state"]["_init_kwargs"]["synthesis_kwargs"]
        kw.update(conv_clamp=None, channel_base=999, architecture="resnet")
        child(data["G_ema"], "synthesis").meta["state"]["_init_kwargs"].update(kw)

    parsed = _parse(nvidia_snapshot_with(tiny_g, "ada", 4, patch=patch))
    assert parsed.config == tiny_g.config  # clamp 256, skip, channel_base 256 as the layers say


def test_fallback_to_g_and_bare_network(tiny_g: StyleGAN2Generator) -> None:
    def drop_ema(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        del data["G_ema"]

    parsed = _parse(nvidia_snapshot_with(tiny_g, "ada", 4, patch=drop_ema))
    assert parsed.details["network"] == "G"

    def only_net(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        net = data["G_ema"]
        data.clear()
        data["net"] = net

    with pytest.raises(CheckpointError, match=r"no 'G_ema' or 'G' network .*keys: net"):
        _parse(nvidia_snapshot_with(tiny_g, "ada", 4, patch=only_net))


def test_a_broken_stylegan3_tree_is_refused_clearly(tiny_g: StyleGAN2Generator) -> None:
    def sg3(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        syn = child(data["G_ema"], "synthesis")
        empty = {"training": False, "_parameters": {}, "_buffers": {}, "_modules": {}}
        syn.meta["state"]["_modules"] = {
            "input": Persistent(ns.reconstruct, "SynthesisInput", dict(empty)),
            "L0_36_512": Persistent(ns.reconstruct, "SynthesisLayer", dict(empty)),
        }

    with pytest.raises(CheckpointError, match=r"StyleGAN3 synthesis network records no layer_names"):
        _parse(nvidia_snapshot_with(tiny_g, "sg3", 4, patch=sg3))


def test_shape_mismatch_says_expected_and_actual(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    def shrink(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        layer = child(data["G_ema"], "synthesis", "b8", "conv0")
        layer.meta["state"]["_parameters"]["weight"] = torch.zeros([16, 16, 1, 1])

    (tmp_path / "bad.pkl").write_bytes(nvidia_snapshot_with(tiny_g, "ada", 4, patch=shrink))
    with pytest.raises(
        CheckpointError, match=r"synthesis\.b8\.conv0\.weight expected \[16, 16, 3, 3\], got \[16, 16, 1, 1\]"
    ):
        load_generator(tmp_path / "bad.pkl")

    def drop(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        del child(data["G_ema"], "synthesis", "b16", "conv1").meta["state"]["_buffers"]["noise_const"]

    (tmp_path / "missing.pkl").write_bytes(nvidia_snapshot_with(tiny_g, "ada", 4, patch=drop))
    with pytest.raises(CheckpointError, match=r"missing: synthesis\.b16\.conv1\.noise_const"):
        load_generator(tmp_path / "missing.pkl")


def test_persistence_version_is_checked(tiny_g: StyleGAN2Generator) -> None:
    def v5(data: dict[str, Any], ns: types.SimpleNamespace) -> None:
        child(data["G_ema"], "mapping").meta["version"] = 5

    with pytest.raises(
        CheckpointError, match="'MappingNetwork' has type 'class' version 5, expected 'class' version 6"
    ):
        _parse(nvidia_snapshot_with(tiny_g, "ada", 4, patch=v5))


def test_loaded_generator_is_ready(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    (tmp_path / "g.pkl").write_bytes(nvidia_snapshot(tiny_g, "sg3"))
    G = load_generator(tmp_path / "g.pkl")
    assert isinstance(G, StyleGAN2Generator) and not G.training
    assert not any(p.requires_grad for p in G.parameters())
    assert isinstance(G.config, StyleGAN2Config) and G.num_ws == tiny_g.num_ws
