"""benchmarks/edit_quality.py: the designed drags and the damage measures (the runs themselves need dlib and the
default model; see the benchmark)."""

from __future__ import annotations

import math

import numpy as np

from tests.conftest import load_benchmark

eq = load_benchmark("edit_quality")


def test_the_designed_drags_cover_what_the_protocol_asks() -> None:
    cases = eq.CASES
    assert len(cases) >= 12 and len({c.name for c in cases}) == len(cases)
    assert all(1 <= len(c.moves) <= 3 for c in cases)
    assert all(40 <= math.hypot(dx, dy) <= 80 for c in cases for _, dx, dy in c.moves)
    assert {c.mask is not None for c in cases} == {True, False}
    names = " ".join(c.name for c in cases)
    assert all(word in names for word in ("turn", "chin", "mouth", "jaw"))
    assert all(0 <= i < 68 for c in cases for i, _, _ in c.moves)


def test_sharpness_and_masks() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert eq.sharpness(img, (8, 8, 40, 40)) > 100 * max(eq.sharpness(flat, (8, 8, 40, 40)), 1e-9)
    m = eq.box_mask(np.array([[10.0, 20.0], [30.0, 25.0]]), 5, (64, 64))
    assert m.sum() == (30 + 5 - (10 - 5)) * (25 + 5 - (20 - 5)) and m[20, 10] and not m[0, 0]


def test_summary_counts_wrecks_by_each_measure() -> None:
    base = {"identity": 0.2, "sharpness": 1.0, "moved": 0.5, "arrived": True, "seconds": 1.0, "face_found": True}
    records = [
        {**base, "wrecked": False},
        {**base, "identity": 0.7, "wrecked": True},
        {**base, "sharpness": 0.5, "wrecked": True, "stop_reason": "degraded"},
        {**base, "face_found": False, "identity": None, "moved": 0.0, "wrecked": True},
    ]
    s = eq.summarise(records)
    assert (s["cases"], s["wrecked"], s["faces_lost"], s["identity_over_limit"]) == (4, 3, 1, 1)
    assert s["sharpness_under_limit"] == 1 and s["stopped_by_guard"] == 1 and s["identity_max"] == 0.7
