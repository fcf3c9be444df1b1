"""Native format (model.safetensors + config.json): bit-exact round trip, provenance, every family's config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dragkit.io import load_generator, load_native, save_native
from dragkit.nn.stylegan2 import StyleGAN2Generator
from tests.conftest import TINY_CONFIG, make_tiny_generator


@pytest.mark.parametrize(
    "changes", [{}, {"architecture": "resnet", "c_dim": 2}, {"conv_clamp": None, "mapping_layer_features": 20}]
)
def test_round_trip_is_bit_exact(tmp_path: Path, changes: dict) -> None:
    G = make_tiny_generator(config=dataclasses.replace(TINY_CONFIG, **changes))
    out = save_native(G, tmp_path / "m", {"source_format": "test", "licence": "CC0"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    G2 = load_native(out)
    assert isinstance(G2, StyleGAN2Generator) and G2.config == G.config
    a, b = G.state_dict(), G2.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    # and a second save writes the very same bytes
    out2 = save_native(G2, tmp_path / "m2", {"source_format": "test", "licence": "CC0"})
    assert (out / "model.safetensors").read_bytes() == (out2 / "model.safetensors").read_bytes()


def test_config_json_contents(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    save_native(tiny_g, tmp_path / "m", {"source_format": "nvidia-pickle", "source_sha256": "ab" * 32, "licence": "x"})
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["format"] == "dragkit-native" and meta["format_version"] == 1 and meta["family"] == "stylegan2"
    assert meta["config"] == tiny_g.config.to_dict()
    prov = meta["provenance"]
    assert prov["source_format"] == "nvidia-pickle" and prov["licence"] == "x" and "dragkit_version" in prov
    tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert set(tensors) == set(tiny_g.state_dict())


def test_safetensors_path_with_sibling_config(tiny_g: StyleGAN2Generator, tmp_path: Path) -> None:
    save_native(tiny_g, tmp_path / "m")
    G = load_generator(tmp_path / "m" / "model.safetensors")
    assert torch.equal(G.mapping.w_avg, tiny_g.mapping.w_avg)


def test_save_native_needs_a_dragkit_generator(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="needs a dragkit generator"):
        save_native(torch.nn.Linear(2, 2), tmp_path / "x")
