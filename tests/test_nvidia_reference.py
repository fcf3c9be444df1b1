"""Images from pickles written by reference code (NVIDIA's stylegan2-ada-pytorch, stylegan3 and legacy.py TF-era
conversion; StyleGAN-Human) equal the reference code's images.

NVIDIA's code is under a non-commercial licence and each of its pickles embeds that code (``module_src``), so the
pickles are not in this repository. To run this check, build them with NVIDIA's code (networks pickled with its
``persistence`` module as the training loop does, plus ``<name>_ref.npz`` = z, c, ws and the float32 image
``G_ema(z, c, truncation_psi, noise_mode='const', force_fp32=True)``) and point ``DRAGKIT_NVREF_DIR`` at the folder:

    DRAGKIT_NVREF_DIR=/path/to/pickles pytest -m real_checkpoint tests/test_nvidia_reference.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dragkit.io import load_generator

REF_DIR = os.environ.get("DRAGKIT_NVREF_DIR")
CASES = sorted(Path(REF_DIR).glob("*_ref.json")) if REF_DIR else []

pytestmark = [
    pytest.mark.real_checkpoint,
    pytest.mark.skipif(not CASES, reason="set DRAGKIT_NVREF_DIR to a folder of NVIDIA-written pickles"),
]


@pytest.mark.parametrize("meta_path", CASES, ids=[p.name.removesuffix("_ref.json") for p in CASES])
def test_nvidia_written_pickle_matches_nvidia_images(meta_path: Path) -> None:
    meta = json.loads(meta_path.read_text())
    ref = np.load(meta_path.with_name(meta_path.name.replace("_ref.json", "_ref.npz")))
    G = load_generator(meta_path.with_name(meta["pickle"]))
    # The loader must not have imported NVIDIA's packages (nothing from the file is executed).
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if "c" in ref and ref["c"].size else None
    ws = G.mapping(z, c, psi=float(ref["psi"]))
    torch.testing.assert_close(ws, torch.from_numpy(ref["ws"]), rtol=0, atol=1e-5)
    img = G.synthesize(ws, feature_block=0).image
    assert img is not None
    expected = torch.from_numpy(ref["img"])
    # float32 rounding grows with magnitude (one case drives the clamp with outputs of several hundred).
    atol = max(1e-4, 2e-6 * float(expected.abs().max()))
    torch.testing.assert_close(img, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("meta_path", CASES, ids=[p.name.removesuffix("_ref.json") for p in CASES])
def test_dragkit_generate_matches_reference_pixels(meta_path: Path, tmp_path: Path) -> None:
    """``dragkit generate`` (a separate process, NVIDIA seeds, ψ 0.7, const noise) gives the reference code's
    images within 2/255 per channel."""
    import subprocess

    from PIL import Image

    from dragkit.nn.images import to_uint8

    meta = json.loads(meta_path.read_text())
    ref = np.load(meta_path.with_name(meta_path.name.replace("_ref.json", "_ref.npz")))
    expected = to_uint8(torch.from_numpy(ref["img"]))
    c = ref["c"] if "c" in ref else np.zeros((len(expected), 0))
    for i, seed in enumerate((0, 1)):
        cmd = [sys.executable, "-m", "dragkit", "generate", "--network", str(meta_path.with_name(meta["pickle"]))]
        cmd += ["--seeds", str(seed), "--trunc", str(float(ref["psi"])), "--outdir", str(tmp_path / str(i))]
        if c.shape[1]:
            cmd += ["--class-idx", str(int(np.argmax(c[i])))]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        got = np.asarray(Image.open(tmp_path / str(i) / f"seed{seed:04d}.png").convert("RGB"))
        diff = np.abs(got.astype(int) - expected[i].astype(int)).max()
        assert diff <= 2, f"seed {seed}: max difference {diff}/255"


@pytest.mark.parametrize("meta_path", CASES, ids=[p.name.removesuffix("_ref.json") for p in CASES])
def test_stylegan3_filters_are_designed_as_nvidia_does(meta_path: Path) -> None:
    """A StyleGAN3 built fresh from the parsed config designs the low-pass filters the pickle stores."""
    from dragkit.io.families import build_generator
    from dragkit.io.loader import parse_checkpoint

    meta = json.loads(meta_path.read_text())
    parsed = parse_checkpoint(meta_path.with_name(meta["pickle"]))
    if parsed.family != "stylegan3":
        pytest.skip("not a StyleGAN3 pickle")
    fresh = build_generator("stylegan3", parsed.config).state_dict()
    filters = [k for k in parsed.state_dict if k.endswith("_filter")]
    assert filters
    for key in filters:
        torch.testing.assert_close(fresh[key], parsed.state_dict[key], rtol=0, atol=2e-7, msg=key)
