"""A smoke test of benchmarks/invert.py on the tiny generator: rows, the sheet and the per-photo outputs that
dragkit eval landmarks --inverted reads (quality numbers are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from dragkit.io import save_native
from dragkit.nn.stylegan2 import StyleGAN2Config
from tests.conftest import TINY_CONFIG, make_tiny_generator

from .conftest import load_benchmark


def test_invert_benchmark_writes_rows_sheet_and_outputs(tmp_path: Path) -> None:
    bench = load_benchmark("invert")
    assert bench.parse_seeds("0-6:2,9") == [0, 2, 4, 6, 9] and bench.parse_seeds("none") == []
    config = StyleGAN2Config.from_dict({**TINY_CONFIG.to_dict(), "img_resolution": 64})  # photos are ≥ 64 px
    ckpt = save_native(make_tiny_generator(0, config), tmp_path / "tiny")
    args = ["--network", str(ckpt), "--seeds", "0-2:2", "--no-align", "--out", str(tmp_path / "out")]
    assert bench.main([*args, "--steps-w", "2", "--steps-wplus", "2", "--steps-pti", "1"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "invert.jsonl").read_text().splitlines()]
    assert [r["photo"] for r in rows] == ["seed0000", "seed0002"]
    assert all(set(r["quality"]) == {"w", "w+", "pti"} and r["loss"] == "lap1+msssim" for r in rows)
    assert (tmp_path / "out" / "sheet.png").is_file()
    assert (tmp_path / "out" / "seed0002" / "generator" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "seed0002" / "latent.pt").is_file()
