"""A fixed, seeded slice of the fuzz run (``benchmarks/fuzz.py``): every loader and the studio's message schema
get mutated inputs, and each must end in success or a one-line DragkitError — no other exception, no hang, nothing
executed. The long run (100,000+ inputs) is a benchmark; this keeps the property in the test suite."""

from __future__ import annotations

import pytest

from tests.conftest import load_benchmark

fuzz = load_benchmark("fuzz")


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_mutated_inputs_are_loaded_or_refused_in_one_line(target: str) -> None:
    report = fuzz.fuzz(target, inputs=60, seed=0, limit_s=20.0)
    assert report.inputs == 60
    assert (report.failures, report.hangs, report.executions) == (0, 0, 0), report.examples
    assert report.refused > 0  # the mutations do reach the validation
