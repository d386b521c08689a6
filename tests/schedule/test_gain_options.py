"""gain's ablation options (issue #26): --ranking random, --mu-control sweep, --direction auto, a negative --adj-min.

Each is checked on a case small enough to work out by hand, for resume, and for its one-line error through the
real console script; at their defaults a short run draws exactly the epochs it drew before the options existed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from schedule_helpers import drive_epochs, snapshot, without_timings

from gaincurate.errors import ConfigError, InputError
from gaincurate.feedback_lines import append_rollouts
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.strategies.contract import PromptSet
from gaincurate.schedule.strategies.gain import RANKING_STREAM, GainOptions, GainStrategy, resolve_sizes
from gaincurate.schedule.strategies.gain.direction import average_ranks, spearman

SMALL = {"seed": 3, "subset_size": 8, "sigma": 6, "step_size": 5, "adj_max": 12}
NEW_FIELDS = ("ranking", "mu_control", "sweep_rate", "direction")


def rollouts_file(path: Path, gc_ids, epoch: int) -> Path:
    """Two rollouts per prompt; rollout r of gc_id i in epoch t is right unless (i + r + t) % 4 == 0."""
    ids = [int(i) for i in gc_ids]
    rewards = [float((i + r + epoch) % 4 != 0) for i in ids for r in range(2)]
    append_rollouts(path, [i for i in ids for _ in range(2)], rewards)
    return path


def prompt_set(scores: list[float]) -> PromptSet:
    count = len(scores)
    values = np.asarray(scores, dtype=np.float64)
    return PromptSet(np.arange(count, dtype=np.int64), values, values, np.full(count, 10, dtype=np.int64))


def per_prompt(rates: dict[int, float], rollouts: int = 4) -> Feedback:
    """Feedback of `rollouts` rollouts per prompt whose correctness sums to rate x rollouts."""
    table = {gc_id: (rate * rollouts, rollouts) for gc_id, rate in rates.items()}
    accuracy = sum(total for total, _ in table.values()) / (rollouts * len(table))
    return Feedback(accuracy, rollouts * len(table), len(table), per_prompt=table)


# -- defaults: the published schedule, byte for byte --------------------------------------------------------


def test_defaults_draw_the_epochs_pinned_before_the_options_existed(tmp_path, scores_dir):
    """Pinned from the code before the ablation options: 40 toy prompts, seed 3, four steps of feedback."""
    pinned = {
        "gain": [[26, 27, 38, 5, 37, 12, 4, 6], [26, 27, 9, 38, 5, 16, 7, 28], [26, 38, 5, 37, 10, 4, 14, 24],
                 [26, 38, 12, 10, 4, 7, 30, 28], [9, 38, 16, 7, 33, 30, 22, 0]],
        "length": [[16, 39, 17, 26, 31, 37, 2, 6], [16, 39, 27, 17, 26, 13, 3, 10], [16, 17, 26, 31, 23, 2, 12, 33],
                   [16, 17, 37, 23, 2, 3, 7, 10], [27, 17, 13, 3, 22, 7, 29, 20]],
    }  # fmt: skip
    mus = {"gain": [0.0, 2.772998611746911, 5.08358439804696, 6.308177710065506]}
    for strategy, epochs in pinned.items():
        run = tmp_path / strategy
        drive_epochs(run, scores_dir, 4, ScheduleConfig(strategy=strategy, **SMALL), rollouts_file)
        history = rundir.read_history(run)
        drawn = [line["subset_ids"] for line in history] + [rundir.load_run(run).schedule.subset_ids.tolist()]
        assert drawn == epochs
        if strategy in mus:
            assert [line["mu"] for line in history] == mus[strategy]
        assert all("direction" not in line for line in history)
        state = json.loads((run / "state.json").read_text())
        config = ScheduleConfig.from_dict(state["config"])
        assert config == ScheduleConfig(strategy=strategy, **SMALL)
        assert not set(NEW_FIELDS) & set(config.options.changed())  # gain's ablation options at their defaults
        assert set(state["memory"]) == {"mu"}  # gain's mu alone: no direction decision


def test_stored_config_keeps_only_the_strategys_own_options():
    defaults = ScheduleConfig(strategy="gain").to_dict()
    assert {key: defaults[key] for key in NEW_FIELDS} == {
        "ranking": "score", "mu_control": "feedback", "sweep_rate": None, "direction": "high-first"
    }  # fmt: skip
    assert not set(NEW_FIELDS) & set(ScheduleConfig(strategy="length").to_dict())  # gain's own, not length's
    assert not {"tau", "prior", "screen_factor", "explore_min"} & set(defaults)  # nor any other strategy's
    changed = ScheduleConfig(strategy="gain", mu_control="sweep", sweep_rate="4%", direction="auto")
    stored = changed.to_dict()
    assert {key: stored[key] for key in ("mu_control", "sweep_rate", "direction")} == {
        "mu_control": "sweep", "sweep_rate": "4%", "direction": "auto"
    }  # fmt: skip
    assert changed.options.changed() == {"mu_control": "sweep", "sweep_rate": "4%", "direction": "auto"}
    assert stored["ranking"] == "score" and ScheduleConfig.from_dict(stored) == changed
    random = ScheduleConfig(**{"strategy": "gain", **{"strategy": "gain", "ranking": "random"}})
    assert random.options.ranking == "random"


# -- --ranking random ---------------------------------------------------------------------------------------


def test_random_ranking_is_the_seeded_permutation_whatever_the_scores():
    permutation = np.random.default_rng([4, 0, RANKING_STREAM]).permutation(6)
    for scores in ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1]):
        scheduler = Scheduler(
            ScheduleConfig(strategy="gain", ranking="random", seed=4, subset_size=2), prompt_set(scores)
        )
        assert scheduler.state.ranking.tolist() == permutation.tolist()
        assert scheduler.state.scores.tolist() == np.asarray(scores)[permutation].tolist()
    other = Scheduler(ScheduleConfig(strategy="gain", ranking="random", seed=5, subset_size=2), prompt_set([0.1] * 6))
    assert other.state.ranking.tolist() != permutation.tolist()


def test_random_ranking_draws_around_mu_as_gain_does():
    """A tiny sigma takes the positions nearest mu: epoch 0 is the permutation's first two prompts."""
    config = ScheduleConfig(strategy="gain", ranking="random", seed=4, subset_size=2, sigma=0.01)
    plan = Scheduler(config, prompt_set([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])).step().plan
    assert sorted(plan.gc_ids.tolist()) == sorted(np.random.default_rng([4, 0, RANKING_STREAM]).permutation(6)[:2])


# -- --mu-control sweep -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "step"), [(15, 15.0), ("10%", 4.0), (None, 5.0)])
def test_sweep_moves_mu_by_its_rate_whatever_the_feedback(rate, step):
    """40 prompts, step_size 5: all right, all wrong, all right... mu still goes 0, step, 2 step, up to 39."""
    config = ScheduleConfig(strategy="gain", mu_control="sweep", sweep_rate=rate, step_size=5, subset_size=4, seed=1)
    scheduler = Scheduler(config, prompt_set(list(np.linspace(1, 0, 40))))
    scheduler.step()
    mus = [scheduler.state.memory["mu"]]
    for epoch in range(10):
        ids = scheduler.state.subset_ids.tolist()
        scheduler.step(feedback=per_prompt(dict.fromkeys(ids, float(epoch % 2 == 0))))
        mus.append(scheduler.state.memory["mu"])
    assert mus == [min(step * epoch, 39.0) for epoch in range(11)]


def test_the_default_sweep_rate_is_the_step_size_scaled_to_n():
    def sweep_rate(n_prompts: int, **options) -> float:
        config = ScheduleConfig(strategy="gain", mu_control="sweep", **options)
        return resolve_sizes(config.options, n_prompts).sweep_rate

    assert sweep_rate(7500) == 500.0
    assert sweep_rate(300) == pytest.approx(20.0)
    assert sweep_rate(300, step_size=7) == 7.0
    assert GainStrategy(GainOptions(mu_control="sweep"), 300).sizes.sweep_rate == pytest.approx(20.0)


# -- --direction auto ---------------------------------------------------------------------------------------


def test_spearman_by_hand():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # ranks (1, 2, 3, 4) against (1.5, 1.5, 3.5, 3.5): 4 / sqrt(5 x 4)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([0.0, 0, 1, 1])) == pytest.approx(4 / math.sqrt(20))
    assert math.isnan(spearman(np.array([1.0, 2, 3]), np.array([0.5, 0.5, 0.5])))
    assert math.isnan(spearman(np.array([1.0]), np.array([0.5])))


AUTO = ScheduleConfig(strategy="gain", direction="auto", subset_size=5, sigma=0.01, step_size=1, rescore="none")
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, float("nan")]  # ranked as given: gc_id 5 (unscorable) last


@pytest.mark.parametrize(
    ("rates", "ranking", "rho", "order"),
    [
        # pass rates rise down the ranking (the score falls with the pass rate): reversed, unscorable still last
        ({0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}, "reversed", -1.0, [4, 3, 2, 1, 0, 5]),
        ({0: 1.0, 1: 0.75, 2: 0.5, 3: 0.25, 4: 0.25}, "kept", 0.9746794344808963, [0, 1, 2, 3, 4, 5]),
        ({0: 0.5, 1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5}, "kept", None, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_auto_direction_keeps_or_reverses_after_the_first_epoch(rates, ranking, rho, order):
    scheduler = Scheduler(AUTO, prompt_set(SCORES))
    assert scheduler.step().plan.gc_ids.tolist() == [0, 1, 2, 3, 4]  # the five nearest mu = 0
    step = scheduler.step(feedback=per_prompt(rates))
    decision = {"epoch": 0, "ranking": ranking, "spearman": rho, "prompts": 5}
    direction = step.record.update["direction"]
    assert direction == (decision if rho is None else decision | {"spearman": pytest.approx(rho)})
    assert step.record.to_json()["direction"] == direction
    mu_next = step.record.update["mu_next"]
    assert scheduler.state.ranking.tolist() == order
    # mu keeps its value: it counts ranks from the (new) start
    assert scheduler.state.memory == {"mu": mu_next, "direction": direction}
    # decided once: a later epoch whose rates run the other way changes nothing
    later = scheduler.step(feedback=per_prompt({int(i): 1.0 - rates.get(int(i), 0.5) for i in step.plan.gc_ids}))
    assert "direction" not in later.record.update and scheduler.state.ranking.tolist() == order


def test_auto_direction_needs_per_prompt_feedback():
    scheduler = Scheduler(AUTO, prompt_set(SCORES))
    scheduler.step()
    with pytest.raises(InputError, match="--direction auto reads each prompt's pass rate"):
        scheduler.step(feedback=Feedback.from_accuracy(0.5))


def test_auto_direction_decision_survives_a_json_round_trip():
    from gaincurate.schedule.state import ScheduleState

    scheduler = Scheduler(AUTO, prompt_set(SCORES))
    scheduler.step()
    scheduler.step(feedback=per_prompt({0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}))
    state = ScheduleState.from_json(json.loads(json.dumps(scheduler.state.to_json())))
    resumed = Scheduler(AUTO, prompt_set(SCORES), state)
    feedback = per_prompt(dict.fromkeys(scheduler.state.subset_ids.tolist(), 1.0))
    assert resumed.step(feedback=feedback).plan.gc_ids.tolist() == (
        scheduler.step(feedback=feedback).plan.gc_ids.tolist()
    )


# -- a negative --adj-min ------------------------------------------------------------------------------------


def gaincurate(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("gaincurate")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)


def test_negative_adj_min_moves_mu_back_through_the_console_script(tmp_path, scores_dir):
    """40 prompts, n = 5: all right moves mu by 5 tanh(1) = 3.808, all wrong by -3.808 (inside -10% = -4)."""
    run = tmp_path / "run"
    init = gaincurate("schedule", "init", "--strategy", "gain", "--scores", str(scores_dir), "--run", str(run),
                      "--subset-size", "8", "--step-size", "5", "--adj-min", "-10%", "--rescore", "none",
                      "--json")  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["params"]["adj_min"] == -4.0
    assert gaincurate("schedule", "step", "--run", str(run), "--json").returncode == 0
    mus = []
    for epoch, reward in enumerate((1.0, 0.0)):
        ids = rundir.load_run(run).schedule.subset_ids.tolist()
        feedback = tmp_path / f"feedback-{epoch}.jsonl"
        append_rollouts(feedback, ids, [reward] * len(ids))
        step = gaincurate("schedule", "step", "--run", str(run), "--feedback", str(feedback), "--json")
        assert step.returncode == 0, step.stderr
        mus.append(json.loads(step.stdout)["mu"])
    assert mus == [pytest.approx(5 * math.tanh(1.0)), pytest.approx(0.0, abs=1e-12)]


# -- resume equals uninterrupted -------------------------------------------------------------------------------


@pytest.mark.determinism
@pytest.mark.parametrize(
    "options",
    [{"ranking": "random"}, {"mu_control": "sweep", "sweep_rate": "7%"}, {"direction": "auto"}, {"adj_min": "-5%"}],
    ids=["random", "sweep", "auto", "signed"],
)
@pytest.mark.parametrize("killed_at", [0, 2])
def test_a_step_killed_before_state_json_resumes_to_the_uninterrupted_run(
    tmp_path, scores_dir, monkeypatch, options, killed_at
):
    config = ScheduleConfig(**{"strategy": "gain", **SMALL}, **options)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    drive_epochs(straight, scores_dir, 4, config, rollouts_file)
    drive_epochs(killed, scores_dir, killed_at, config, rollouts_file)
    feedback = rollouts_file(tmp_path / "again.jsonl", rundir.load_run(killed).schedule.subset_ids, killed_at)

    def kill(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(rundir, "save_run", kill)
        with pytest.raises(KeyboardInterrupt):
            Run.open(killed).step(feedback=feedback)
    Run.open(killed).step(feedback=feedback)
    for epoch in range(killed_at + 1, 4):
        Run.open(killed).step(
            feedback=rollouts_file(tmp_path / f"k{epoch}.jsonl", rundir.load_run(killed).schedule.subset_ids, epoch),
        )
    # every file but history.jsonl, whose lines carry wall-clock timings (compared without them below)
    assert {k: v for k, v in snapshot(killed).items() if k != "history.jsonl"} == {
        k: v for k, v in snapshot(straight).items() if k != "history.jsonl"
    }
    assert without_timings(rundir.read_history(killed)) == without_timings(rundir.read_history(straight))
    if "direction" in options:
        assert rundir.read_history(straight)[0]["direction"]["ranking"] in ("kept", "reversed")


# -- bad values: one line through the real console script ------------------------------------------------------
# One usage error (exit 2) and one refused value (exit 1) run the console script, as users do; the other cases go
# through the same `main` in this process, sparing a second of start each.
THROUGH_THE_CONSOLE_SCRIPT = (["--ranking", "angle"], ["--mu-control", "sweep", "--sweep-rate", "-5"])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--ranking", "angle"], 2, "--ranking"),
        (["--mu-control", "fixed"], 2, "--mu-control"),
        (["--direction", "low-first"], 2, "--direction"),
        (["--sweep-rate", "fast"], 2, "--sweep-rate fast is not valid"),
        (["--mu-control", "sweep", "--sweep-rate", "-5"], 2, "--sweep-rate must be 0 or more; got -5"),
        (["--sweep-rate", "5"], 1, "--sweep-rate is how far mu moves each epoch under --mu-control sweep"),
        (["--strategy", "uniform", "--ranking", "random"], 1, "--ranking is a gain option; pass --strategy gain"),
        (["--strategy", "length", "--direction", "auto"], 1, "--direction is a gain option"),
        (["--ranking", "random", "--direction", "auto"], 1, "a random ranking has no direction"),
        (
            ["--direction", "auto", "--rescore", "full"],
            1,
            "would undo a reversal; pass --rescore subset or --rescore window",
        ),
        (["--adj-min", "-10", "--adj-max", "-20"], 1, "--adj-min -10 is above --adj-max -20"),
    ],
)
def test_bad_gain_options_through_the_console_script(tmp_path, scores_dir, args, code, message, monkeypatch, capsys):
    run = str(tmp_path / "run")
    init = ["schedule", "init", "--strategy", "gain", "--scores", str(scores_dir), "--run", run, *args]
    if args in THROUGH_THE_CONSOLE_SCRIPT:
        result = gaincurate(*init)
        returncode, stderr = result.returncode, result.stderr
    else:
        returncode, _, stderr = run_cli(init, monkeypatch, capsys)
    errors = [line for line in stderr.splitlines() if line.startswith("gaincurate: error:")]
    assert returncode == code and len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ranking": "angle"}, "ranking must be one of score, random; got 'angle'"),
        ({"mu_control": "fixed"}, "mu_control must be one of feedback, sweep"),
        ({"direction": "low-first"}, "direction must be one of high-first, auto"),
        ({"strategy": "mopps", "mu_control": "sweep"}, "mu_control is a gain option"),
    ],
)
def test_bad_gain_fields_from_a_bench_config(fields, message):
    with pytest.raises(ConfigError, match=message):
        ScheduleConfig(**{"strategy": "gain", **fields})


@pytest.mark.parametrize(("value", "prompts"), [(0.7, 3), (0.7, 7), (0.123456, 10), (1.3, 5)])
def test_fresh_scores_all_equal_carry_no_centred_angle_signal(value, prompts):
    """Equal fresh scores have no spread: their mean's rounding (a std of 1e-16) must not standardise into +-1."""
    from gaincurate.schedule.core import Rescored

    ids = np.arange(prompts)
    prompt_set = PromptSet(ids, np.zeros(prompts), np.zeros(prompts), np.ones(prompts, dtype=int))
    config = ScheduleConfig(strategy="gain", subset_size=2, rescore="full", angle_signal="centered")
    scheduler = Scheduler(config, prompt_set)
    plan = scheduler.step().plan
    feedback = [{"gc_id": int(g), "reward": 0.0} for g in plan.gc_ids for _ in range(2)]
    step = scheduler.step(feedback=feedback, rescored=Rescored(ids, np.full(prompts, value)))
    assert step.record.update["signal"] == 0.0
