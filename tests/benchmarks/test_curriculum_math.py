"""The math configs (`cpu-smollm2-math`, `gpu-math`) at smoke size on CPU, with the real embedded SmolLM2 (slow)."""

from __future__ import annotations

import json

import pytest

from gaincurate.benchmarks.curriculum import run_bench

pytestmark = pytest.mark.slow


# Every arm runs on the math task with the CPU config. The GPU config's smoke run differs from it only in the
# config's own values (learning rate, dataset and device overridden), which any arm reads; it runs gain, the arm
# that reads the most of them (the curriculum and its re-scoring with the live model), and skips the other two
# arms' minute each (#27). Every arm's code path on every strategy is in tests/benchmarks/test_curriculum_bench.py.
@pytest.mark.parametrize(
    ("name", "arms"),
    [pytest.param("cpu-smollm2-math", ("uniform", "gain", "oracle"), id="cpu-smollm2-math"),
     pytest.param("gpu-math", ("gain",), id="gpu-math")],
)  # fmt: skip
def test_math_config_runs_at_smoke_size_on_cpu(name, arms, tmp_path):
    summary = run_bench(name, tmp_path / name, strategies=list(arms), smoke=True)
    for output in ("runs.jsonl", "summary.json", "curves.png", "table.md"):
        assert (tmp_path / name / output).is_file()
    lines = [json.loads(line) for line in (tmp_path / name / "runs.jsonl").read_text().splitlines()]
    assert {line["strategy"] for line in lines} == set(arms)
    assert set(summary["strategies"]) == set(arms)
