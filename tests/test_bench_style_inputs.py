"""The pure summary of benchmarks/style_inputs.py (which W+ rows move landmarks); the probe itself is a benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_summarise_ranks_rows_by_landmark_motion_per_appearance_change() -> None:
    spec = importlib.util.spec_from_file_location("bench_style_inputs", ROOT / "benchmarks" / "style_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_style_inputs"] = module
    spec.loader.exec_module(module)
    samples = [
        (0, 3.0, 10.0),  # moves landmarks a lot, changes a lot
        (0, 5.0, 10.0),
        (1, 2.0, 2.0),  # moves them less, but changes far less
        (2, 1.0, 4.0),  # the floor: texture only
    ]
    table = module.summarise(samples, ["b4", "b8", "b512"])
    assert [t["row"] for t in table] == [0, 1, 2] and [t["level"] for t in table] == ["b4", "b8", "b512"]
    assert (table[0]["D"], table[0]["A"]) == (4.0, 10.0)
    assert [t["shape_per_change"] for t in table] == [pytest.approx(0.3), pytest.approx(0.5), 0.0]
    assert [t["rank"] for t in table] == [2, 1, 3]
