"""The math configs (`cpu-smollm2-math`, `gpu-math`) at smoke size on CPU, with the real embedded SmolLM2 (slow)."""

from __future__ import annotations

import json

import pytest

from gaincurate.benchmarks.curriculum import run_bench

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["cpu-smollm2-math", "gpu-math"])
def test_math_config_runs_at_smoke_size_on_cpu(name, tmp_path):
    summary = run_bench(name, tmp_path / name, strategies=["uniform", "gain", "oracle"], smoke=True)
    for output in ("runs.jsonl", "summary.json", "curves.png", "table.md"):
        assert (tmp_path / name / output).is_file()
    lines = [json.loads(line) for line in (tmp_path / name / "runs.jsonl").read_text().splitlines()]
    assert {line["strategy"] for line in lines} == {"uniform", "gain", "oracle"}
    assert set(summary["strategies"]) == {"uniform", "gain", "oracle"}
