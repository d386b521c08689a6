"""The math configs (`cpu-smollm2-math`, `gpu-math`) at smoke size on CPU, with the real embedded SmolLM2 (slow)."""

from __future__ import annotations

import json

import pytest

from gaincurate.lab.benchmarks.curriculum import run_bench

pytestmark = pytest.mark.slow


# At smoke size the two configs differ only in their own values (learning rate, dataset and device overridden), which
# any arm reads, so each runs one arm on the real model: the CPU config the oracle (pass rates measured with math
# rollouts), the GPU config gain (the curriculum and its re-scoring with the live model, the arm that reads the most
# of the config). Uniform is gain's training and evaluation without the curriculum; every arm's code path on every
# strategy is in tests/benchmarks/test_curriculum_bench.py. Each arm on this model costs 25-30 s of CPU (#27).
@pytest.mark.parametrize(
    ("name", "arms"),
    [pytest.param("cpu-smollm2-math", ("oracle",), id="cpu-smollm2-math"),
     pytest.param("gpu-math", ("gain",), id="gpu-math")],
)  # fmt: skip
def test_math_config_runs_at_smoke_size_on_cpu(name, arms, tmp_path):
    summary = run_bench(name, tmp_path / name, strategies=list(arms), smoke=True)
    for output in ("runs.jsonl", "summary.json", "curves.png", "table.md"):
        assert (tmp_path / name / output).is_file()
    lines = [json.loads(line) for line in (tmp_path / name / "runs.jsonl").read_text().splitlines()]
    assert {line["strategy"] for line in lines} == set(arms)
    assert set(summary["strategies"]) == set(arms)
