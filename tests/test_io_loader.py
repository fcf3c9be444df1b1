"""load_generator / inspect_checkpoint: format sniffed from bytes, identical images across formats, clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dragkit.errors import CheckpointError, ModelNotFoundError
from dragkit.io import inspect_checkpoint, load_generator, save_native
from dragkit.io.families import FAMILIES, get_family
from dragkit.io.loader import sniff_format
from dragkit.nn.seeds import z_from_seed
from dragkit.nn.stylegan2 import StyleGAN2Generator
from tests.ckpt_writers import write_nvidia_pickle, write_rosinality
from tests.conftest import TINY_CONFIG, make_tiny_generator

CONFIG = dataclasses.replace(TINY_CONFIG, conv_clamp=None)  # expressible in every format


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same weights written as NVIDIA (ADA, stylegan3 repo), rosinality (zip, legacy) and native."""
    d = tmp_path_factory.mktemp("ckpts")
    G = make_tiny_generator(seed=5, config=CONFIG)
    out = {
        # Names deliberately unrelated to (or lying about) the format: sniffing uses bytes only.
        "ada": write_nvidia_pickle(G, d / "ada.pt", variant="ada"),
        "sg3": write_nvidia_pickle(G, d / "sg3.safetensors", variant="sg3"),
        "ros": write_rosinality(G, d / "ros.pkl"),
        "ros_legacy": write_rosinality(G, d / "ros_legacy", legacy=True),
        "native": save_native(G, d / "native", {"source_format": "test"}),
    }
    return out


def _images(G: StyleGAN2Generator) -> torch.Tensor:
    z = torch.cat([z_from_seed(s, G.z_dim) for s in (0, 1, 2, 3)])
    with torch.no_grad():
        ws = G.mapping(z, psi=0.7)
        return G.synthesize(ws, feature_block=len(G.feature_levels()) - 1).image


def test_identical_images_from_every_format(files: dict[str, Path]) -> None:
    """Acceptance: NVIDIA layout, rosinality layout and native give identical (bit-exact) images."""
    ref = _images(make_tiny_generator(seed=5, config=CONFIG))
    for name, path in files.items():
        G = load_generator(path)
        assert torch.equal(_images(G), ref), name


def test_sniffing_ignores_file_names(files: dict[str, Path]) -> None:
    assert sniff_format(files["ada"]) == "pickle"
    assert sniff_format(files["sg3"]) == "pickle"
    assert sniff_format(files["ros"]) == "torch-zip"
    assert sniff_format(files["ros_legacy"]) == "torch-legacy"
    assert sniff_format(files["native"]) == "native"
    assert sniff_format(files["native"] / "model.safetensors") == "native"


def test_inspect(files: dict[str, Path]) -> None:
    expected = {"ada": "nvidia-pickle", "sg3": "nvidia-pickle", "ros": "rosinality", "native": "native"}
    n_params = sum(p.numel() for p in make_tiny_generator(config=CONFIG).parameters())
    for name, fmt in expected.items():
        info = inspect_checkpoint(files[name])
        assert (info.format, info.family, info.resolution, info.num_ws) == (fmt, "stylegan2", (32, 32), 8)
        assert (info.z_dim, info.w_dim, info.c_dim, info.parameters) == (16, 16, 0, n_params)
        assert len(info.sha256) == 64
        assert bool(info.globals_named) == (fmt == "nvidia-pickle")
        json.dumps(info.to_dict())
    info = inspect_checkpoint(files["ada"])
    assert "torch_utils.persistence._reconstruct_persistent_obj" in info.globals_named
    assert info.details["network"] == "G_ema"


def _corrupt_variants(files: dict[str, Path], d: Path) -> dict[str, tuple[Path, str]]:
    """name → (path, regex the one-line error must match)."""
    cases: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, pattern: str) -> None:
        p = d / name
        p.write_bytes(data)
        cases[name] = (p, pattern)

    pkl = files["ada"].read_bytes()
    zipped = files["ros"].read_bytes()
    legacy = files["ros_legacy"].read_bytes()
    put("empty.pkl", b"", "empty file")
    put("trunc.pkl", pkl[: len(pkl) // 2], "truncated or corrupt pickle|corrupt")
    put("trunc_head.pkl", pkl[:40], "truncated or corrupt pickle")
    put("garbage.pkl", b"\x80\x04" + bytes(range(256)) * 4, "corrupt pickle|truncated")
    put("trunc.pt", zipped[: len(zipped) // 2], "truncated or corrupt torch.save file")
    put("trunc_legacy.pt", legacy[: len(legacy) // 3], "truncated or corrupt torch.save file|corrupt")
    put("text.pkl", b"hello, I am not a checkpoint\n", "unknown checkpoint format")
    put("png.pt", b"\x89PNG\r\n\x1a\n" + b"\0" * 32, "unknown checkpoint format")
    put("proto1.pkl", b"\x80\x01K\x01.", "pickle protocol 1 is not supported")
    put("number.pkl", b"\x80\x04K\x07.", "pickle holds an object of type int, not NVIDIA networks")
    cases["missing"] = (d / "does-not-exist.pkl", "no such file")
    return cases


def test_bad_files_give_one_line_errors(files: dict[str, Path], tmp_path: Path) -> None:
    for name, (path, pattern) in _corrupt_variants(files, tmp_path).items():
        with pytest.raises(CheckpointError, match=pattern) as exc:
            load_generator(path)
        message = str(exc.value)
        assert "\n" not in message and str(path.name) in message, (name, message)


def test_native_errors(files: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "m"
    shutil.copytree(files["native"], bad)
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or corrupt safetensors"):
        load_generator(bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "family": "biggan"}))
    with pytest.raises(CheckpointError, match="unknown generator family 'biggan'"):
        load_generator(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "config": {**cfg["config"], "depth": 3}}))
    with pytest.raises(CheckpointError, match=r"unknown StyleGAN2 config keys: \['depth'\]"):
        load_generator(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_generator(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"directory without config\.json"):
        load_generator(tmp_path / "empty")
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(files["native"] / "model.safetensors", lone / "weights.bin")
    with pytest.raises(CheckpointError, match=r"safetensors file without a config\.json"):
        load_generator(lone / "weights.bin")


def test_unknown_model_name() -> None:
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        load_generator("no-such-model")


def test_family_table() -> None:
    from dragkit.nn.stylegan2 import StyleGAN2Config

    assert get_family("stylegan2") == (StyleGAN2Config, StyleGAN2Generator)
    assert "mobilestylegan" in FAMILIES
    with pytest.raises(CheckpointError, match="unknown generator family"):
        get_family("nope")


def test_device_argument(files: dict[str, Path]) -> None:
    G = load_generator(files["native"], device=torch.device("cpu"))
    assert next(G.parameters()).device.type == "cpu"
