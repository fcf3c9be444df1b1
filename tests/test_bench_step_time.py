"""A smoke test of benchmarks/step_time.py: its loop drives every variant and tracker (timings are not asserted)."""

from __future__ import annotations

import torch

from dragkit.engine.trackers import TRACKERS
from dragkit.nn.stylegan2 import StyleGAN2Generator

from .conftest import load_benchmark


def test_step_time_benchmark_runs_every_variant_on_a_tiny_generator(tiny_g: StyleGAN2Generator) -> None:
    step_time = load_benchmark("step_time")
    result = step_time.measure(tiny_g, steps=1, warmup=0, device=torch.device("cpu"), seed=0, trackers=tuple(TRACKERS))
    expected = {"reference", "fast", "fast_with_frame", *(f"fast_tracker_{t}" for t in TRACKERS)}
    assert set(result["ms_per_step"]) == expected
    assert result["same_handles_after_run"]


def test_step_time_times_both_filtered_lrelu_impls_on_stylegan3() -> None:
    from tests.test_nn_stylegan3 import T_CONFIG, make_sg3

    step_time = load_benchmark("step_time")
    result = step_time.measure(make_sg3(T_CONFIG), steps=1, warmup=0, device=torch.device("cpu"), seed=0)
    assert "fast_filtered_lrelu_ref" in result["ms_per_step"] and "ratio_filtered_lrelu_ref_over_fast" in result
