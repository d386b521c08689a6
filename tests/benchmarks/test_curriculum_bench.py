"""The bench end to end: the smoke run's outputs, identical starting weights, every strategy by name, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaincurate.benchmarks.curriculum import known_strategies, run_bench
from gaincurate.benchmarks.curriculum.configs import BUNDLED
from gaincurate.benchmarks.curriculum.harness import POINT_KEYS, load_initial, state_sha256
from gaincurate.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.total = 0
        self.done = 0

    def stage(self, message: str) -> None:
        self.stages.append(message)

    def set_total(self, total: int) -> None:
        self.total, self.done = total, 0

    def advance(self, rows: int) -> None:
        self.done += rows


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`--smoke` with every strategy the scheduler knows, plus the oracle: what CI runs, and more."""
    out = tmp_path_factory.mktemp("bench") / "out"
    progress = Recorder()
    summary = run_bench("cpu-arith", out, strategies=known_strategies(), smoke=True, progress=progress)
    return out, summary, progress


def test_smoke_run_writes_runs_summary_table_and_plot(smoke):
    out, summary, progress = smoke
    for name in ("runs.jsonl", "summary.json", "curves.png", "table.md"):
        assert (out / name).stat().st_size > 0, name
    assert not list((out / "work").iterdir())
    lines = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert all(tuple(line) == POINT_KEYS for line in lines)
    config = BUNDLED["cpu-arith"].smoke()
    steps = list(range(0, config.steps + 1, config.eval_every))
    for strategy in known_strategies():
        mine = [line for line in lines if line["strategy"] == strategy]
        assert [line["step"] for line in mine] == steps
        assert mine[0]["rollouts"] == 0 and mine[0]["zero_variance_fraction"] is None
        per_step = config.prompts_per_step * config.num_generations
        training = [s * per_step for s in steps]
        if strategy == "screen":  # its screening is charged on top (tests/benchmarks/test_curriculum_screen.py)
            assert all(line["rollouts"] > spent for line, spent in zip(mine[1:], training[1:], strict=True))
        else:
            assert [line["rollouts"] for line in mine] == training
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert set(summary["strategies"]) == set(known_strategies())
    assert summary["headroom"] is not None
    assert progress.total == progress.done == len(known_strategies()) * config.steps


def test_every_strategy_starts_from_byte_identical_weights(smoke):
    out, _, _ = smoke
    pairs = [json.loads(path.read_text()) for path in (out / "pairs").glob("*.json")]
    assert len(pairs) == len(known_strategies())
    from gaincurate.benchmarks.curriculum.assets import prepare_assets

    assets = prepare_assets(BUNDLED["cpu-arith"].smoke(), out)
    model, _ = load_initial(assets, BUNDLED["cpu-arith"].smoke())
    assert {pair["initial_sha256"] for pair in pairs} == {state_sha256(model)}


def test_costs_are_reported_apart_and_the_oracle_is_not_charged(smoke):
    out, summary, _ = smoke
    oracle = json.loads((out / "pairs" / "oracle-seed0.json").read_text())
    assert oracle["costs"]["measure_rollouts"] > 0 and oracle["oracle_epochs"]
    uniform = summary["strategies"]["uniform"]["costs"]
    gain = summary["strategies"]["gain"]["costs"]
    assert uniform["scoring_seconds"] == 0.0  # plain GRPO scores nothing
    assert gain["scoring_seconds"] > 0
    assert gain["rescore_seconds"] > 0  # cpu-arith re-scores gain's subsets with the live model
    first = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    gain_start = next(line for line in first if line["strategy"] == "gain")
    assert gain_start["seconds"] >= gain["scoring_seconds"]


def test_a_bench_of_another_config_or_an_unknown_strategy_is_refused(smoke):
    out, _, _ = smoke
    with pytest.raises(ConfigError, match="another config"):
        run_bench(BUNDLED["cpu-arith"], out, strategies=["uniform"])  # the full size, not --smoke
    with pytest.raises(ConfigError, match="unknown arm 'best'"):
        run_bench("cpu-arith", out, strategies=["best"], smoke=True)


def test_a_killed_bench_resumes_at_the_first_unfinished_pair(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"base": "cpu-arith", **json.loads(json.dumps(BUNDLED["cpu-arith"].smoke_overrides)),
                                  "name": "tiny", "steps": 6, "eval_every": 2, "smoke_overrides": {}}))  # fmt: skip
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gaincurate.benchmarks.curriculum", "--config", str(config), "--out", str(out),
               "--strategies", "uniform,length", "--seeds", "1", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    second = out / "work" / "length-seed0" / "points.jsonl"
    deadline = time.monotonic() + 240
    while not second.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert second.is_file(), process.stderr.read().decode()[-2000:]
    first = out / "pairs" / "uniform-seed0.json"
    before = (first.read_bytes(), first.stat().st_mtime_ns)
    assert not (out / "pairs" / "length-seed0.json").exists()

    progress = Recorder()
    run_bench(str(config), out, strategies=["uniform", "length"], seeds=1, max_pairs=0, progress=progress)
    assert progress.stages == [] and not (out / "pairs" / "length-seed0.json").exists()
    summary = run_bench(str(config), out, strategies=["uniform", "length"], seeds=1, progress=progress)
    assert progress.stages == ["length, seed 0"]  # the finished pair is not run again, nor the warm start
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    lines = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [(line["strategy"], line["step"]) for line in lines] == [
        (s, step) for s in ("uniform", "length") for step in (0, 2, 4, 6)
    ]
    assert set(summary["strategies"]) == {"uniform", "length"}
