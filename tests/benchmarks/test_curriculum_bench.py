"""The bench end to end: the smoke run's outputs, identical starting weights, every strategy by name, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.lab.benchmarks.curriculum import known_strategies, run_bench
from gaincurate.lab.benchmarks.curriculum.bench import POINT_KEYS
from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED
from gaincurate.lab.benchmarks.curriculum.harness import load_initial, state_sha256
from gaincurate.lab.benchmarks.curriculum.warm import SCORING_FIRST_IMPORT, WARM_UP, WARM_UP_SECONDS
from gaincurate.schedule.strategies.contract import POLICY
from gaincurate.schedule.strategies.registry import STRATEGIES

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = str(Path(sys.executable).parent / "gaincurate")  # the installed console script, as a user runs it


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
        measures = strategy in STRATEGIES and POLICY in STRATEGIES[strategy].about.needs
        if measures:  # screen, pilot: measuring is charged too
            assert all(line["rollouts"] > spent for line, spent in zip(mine[1:], training[1:], strict=True))
        else:
            assert [line["rollouts"] for line in mine] == training
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert set(summary["strategies"]) == set(known_strategies())
    assert summary["headroom"] is not None
    # Every arm's savings readout, from the same code as a user's run (its history lines), in the table too.
    readout = summary["readout"]
    assert set(readout) == set(known_strategies())
    assert (
        readout["uniform"]["estimate"] == "no pass-rate estimate" and readout["mopps"]["estimate"] == "posterior mean"
    )
    assert all(0.0 <= epoch["zero_variance"] <= 1.0 for arm in readout.values() for epoch in arm["epochs"])
    assert "Savings readout per arm" in (out / "table.md").read_text()
    assert readout["oracle"]["estimate"].startswith("measured pass rate")
    # Each pair but the oracle keeps its run directory, whose history holds the same readout.
    history = [json.loads(line) for line in (out / "runs" / "dots-seed0" / "history.jsonl").read_text().splitlines()]
    lines = [json.loads(line) for line in (out / "readouts.jsonl").read_text().splitlines()]
    assert [line["readout"] for line in history] == [line["readout"] for line in lines if line["strategy"] == "dots"]
    assert progress.total == progress.done == len(known_strategies()) * config.steps


def test_every_strategy_starts_from_byte_identical_weights(smoke):
    out, _, _ = smoke
    pairs = [json.loads(path.read_text()) for path in (out / "pairs").glob("*.json")]
    assert len(pairs) == len(known_strategies())
    from gaincurate.lab.benchmarks.curriculum.assets import prepare_assets

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
    # First imports are timed apart and charged to no arm: the scoring's, listed for the arms charged the scoring pass,
    # and each process's, paid before its first pair's clock starts (so by one pair at most in this process).
    info = json.loads((out / "assets" / "assets.json").read_text())
    assert info[SCORING_FIRST_IMPORT] > 0 and not (out / "assets" / WARM_UP).exists()
    assert gain[SCORING_FIRST_IMPORT] == info[SCORING_FIRST_IMPORT] and SCORING_FIRST_IMPORT not in uniform
    pairs = [json.loads(path.read_text())["costs"] for path in (out / "pairs").glob("*.json")]
    assert all(WARM_UP_SECONDS in pair for pair in pairs) and sum(pair[WARM_UP_SECONDS] > 0 for pair in pairs) <= 1


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
    command = [CONSOLE, "bench", "curriculum", "--bench", str(config), "--out", str(out),
               "--strategies", "uniform,length", "--seeds", "0-0", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def test_two_workers_train_the_same_pairs_as_one_process(smoke, tmp_path):
    """Pairs trained in two spawned workers equal the in-process ones, from the same initial weights."""
    out, _, _ = smoke
    progress = Recorder()
    summary = run_bench("cpu-arith", tmp_path / "out", strategies=["uniform", "length"], seeds="0-1", smoke=True,
                        workers=2, progress=progress)  # fmt: skip
    assert progress.done == progress.total == 4 * BUNDLED["cpu-arith"].smoke().steps
    assert set(summary["strategies"]["uniform"]["seeds"]) == {0, 1}
    mine = {p.name: json.loads(p.read_text()) for p in (tmp_path / "out" / "pairs").glob("*.json")}
    assert len(mine) == 4 and len({pair["initial_sha256"] for pair in mine.values()}) == 1
    for name in ("uniform-seed0.json", "length-seed0.json"):
        theirs = json.loads((out / "pairs" / name).read_text())
        assert mine[name]["initial_sha256"] == theirs["initial_sha256"]
        drop = ("seconds",)  # wall-clock time is the one thing a run in another process may change
        assert [{k: v for k, v in p.items() if k not in drop} for p in mine[name]["points"]] == [
            {k: v for k, v in p.items() if k not in drop} for p in theirs["points"]
        ]
    assert not [p for p in (tmp_path / "out" / "work").iterdir()]  # no pair left behind, no lock


def test_a_pair_locked_by_a_live_process_is_left_to_it_and_a_stale_lock_is_taken_over(tmp_path):
    from gaincurate.lab.benchmarks.curriculum.bench import _lock

    live = tmp_path / "work" / "uniform-seed0.lock"
    live.parent.mkdir()
    live.write_text(str(os.getppid()))  # a process that is alive: pytest's parent
    assert not _lock(live)
    stale = tmp_path / "work" / "gain-seed0.lock"
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale.write_text(process.stdout.strip())  # a process that has exited
    assert _lock(stale) and stale.read_text() == str(os.getpid())


def test_the_report_re_derives_the_summary_from_the_kept_files(smoke, tmp_path):
    from gaincurate.lab.benchmarks.curriculum.report import publish, report

    out, summary, _ = smoke
    publish(out, tmp_path / "results")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "bench.json",
        "costs.jsonl",
        "draws.jsonl",
        "readouts.jsonl",
        "runs.jsonl",
        "summary.json",
    ]
    again, table = report(tmp_path / "results")
    kept = json.loads((tmp_path / "results" / "summary.json").read_text())
    kept.pop("initial_sha256")
    assert json.loads(json.dumps(again)) == kept
    assert table == (out / "table.md").read_text()
    result = subprocess.run([CONSOLE, "bench", "curriculum", "--report", str(tmp_path / "results")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0 and result.stdout == table


def test_the_declared_analysis_cannot_change_inside_a_bench(smoke, tmp_path):
    out, _, _ = smoke
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({**BUNDLED["cpu-arith"].smoke().to_dict(), "target": 0.99}))
    result = subprocess.run([CONSOLE, "bench", "curriculum", "--bench", str(changed), "--out", str(out)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "holds a bench of another config (differs in target); the analysis is declared before the runs, so pass "
            "another --out, or delete it to start again"
        )
    )
    bad = subprocess.run([CONSOLE, "bench", "curriculum", "--bench", "cpu-arith", "--out", str(tmp_path / "x"),
                          "--seeds", "9-3"], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "--seeds 9-3 is not valid" in bad.stderr  # a usage error, before any work
    assert not (tmp_path / "x").exists()


def test_one_number_given_to_seeds_is_refused_with_both_spellings(tmp_path):
    """`--seeds 90` could mean seed 90 (as the docs' `--seeds 90-92` means 90 to 92) or seeds 0-89 (#49): refused at
    parse time, naming both spellings; `--help` says so."""
    bad = subprocess.run([CONSOLE, "bench", "curriculum", "--bench", "cpu-arith", "--out", str(tmp_path / "x"),
                          "--seeds", "90"], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2, bad.stderr
    assert "--seeds 90 is not valid" in bad.stderr and "90-90 for seed 90 alone" in bad.stderr
    assert "0-89 for the 90 seeds from 0" in bad.stderr and not (tmp_path / "x").exists()
    shown = subprocess.run([CONSOLE, "bench", "curriculum", "--help"], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert "90-90: seed 90 alone" in shown.stdout and "one number alone is refused" in shown.stdout


def _product_right(row: dict) -> bool:
    return str(eval(row["problem"]))[::-1] == row["answer"] and "*" in row["problem"]


def _chain_right(row: dict) -> bool:
    terms = [int(t) for t in row["problem"].split("+")]
    return str(sum(terms))[::-1] == row["answer"] and len(row["solution"].split(",")) == len(terms) - 1


@pytest.mark.parametrize(
    ("bench", "symbol", "right"),
    [("cpu-mult", "*", _product_right), ("cpu-chain", ",", _chain_right)],
)
def test_the_other_tasks_run_by_name_at_smoke_size(tmp_path, bench, symbol, right):
    # cpu-mult (#26) and cpu-chain (#57): the same harness; the pool, the held-out split and the vocabulary are theirs.
    summary = run_bench(bench, tmp_path / "out", strategies=["uniform", "dots"], smoke=True)
    pool = [json.loads(line) for line in (tmp_path / "out" / "assets" / "pool.jsonl").read_text().splitlines()]
    assert pool and all(right(row) for row in pool)
    vocabulary = json.loads((tmp_path / "out" / "assets" / "model" / "tokenizer.json").read_text())["model"]["vocab"]
    assert symbol in vocabulary
    assert set(summary["strategies"]) == {"uniform", "dots"}


def test_the_probe_measures_the_reference_answers_likelihood_on_the_chain_task(tmp_path):
    """The chain rows' reference answer is the scores' answer column, so a probe with the likelihood measures it after
    each epoch: here the bench arm that measures its budget whatever the rewards (`bench_probes.py`), since at smoke
    size every rollout is wrong and `probe --likelihood` then measures nothing. With `measure_pool`, the pool
    instrument also holds every candidate feature (candidates.py: the likelihoods of the answer, the solution, the
    answer after it; the angle score stored, in parts and re-scored live; the embedding) against the measured pass
    rates. At smoke size, its one pair."""
    from gaincurate.lab.benchmarks.curriculum import bench_probes
    from gaincurate.schedule.run.rundir import load_run
    from gaincurate.schedule.strategies.registry import STRATEGIES

    config = tmp_path / "chain.json"
    arm = {"strategy": "probe-budget", "likelihood": True}
    config.write_text(json.dumps({"base": "cpu-chain-compute", "measure_pool": True, "schedule": {"budget": arm}}))
    run_bench(str(config), tmp_path / "out", strategies=["budget"], smoke=True)
    assert "probe-budget" not in STRATEGIES  # registered while its pair trained, and no longer
    with bench_probes.registered():  # the bench's own strategies: named only where they run
        memory = load_run(tmp_path / "out" / "runs" / "budget-seed0").schedule.memory
    measured = np.asarray(memory["likelihood"]["values"], dtype=np.float64)
    assert measured.size and np.all(np.isfinite(measured)) and np.all(measured < 0)
    lines = [json.loads(line) for line in (tmp_path / "out" / "diagnosis.jsonl").read_text().splitlines()]
    expected = {"embedding", "answer", "solution", "answer-after-solution", "angle", "angle-parts", "angle-live",
                "embedding-live", "embedding-both"}  # fmt: skip
    assert lines and all(set(line["candidates"]) == expected for line in lines)


def test_a_chain_config_the_task_cannot_draw_is_refused_in_one_line(tmp_path):
    # One console run (its start-up is the cost); the other refusals of the chain's split: test_curriculum_parts.py.
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"base": "cpu-chain", "pool": [[2, 99]], "eval": [[2, 2]]}))
    done = subprocess.run([CONSOLE, "bench", "curriculum", "--bench", str(config), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)  # fmt: skip
    said = "gaincurate: error: pool and eval ask for 101 distinct 2-term sums; there are 100"
    assert done.returncode == 1 and done.stderr.strip() == said, done.stderr
    assert not (tmp_path / "out").exists()


def test_the_bench_refuses_before_it_loads_torch():
    """A refusal (config, arm, seeds, dataset) comes from run_bench before a pair trains: the bench's module and
    its CLI load no torch, so a user waits a second for it, not five; only the harness, where a pair trains, does."""
    code = (
        "import sys, gaincurate.cli, gaincurate.lab.cli.bench, gaincurate.lab.benchmarks.curriculum.bench\n"
        "print(sorted({'torch', 'transformers', 'trl'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's prctl")
def test_a_bench_worker_dies_with_the_bench_and_imports_trl_quietly(tmp_path):
    """A spawned worker starts as a fresh interpreter, without the console script's filters: its initializer sets
    them before the first pair imports trl (whose torchao import otherwise prints load failures on a CPU machine)."""
    code = (
        "import ctypes\n"
        "from gaincurate.lab.benchmarks.curriculum.bench import start_worker\n"
        "start_worker()\n"
        "from trl import GRPOTrainer\n"
        "signal = ctypes.c_int()\n"
        "ctypes.CDLL('libc.so.6', use_errno=True).prctl(2, ctypes.byref(signal))\n"  # PR_GET_PDEATHSIG
        "print(signal.value)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert int(done.stdout) == signal.SIGTERM
