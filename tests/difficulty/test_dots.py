"""The `dots` schedule strategy: the selection formula, the growing reference set, seeds, resume, errors."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from difficulty_helpers import true_pass_rates, write_embedded_scores, write_feedback
from helpers import chi_square

from gaincurate.difficulty.estimate import NEIGHBOUR_ROLLOUTS
from gaincurate.difficulty.reference import PassRates, PromptEmbeddings
from gaincurate.errors import InputError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run
from gaincurate.schedule.run.steps import init_run
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import RankingContext, StrategyInputs, draw_without_replacement
from gaincurate.schedule.strategies.dots import DotsStrategy, selection_probabilities
from gaincurate.schedule.strategies.filters import chosen_through

CONFIG = ScheduleConfig(strategy="dots", subset_size=10, seed=5, tau=0.05, tau_attn=0.2)


def drawn(strategy, state, context, rng):
    """The positions a strategy draws, through no filter, as the scheduler takes them."""
    return chosen_through(strategy, (), state, context, rng).positions


def chi_square_critical(degrees: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square (Wilson-Hilferty)."""
    return degrees * (1 - 2 / (9 * degrees) + z * math.sqrt(2 / (9 * degrees))) ** 3


def strategy_with_memory(n_prompts: int = 40, target: float = 0.5, tau: float = 0.1):
    embeddings, rates = true_pass_rates(n_prompts, seed=2)
    prompts = PromptEmbeddings(np.arange(n_prompts), embeddings, np.full(n_prompts, 10), np.zeros(n_prompts))
    strategy = DotsStrategy(prompts, target=target, tau=tau, tau_attn=0.2)
    measured = {i: (float(round(rates[i] * 4)), 4) for i in range(0, n_prompts, 3)}
    memory = {"pass_rates": PassRates.empty().add(measured, time=0, forget=1.0).to_json()}
    state = ScheduleState(epoch=1, ranking=np.arange(n_prompts), scores=np.zeros(n_prompts), memory=memory)
    subset_size = ScheduleConfig(strategy="dots", subset_size=1, target=target, tau=tau).subset_count(n_prompts)
    return strategy, state, RankingContext(np.arange(n_prompts), np.zeros(n_prompts), subset_size)


def single_draw_counts(strategy, state, context, draws: int = 10_000) -> np.ndarray:
    rng = np.random.default_rng(1234)
    counts = np.zeros(len(context.gc_ids), dtype=np.int64)
    for _ in range(draws):
        (position,) = drawn(strategy, state, context, rng)
        counts[position] += 1
    return counts


def test_single_draws_follow_the_selection_formula():
    strategy, state, context = strategy_with_memory()
    predicted = strategy.pass_rates(state)
    probabilities = selection_probabilities(predicted, target=0.5, tau=0.1)
    np.testing.assert_allclose(
        probabilities, np.exp(-np.abs(predicted - 0.5) / 0.1) / np.exp(-np.abs(predicted - 0.5) / 0.1).sum(), rtol=1e-12
    )
    statistic, degrees = chi_square(single_draw_counts(strategy, state, context), probabilities)
    assert degrees >= 10
    assert statistic < chi_square_critical(degrees)


def test_chi_square_rejects_another_target():
    """The same test notices draws aimed at 0.7 instead of 0.5: it has power."""
    strategy, state, context = strategy_with_memory(target=0.7)
    predicted = strategy.pass_rates(state)
    statistic, degrees = chi_square(
        single_draw_counts(strategy, state, context), selection_probabilities(predicted, target=0.5, tau=0.1)
    )
    assert statistic > chi_square_critical(degrees)


def test_measurements_age_toward_the_neighbours_prediction():
    """p_q = (w sums + K m_q) / (w counts + K), w = forget ** age; unmeasured prompts get m_q itself."""
    strategy, state, _ = strategy_with_memory()  # measured at epoch 0, so at epoch 1 their age is 0
    strategy.forget = 0.5
    measured = strategy.measured(state)
    previous_gap = None
    for epoch in (1, 2, 4, 30):
        aged = replace(state, epoch=epoch)
        estimates = strategy.estimates(aged)
        neighbour = estimates.neighbour[measured.gc_ids]
        weight = 0.5 ** (epoch - 1)
        expected = (weight * measured.sums + NEIGHBOUR_ROLLOUTS * neighbour) / (weight * measured.counts + 3.0)
        np.testing.assert_allclose(estimates.estimate[measured.gc_ids], expected, rtol=1e-12)
        unmeasured = np.setdiff1d(np.arange(len(estimates.estimate)), measured.gc_ids)
        np.testing.assert_array_equal(estimates.estimate[unmeasured], estimates.neighbour[unmeasured])
        gap = np.abs(estimates.estimate[measured.gc_ids] - neighbour).max()
        assert previous_gap is None or gap < previous_gap  # older measurements give way to the neighbours
        previous_gap = gap
        np.testing.assert_array_equal(strategy.pass_rates(aged), estimates.estimate)
    assert previous_gap < 1e-6
    assert np.all((estimates.estimate >= 0) & (estimates.estimate <= 1))


def run_epochs(run_dir: Path, scores: Path, epochs: int, config: ScheduleConfig = CONFIG) -> None:
    init_run(run_dir, scores, config)
    Run.open(run_dir).step()
    for epoch in range(epochs):
        ids = load_run(run_dir).schedule.subset_ids
        feedback = write_feedback(run_dir.parent / f"{run_dir.name}-fb{epoch}.jsonl", ids, samples=4, seed=epoch)
        Run.open(run_dir).step(feedback=feedback)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes; history lines without their wall-clock timings."""
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != "history.jsonl"}
    lines = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
    files["history.jsonl"] = json.dumps([{k: v for k, v in line.items() if k != "timings"} for line in lines]).encode()
    return files


@pytest.mark.determinism
def test_seeded_runs_are_byte_identical_and_the_reference_grows(embedded_scores, tmp_path):
    run_epochs(tmp_path / "a", embedded_scores, 3)
    run_epochs(tmp_path / "b", embedded_scores, 3)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    run = load_run(tmp_path / "a")
    history = [json.loads(line) for line in (tmp_path / "a" / "history.jsonl").read_text().splitlines()]
    trained = sorted({gc_id for line in history for gc_id in line["subset_ids"]})
    memory = PassRates.from_json(run.schedule.memory["pass_rates"])
    np.testing.assert_array_equal(memory.gc_ids, trained)  # every trained prompt joined the reference set
    # Each rollout weighs forget per epoch of age since (--forget 0.4): 4 x 0.4 ** (last - t) per epoch t trained.
    expected = {gc_id: 0.0 for gc_id in trained}
    for line in history:
        for gc_id in line["subset_ids"]:
            expected[gc_id] += 4 * 0.4 ** (memory.last[trained.index(gc_id)] - line["epoch"])
    np.testing.assert_allclose(memory.counts, [expected[gc_id] for gc_id in trained], rtol=1e-12)
    run_epochs(tmp_path / "c", embedded_scores, 3, ScheduleConfig(**{**CONFIG.to_dict(), "seed": 6}))
    assert snapshot(tmp_path / "c")["epoch-0001.parquet"] != snapshot(tmp_path / "a")["epoch-0001.parquet"]


@pytest.mark.determinism
def test_a_step_killed_before_its_commit_is_redone_identically(embedded_scores, tmp_path):
    run_dir = tmp_path / "run"
    run_epochs(run_dir, embedded_scores, 1)
    committed = (run_dir / "state.json").read_bytes()
    feedback = write_feedback(tmp_path / "fb.jsonl", load_run(run_dir).schedule.subset_ids, samples=4, seed=9)
    Run.open(run_dir).step(feedback=feedback)
    finished = snapshot(run_dir)
    (run_dir / "state.json").write_bytes(committed)  # killed after writing epoch 2, before state.json
    Run.open(run_dir).step(feedback=feedback)
    assert snapshot(run_dir) == finished


def test_epoch_zero_is_uniform_without_a_reference(embedded_scores, tmp_path):
    init_run(tmp_path / "run", embedded_scores, CONFIG)
    Run.open(tmp_path / "run").step()
    positions = load_run(tmp_path / "run").schedule.positions
    expected = draw_without_replacement(np.zeros(60), 10, np.random.default_rng([CONFIG.seed, 0]))
    np.testing.assert_array_equal(positions, expected)


def test_a_reference_file_aims_epoch_zero(embedded_scores, tmp_path):
    reference = write_feedback(tmp_path / "reference.jsonl", range(0, 60, 2), samples=8, seed=1)
    config = ScheduleConfig(**{**CONFIG.to_dict(), "reference": str(reference), "tau": 1e-3})
    init_run(tmp_path / "run", embedded_scores, config)
    Run.open(tmp_path / "run").step()
    run = load_run(tmp_path / "run")
    strategy = dots_strategy(_scores(embedded_scores), config, initial=False)  # the reference lives in the state
    distance = np.abs(strategy.pass_rates(run.schedule) - 0.5)
    chosen = run.schedule.subset_ids
    # tau = 1e-3 makes the draw all but greedy: the ten prompts nearest the target, up to near-ties.
    assert distance[chosen].max() <= np.sort(distance)[9] + 0.02
    assert PassRates.from_json(run.schedule.memory["pass_rates"]).last.tolist() == [-1] * 30


def _scores(directory: Path):
    from gaincurate.schedule.run.inputs import load_scores

    return load_scores(directory)


def dots_strategy(scores, config: ScheduleConfig, *, initial: bool) -> DotsStrategy:
    """The run's strategy built from its scores table; `initial`: read the --reference file (a run's start)."""
    inputs = StrategyInputs(
        prompts=scores.prompts, subset_size=config.subset_count(len(scores.prompts)), seed=config.seed,
        scores=scores, initial=initial,
    )  # fmt: skip
    return DotsStrategy.build(inputs, config.options)


def test_scores_without_embeddings_give_one_line_and_write_nothing(tmp_path):
    scores = write_embedded_scores(tmp_path / "plain", embed=False)
    with pytest.raises(InputError, match=r"gaincurate score --embed") as caught:
        init_run(tmp_path / "run", scores, CONFIG)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()
    partial = write_embedded_scores(tmp_path / "partial", missing_ids=(7,))
    with pytest.raises(InputError, match=r"gc_id 7.*gaincurate score --embed"):
        init_run(tmp_path / "run", partial, CONFIG)


def test_in_process_scheduler_needs_the_strategy_and_per_rollout_feedback(embedded_scores):
    from gaincurate.schedule.core import Scheduler
    from gaincurate.schedule.feedback import Feedback

    scores = _scores(embedded_scores)
    with pytest.raises(ValueError, match="needs the scores table's embeddings"):
        Scheduler(CONFIG, scores.prompts)
    strategy = dots_strategy(scores, CONFIG, initial=True)
    np.testing.assert_array_equal(
        Scheduler(CONFIG, scores.prompts, strategy=strategy).step().plan.gc_ids,
        Scheduler(CONFIG, scores.prompts, scores=scores).step().plan.gc_ids,
    )  # a strategy built by hand draws what the scheduler's own does
    scheduler = Scheduler(CONFIG, scores.prompts, scores=scores)
    first = scheduler.step().plan
    with pytest.raises(ValueError, match="per-rollout feedback"):
        scheduler.step(feedback=Feedback.from_accuracy(0.5))
    records = [{"gc_id": int(i), "reward": float(i % 2)} for i in first.gc_ids for _ in range(2)]
    step = scheduler.step(feedback=records)
    assert step.plan.epoch == 1
    memory = PassRates.from_json(scheduler.state.memory["pass_rates"])
    np.testing.assert_array_equal(memory.gc_ids, first.gc_ids)
    np.testing.assert_array_equal(memory.rates, first.gc_ids % 2)


def calibrate(scores, feedback, out):
    from gaincurate.lab.difficulty.fit import FitConfig
    from gaincurate.lab.difficulty.jobs import fit_scores

    more = write_feedback(out.parent / "more.jsonl", list(range(0, 60, 3)), samples=4)
    fit_scores(scores, [feedback, more], out, config=FitConfig(dim=4, steps=5, folds=2, tau=0.3))


def test_schedule_cli_takes_the_dots_options(embedded_scores, tmp_path, monkeypatch, capsys):
    from gaincurate.cli import main

    reference = write_feedback(tmp_path / "reference.jsonl", [1, 2, 3], samples=2)
    args = [
        "gaincurate",
        "schedule",
        "init",
        "--scores",
        str(embedded_scores),
        "--run",
        str(tmp_path / "run"),
        "--strategy",
        "dots",
        "--subset-size",
        "5",
        "--target",
        "0.4",
        "--tau",
        "0.01",
        "--tau-attn",
        "0.3",
        "--forget",
        "0.5",
        "--reference",
        str(reference),
        "--reference-every",
        "3",
        "--reference-size",
        "7",
        "--calibrator",
        "cal.npz",
    ]
    calibrate(embedded_scores, reference, tmp_path / "cal.npz")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", args)
    main()
    config = load_run(tmp_path / "run").config
    options = config.options
    assert config.strategy == "dots"
    assert (options.target, options.tau, options.tau_attn, options.forget) == (0.4, 0.01, 0.3, 0.5)
    assert options.reference == str(reference)
    assert (options.reference_every, options.reference_size) == (3, 7)
    assert options.calibrator == str(tmp_path / "cal.npz")  # stored absolute: it is read at every step
    assert "dots" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["gaincurate", "schedule", "step", "--run", str(tmp_path / "run")])
    main()
    assert "epoch 0: 5 prompts by dots ->" in capsys.readouterr().out  # not "around mu": dots does not draw by it


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"target": 1.5}, "target"),
        ({"tau": 0.0}, "tau"),
        ({"tau_attn": -1.0}, "tau_attn"),
        ({"forget": 0.0}, "forget"),
        ({"strategy": "gain", "reference": "ref.jsonl"}, "reference"),
    ],
    ids=["target", "tau", "tau-attn", "forget", "reference-without-dots"],
)
def test_bad_dots_values_name_the_flag(options, flag):
    from gaincurate.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"^{flag}\b"):
        ScheduleConfig(**{"strategy": "gain", **{"strategy": "dots", **options}})


def test_the_console_script_refuses_a_zero_forget_in_one_line(tmp_path):
    """dots takes log(forget) of each measurement's age weight: 0 is refused before the run directory exists."""
    import subprocess

    scores, run = write_embedded_scores(tmp_path / "scores"), tmp_path / "run"
    command = [str(Path(sys.executable).with_name("gaincurate")), "schedule", "init", "--scores", str(scores),
               "--run", str(run), "--strategy", "dots", "--forget", "0"]  # fmt: skip
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and refused.stdout == "", refused
    assert refused.stderr.strip().splitlines() == ["gaincurate: error: --forget must be a number in (0, 1]; got 0.0"]
    assert not run.exists()


def test_decay_is_no_schedule_setting():
    """dots' weight per epoch of age is `forget`, as mopps' is: 0.x's `decay` is not read (one name per setting)."""
    from gaincurate.errors import ConfigError

    with pytest.raises(ConfigError, match="decay"):
        ScheduleConfig(strategy="dots", decay=0.5)
