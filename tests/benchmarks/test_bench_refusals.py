"""A bench refuses what it cannot run before it trains, in one line naming the field; and a run that stopped on a bad
input, having trained nothing, leaves its --out free for the corrected config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gaincurate.errors import ConfigError
from gaincurate.lab.benchmarks.curriculum import run_bench
from gaincurate.lab.benchmarks.curriculum.bench import claim
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig

CONSOLE = str(Path(sys.executable).with_name("gaincurate"))


def gaincurate(*args: str | Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    return subprocess.run([CONSOLE, *map(str, args)], capture_output=True, text=True,
                          env={**environment, "OMP_NUM_THREADS": "1"})  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("max_completion_length", 0, "max_completion_length must be a whole number 1 or more; got 0"),
        ("learning_rate", -1, "learning_rate must be a number above 0; got -1"),
        ("temperature", 0, "temperature must be a number above 0; got 0"),
        ("warm_start_lr", float("nan"), "warm_start_lr must be a number above 0; got nan"),
        ("pool", [[1, "x"]], 'pool lists (digits, count) pairs of whole numbers 1 or more; got [1, "x"]'),
        ("eval", [[2, 0]], "eval lists (digits, count) pairs of whole numbers 1 or more; got [2, 0]"),
        ("target", "0.5", "target is a held-out accuracy in (0, 1]; got '0.5'"),
        ("other_targets", [1.5], "other_targets is a held-out accuracy in (0, 1]; got 1.5"),
        ("target_fraction", "x", "target_fraction must lie in (0, 1]; got 'x'"),
        ("oracle_target", 5, "oracle_target must lie in [0, 1]; got 5"),
        ("pool_rows", 0, "pool_rows must be a whole number 1 or more; got 0"),
        ("pauc_budget", 2.5, "pauc_budget is a number of rollouts, 1 or more; got 2.5"),
    ],
)
def test_a_value_that_would_fail_after_the_warm_start_is_refused_naming_its_field(field, value, said):
    with pytest.raises(ConfigError) as refused:
        BenchConfig.from_dict({"name": "t", field: value})
    assert str(refused.value) == said


def test_a_bad_value_a_baseline_not_run_and_a_missing_dataset_are_one_line_and_leave_out_free(tmp_path):
    refused = gaincurate("bench", "curriculum", "--bench", _config(tmp_path, "mcl", max_completion_length=0),
                         "--out", tmp_path / "a")  # fmt: skip
    said = "gaincurate: error: max_completion_length must be a whole number 1 or more; got 0"
    assert (refused.returncode, refused.stderr.strip()) == (1, said)
    assert not (tmp_path / "a").exists()

    refused = gaincurate("bench", "curriculum", "--bench", _config(tmp_path, "base", baseline="nosuch"),
                         "--out", tmp_path / "b")  # fmt: skip
    said = ("gaincurate: error: baseline nosuch is not among the bench's arms (uniform, dots); add it to the "
            "strategies, or declare one of them as the baseline")  # fmt: skip
    assert (refused.returncode, refused.stderr.strip()) == (1, said)
    assert not (tmp_path / "b").exists()

    out = tmp_path / "c"
    missing = _config(tmp_path, "missing", task="math", dataset=str(tmp_path / "nonexistent.jsonl"))
    refused = gaincurate("bench", "curriculum", "--bench", missing, "--out", out)
    assert refused.returncode == 1 and "does not exist" in refused.stderr, refused.stderr
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n")
    corrected = gaincurate("bench", "curriculum", "--bench", _config(tmp_path, "fixed", task="math",
                           dataset=str(short)), "--out", out)  # fmt: skip
    # The corrected config is taken: its own data is read (and found short), not refused as another config's bench.
    assert corrected.returncode == 1 and "has 1 rows with an answer" in corrected.stderr, corrected.stderr
    assert json.loads((out / "bench.json").read_text())["config"]["dataset"] == str(short)


def test_a_primary_arm_that_is_not_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^primary arm probe is not among the bench's arms \(uniform, dots\)"):
        run_bench(BenchConfig(name="t", strategies=("uniform", "dots"), primary=("probe",)), tmp_path / "out")
    with pytest.raises(ConfigError, match="baseline uniform is not among"):
        run_bench(BenchConfig(name="t", strategies=("dots",), baseline="uniform"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_bench_with_a_finished_or_training_pair_keeps_its_config(tmp_path):
    first, second = BenchConfig(name="t"), BenchConfig(name="t", learning_rate=1e-3)
    claim(tmp_path, first)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "uniform-seed0.lock").write_text(str(os.getpid()))  # a live process trains a pair
    with pytest.raises(ConfigError, match="differs in learning_rate"):
        claim(tmp_path, second)
    (tmp_path / "work" / "uniform-seed0.lock").unlink()
    (tmp_path / "pairs" / "uniform-seed0.json").write_text("{}")
    with pytest.raises(ConfigError, match="differs in learning_rate"):
        claim(tmp_path, second)
    (tmp_path / "pairs" / "uniform-seed0.json").unlink()
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "assets.json").write_text("{}")
    claim(tmp_path, second)  # nothing trained: the new config is taken, its assets prepared again
    assert not (tmp_path / "assets" / "assets.json").exists()
    assert json.loads((tmp_path / "bench.json").read_text())["config"]["learning_rate"] == 1e-3


# cpu-arith at smoke size: a config that is not refused trains in seconds.
TINY = {"pool": [[1, 16], [2, 16]], "eval": [[1, 8], [2, 8]], "warm_start_steps": 60,
        "model_shape": {"layers": 2, "hidden": 32, "heads": 2}, "steps": 4, "subset_size": 8, "prompts_per_step": 4,
        "num_generations": 4, "eval_every": 2, "eval_samples": 2, "oracle_rollouts": 2,
        "strategies": ["uniform", "dots"], "seeds": "0-0"}  # fmt: skip


def _config(folder: Path, name: str, **fields: object) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**TINY, "name": name, **fields}))
    return path


def test_a_declared_primary_arm_without_pairs_is_not_reported_as_undeclared():
    from gaincurate.lab.benchmarks.curriculum.report import _verdict_line

    summary = {"baseline": "uniform", "primary": {}, "analysis": {"primary": ["probe"]}}
    assert _verdict_line(summary).startswith("The declared primary arms (probe) have no pairs here")
    summary["analysis"]["primary"] = []
    assert _verdict_line(summary).startswith("No primary comparison was declared")
