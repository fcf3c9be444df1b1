"""TF-era StyleGAN2 pickles ((G, D, Gs) tuples of dnnlib.tflib Network states), written with stand-in classes of
the same module path and state as NVIDIA's TF code wrote (the way NVIDIA's legacy.py reads them)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dragkit.errors import CheckpointError, UnsafeCheckpointError
from dragkit.io import load_generator
from dragkit.io.loader import inspect_checkpoint
from dragkit.nn.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from tests.ckpt_writers import tf_network_class, tf_snapshot

from .conftest import TINY_CONFIG, make_tiny_generator


def _g(**changes: Any) -> StyleGAN2Generator:
    cfg = StyleGAN2Config.from_dict({**TINY_CONFIG.to_dict(), "conv_clamp": None, **changes})
    return make_tiny_generator(0, cfg)


@pytest.mark.parametrize(
    "changes",
    [{}, {"architecture": "resnet"}, {"architecture": "orig"}, {"c_dim": 4}],
    ids=["config-f-skip", "resnet", "orig", "conditional"],
)
def test_tf_pickle_loads_to_the_same_images(changes: dict[str, Any], tmp_path: Path) -> None:
    G = _g(**changes)
    (tmp_path / "tf.pkl").write_bytes(tf_snapshot(G))
    G2 = load_generator(tmp_path / "tf.pkl")
    assert isinstance(G2, StyleGAN2Generator) and G2.config == G.config
    z = torch.randn(2, 16)
    c = torch.eye(4)[:2] if G.c_dim else None
    torch.testing.assert_close(G2(z, c, psi=0.7), G(z, c, psi=0.7), rtol=0, atol=1e-6)
    info = inspect_checkpoint(tmp_path / "tf.pkl")
    assert info.format == "tf-pickle" and info.family == "stylegan2"
    assert info.config["architecture"] == G.config.architecture
    assert info.details["network"] == "Gs" and "dnnlib.tflib.network.Network" in info.globals_named


def test_build_module_src_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = tf_snapshot(_g(), build_module_src=f"open({str(marker)!r}, 'w').write('x')\n")
    (tmp_path / "tf.pkl").write_bytes(blob)
    load_generator(tmp_path / "tf.pkl")
    assert not marker.exists()


def test_a_tf_pickle_naming_os_system_is_refused(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return (os.system, ("true",))

    def evil(state: dict[str, Any]) -> None:
        state["static_kwargs"]["truncation_psi"] = Boom()

    (tmp_path / "tf.pkl").write_bytes(tf_snapshot(_g(), patch=evil))
    with pytest.raises(UnsafeCheckpointError, match=r"refused global '(posix|os)\.system'"):
        load_generator(tmp_path / "tf.pkl")


def _refused(tmp_path: Path, patch: Any, match: str) -> None:
    (tmp_path / "tf.pkl").write_bytes(tf_snapshot(_g(), patch=patch))
    with pytest.raises(CheckpointError, match=match):
        load_generator(tmp_path / "tf.pkl")


def _set_var(state: dict[str, Any], component: str, name: str, value: Any) -> None:
    comp = state["components"][component].state if component else state
    comp["variables"] = [(n, value if n == name else v) for n, v in comp["variables"]]


def test_lying_shapes_and_layouts_are_refused(tmp_path: Path) -> None:
    _refused(
        tmp_path,
        lambda s: _set_var(s, "synthesis", "8x8/Conv1/weight", np.zeros([1, 1, 16, 16], np.float32)),
        r"declares synthesis\.b8\.conv1\.weight \[16, 16, 3, 3\], the file stores \[16, 16, 1, 1\]",
    )
    _refused(
        tmp_path,
        lambda s: _set_var(s, "mapping", "Dense0/weight", np.zeros([16], np.float32)),
        "a TF dense weight has shape",
    )
    _refused(tmp_path, lambda s: s["static_kwargs"].update(fmap_max=8), r"declares synthesis\.b4\.const \[8, 4, 4\]")
    _refused(tmp_path, lambda s: s["static_kwargs"].update(randomize_everything=True), "randomize_everything")
    _refused(tmp_path, lambda s: s.update(version=3), "too old")

    def progressive(s: dict[str, Any]) -> None:
        syn = s["components"]["synthesis"].state
        syn["variables"].append(("ToRGB_lod0/weight", np.zeros([1, 1, 16, 3], np.float32)))

    _refused(tmp_path, progressive, "progressive-growing")

    def extra(s: dict[str, Any]) -> None:
        s["components"]["synthesis"].state["variables"].append(("64x64/Conv1/weight", np.zeros([1], np.float32)))

    _refused(tmp_path, extra, "does not use: synthesis/64x64/Conv1/weight")

    def strings(s: dict[str, Any]) -> None:
        _set_var(s, "", "dlatent_avg", np.array(["a"] * 16))

    _refused(tmp_path, strings, "not a numeric array")


def test_a_tuple_that_is_not_g_d_gs_is_refused(tmp_path: Path) -> None:
    with tf_network_class() as Network:
        blob = pickle.dumps((Network({"version": 4}),), protocol=3)
    (tmp_path / "tf.pkl").write_bytes(blob)
    with pytest.raises(CheckpointError, match=r"three networks \(G, D, Gs\)"):
        load_generator(tmp_path / "tf.pkl")
