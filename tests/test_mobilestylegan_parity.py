"""The PyTorch port of the default model equals OpenVINO on the original IR (issue 4, acceptance 1).

Needs the ``random-face==2021.7.21.1`` wheel (fetched once by ``dragkit.io.registry.fetch_wheel`` into the dragkit
cache with ``pip download``; skipped with the reason when that fails) and ``openvino`` (a dev dependency). OpenVINO
is compiled with ``INFERENCE_PRECISION_HINT=f32``: its CPU default on bf16-capable CPUs is bf16.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dragkit.errors import CheckpointError
from dragkit.io import registry
from dragkit.io.openvino_ir import IRGraph, mobilestylegan_from_ir
from dragkit.nn.mobilestylegan import MobileStyleGANConfig, MobileStyleGANGenerator
from dragkit.nn.seeds import z_from_seed

MAPPING_XML = "random_face/data/MappingNetwork.xml"
SYNTHESIS_XML = "random_face/data/SynthesisNetwork.xml"
SEEDS = [0, 1, 2, 3, 4]
TOL = 1e-3


@pytest.fixture(scope="module")
def wheel() -> Path:
    try:
        return registry.fetch_wheel(progress=False)
    except registry.DownloadError as exc:
        pytest.skip(f"random-face wheel unavailable (needs PyPI access once): {exc}")


@pytest.fixture(scope="module")
def converted(wheel: Path) -> tuple[MobileStyleGANConfig, dict[str, torch.Tensor]]:
    return mobilestylegan_from_ir(IRGraph.from_zip(wheel, MAPPING_XML), IRGraph.from_zip(wheel, SYNTHESIS_XML))


def _generator(converted: tuple[MobileStyleGANConfig, dict[str, torch.Tensor]], impl: str) -> MobileStyleGANGenerator:
    cfg, sd = converted
    G = MobileStyleGANGenerator(cfg, impl=impl)
    G.load_state_dict(sd, strict=True)
    return G.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def openvino_nets(wheel: Path) -> tuple[object, object]:
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    nets = []
    with zipfile.ZipFile(wheel) as zf:
        for xml in (MAPPING_XML, SYNTHESIS_XML):
            weights = np.frombuffer(zf.read(xml[:-4] + ".bin"), dtype=np.uint8)
            model = core.read_model(model=zf.read(xml), weights=ov.Tensor(weights))
            nets.append(core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}))
    return nets[0], nets[1]


def test_converted_config_is_the_released_model(
    converted: tuple[MobileStyleGANConfig, dict[str, torch.Tensor]],
) -> None:
    cfg, sd = converted
    assert cfg == MobileStyleGANConfig()
    assert len(sd) == len(MobileStyleGANGenerator(cfg).state_dict())


def test_mapping_and_synthesis_match_openvino(
    converted: tuple[MobileStyleGANConfig, dict[str, torch.Tensor]], openvino_nets: tuple[object, object]
) -> None:
    G = _generator(converted, "fast")
    mapping_ov, synthesis_ov = openvino_nets
    for seed in SEEDS:
        z = z_from_seed(seed, 512)
        w_ov = mapping_ov(z.numpy())[0]  # type: ignore[operator]
        img_ov = synthesis_ov(w_ov)[0]  # type: ignore[operator]
        with torch.no_grad():
            ws = G.mapping(z)
            img = G.synthesis_forward(torch.from_numpy(w_ov).unsqueeze(1).repeat(1, G.num_ws, 1))
        map_diff = float(np.abs(ws[0, 0].numpy() - w_ov[0]).max())
        img_diff = float(np.abs(img.numpy() - img_ov).max())
        assert map_diff <= TOL, f"seed {seed}: mapping max |Δ| {map_diff}"
        assert img_diff <= TOL, f"seed {seed}: synthesis max |Δ| {img_diff}"


def test_reference_impl_equals_fast_on_the_real_model(
    converted: tuple[MobileStyleGANConfig, dict[str, torch.Tensor]],
) -> None:
    fast, ref = _generator(converted, "fast"), _generator(converted, "reference")
    with torch.no_grad():
        ws = fast.mapping(z_from_seed(0, 512), psi=0.7)
        a = fast.synthesize(ws, 5)
        b = ref.synthesize(ws, 5)
    assert a.image is not None and b.image is not None
    assert float((a.features - b.features).abs().max()) < 1e-4
    assert float((a.image - b.image).abs().max()) < 1e-4


def test_truncated_ir_weights_are_refused(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        xml = zf.read(SYNTHESIS_XML)
        weights = zf.read(SYNTHESIS_XML[:-4] + ".bin")
    mapping = IRGraph.from_zip(wheel, MAPPING_XML)
    truncated = IRGraph(xml, weights[: len(weights) // 2], source="SynthesisNetwork.xml")
    with pytest.raises(CheckpointError, match=r"SynthesisNetwork\.xml"):
        mobilestylegan_from_ir(mapping, truncated)
    with pytest.raises(CheckpointError, match="MobileStyleGAN"):
        mobilestylegan_from_ir(mapping, mapping)  # a mapping graph is not a synthesis graph
