"""The pure summary of benchmarks/style_inputs.py (which W+ rows move landmarks); the probe itself is a benchmark."""

from __future__ import annotations

import pytest

from .conftest import load_benchmark


def test_summarise_ranks_rows_by_landmark_motion_per_appearance_change() -> None:
    module = load_benchmark("style_inputs")
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
