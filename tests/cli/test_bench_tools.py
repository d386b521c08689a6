"""`gaincurate bench scoring|kernel|gpu|replay|profile`: the benches behind docs/benchmarks.md, through the CLI."""

from __future__ import annotations

import functools
import json

import pytest
from helpers import PROBLEMS, run_cli, write_jsonl


def test_bench_kernel_checks_every_backend_then_times_and_writes_the_same_json(tmp_path, gaincurate):
    """`--json` implies `--quiet`, as for the other benches: the result on stdout and nothing on stderr."""
    args = ["bench", "kernel", "--quick", "--device", "cpu", "--out", tmp_path / "kernel.json"]

    result = gaincurate(*args, "--json")

    assert result.returncode == 0 and result.stderr == "", result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads((tmp_path / "kernel.json").read_text())
    assert report["correctness"] and all(check["ok"] for check in report["correctness"])
    assert {check["backend"] for check in report["correctness"]} == set(report["backends"]) >= {"torch"}
    assert report["timings"] and all(row["results"]["torch"]["median_ms"] > 0 for row in report["timings"])
    quiet = gaincurate(*args, "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and "checks passed" in quiet.stdout, quiet.stderr


def test_bench_scoring_agrees_with_the_naive_scorer(tiny_llama, tmp_path, monkeypatch, capsys):
    from gaincurate.lab.benchmarks import scoring

    # The rate probes at a test's size: a 1536-wide matmul and 2-second races would cost more than the scoring.
    monkeypatch.setattr(scoring, "matmul_rate", functools.partial(scoring.matmul_rate, size=64, repeats=2))
    monkeypatch.setattr(scoring, "model_rate", functools.partial(scoring.model_rate, seconds=0.1))
    data = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
    args = ["bench", "scoring", "--data", str(data), "--rows", "4", "--model", str(tiny_llama), "--dtype", "float32"]
    args += ["--batch-tokens", "512", "--threads", "1", "--batch-sweep", "256", "--json"]

    code, out, _ = run_cli(args, monkeypatch, capsys)

    assert code == 0
    result = json.loads(out)
    ours = result["gaincurate"]
    assert result["rows"] == 4 and ours["dtype"] == "float32" and len(ours["scores"]) == 4
    assert ours["max_abs_diff_vs_naive"] < 1e-4 and ours["spearman_vs_naive"] == pytest.approx(1.0)
    assert result["speedup"] > 0 and ours["floor_seconds"] > 0
    assert set(result["batch_sweep"]) == {"256"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["bench", "scoring", "--data", "x.jsonl", "--batch-sweep", "256,big"], ["--batch-sweep 256,big", "256,512"]),
        (["bench", "kernel", "--device", "tpu"], ["--device", "tpu"]),
        (["bench", "curriculum", "--demo", "--report", "docs/results/cpu-arith"], ["--demo", "--report", "one of"]),
        (["bench", "curriculum", "--report", "docs/results/cpu-arith", "--plot", "x.txt"], ["--plot x.txt", ".png"]),
    ],
    ids=["bad-sweep", "bad-device", "demo-with-report", "plot-not-png"],
)
def test_bench_tool_mistakes_are_one_line(args, words, gaincurate, error_line):
    result = gaincurate(*args)

    line = error_line(result)
    assert result.returncode in (1, 2)
    for word in words:
        assert word in line


@pytest.mark.parametrize("bench", ["scoring", "profile"])
def test_rows_the_bench_cannot_score_are_one_line_with_the_fix_it_can_take(
    bench, tiny_llama, gaincurate, error_line, tmp_path
):
    """The bench has no --prompt-column to offer, and an --offset past the last row selects nothing."""
    write_jsonl(tmp_path / "p.jsonl", PROBLEMS)
    write_jsonl(tmp_path / "q.jsonl", [{"question": p["problem"]} for p in PROBLEMS])
    args = ["bench", bench, "--rows", "3", "--model", tiny_llama, "--dtype", "float32"]
    line = error_line(gaincurate(*args, "--data", "p.jsonl", "--offset", len(PROBLEMS)))
    said = f"--offset {len(PROBLEMS)} skips every row of p.jsonl ({len(PROBLEMS)} rows); pass a smaller --offset"
    assert line == f"gaincurate: error: {said}"
    line = error_line(gaincurate(*args, "--data", "q.jsonl"))
    said = "the bench reads the questions from a 'problem' column; q.jsonl has none (it has question): rename its"
    assert line == f"gaincurate: error: {said} question column to problem"
