"""Images and seeds: NVIDIA's uint8 rounding and seed convention, PNG I/O, masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dragkit.errors import InvalidInputError
from dragkit.io.images import load_image, load_mask, save_png, to_uint8
from dragkit.nn.seeds import z_from_seed


def test_to_uint8_known_values() -> None:
    img = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 0.999, 1.0, 2.0]).reshape(1, 1, 1, 8).repeat(1, 3, 1, 1)
    out = to_uint8(img)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 8, 3)
    # (x·127.5 + 128) clamped to [0, 255], truncated: -1 → 0.5 → 0; 0 → 128; 0.5 → 191.75 → 191; 1 → 255.5 → 255
    assert out[0, 0, :, 0].tolist() == [0, 0, 64, 128, 191, 255, 255, 255]
    assert to_uint8(img[0]).shape == (1, 8, 3)


def test_to_uint8_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        to_uint8(torch.zeros(3, 4, dtype=torch.float32))
    with pytest.raises(InvalidInputError):
        to_uint8(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_png_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    save_png(arr, tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), arr)
    grey = arr[:, :, 0]
    save_png(grey, tmp_path / "g.png")
    assert np.array_equal(load_image(tmp_path / "g.png"), np.repeat(grey[:, :, None], 3, axis=2))
    with pytest.raises(InvalidInputError):
        save_png(arr.astype(np.float32), tmp_path / "b.png")


def test_load_image_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InvalidInputError, match="not a readable image"):
        load_image(tmp_path / "bad.png")


def test_load_mask(tmp_path: Path) -> None:
    m = np.zeros((4, 6), dtype=np.uint8)
    m[1:3, 2:5] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (4, 6))
    assert mask.dtype == np.bool_ and mask.shape == (4, 6) and mask.sum() == 6 and mask[1, 2]
    with pytest.raises(InvalidInputError, match="mask is 4×6 \\(H×W\\), expected 8×12"):
        load_mask(tmp_path / "m.png", (8, 12))
    big = load_mask(tmp_path / "m.png", (8, 12), resize=True)
    assert big.shape == (8, 12) and big.sum() == 24
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 3] = m  # painted strokes on a transparent layer
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_mask(tmp_path / "a.png", (4, 6)), mask)


def test_z_from_seed_matches_numpy() -> None:
    z = z_from_seed(42, 512)
    assert z.shape == (1, 512) and z.dtype == torch.float32
    np.testing.assert_array_equal(z.numpy(), np.random.RandomState(42).randn(1, 512).astype(np.float32))
    assert torch.equal(z_from_seed(2**32 - 1, 4), z_from_seed(2**32 - 1, 4))
    for bad in (-1, 2**32, 1.5, True):
        with pytest.raises(InvalidInputError):
            z_from_seed(bad, 4)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        z_from_seed(0, 0)
