"""`probe`: pass rates predicted by a ridge across prompts (schedule/strategies/probe/__init__.py, difficulty/ridge.py).

The fit against a brute-force float64 solve; the penalty rule against its definition; the simulated improving policy
of tests/simulation.py, with and without the answer likelihood (given as the log of the true pass rate, what a
direct-answer task's likelihood is); the exploration share; resume and byte identity; its options' one-line errors.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from schedule_helpers import check_killed_step_resumes, drive_epochs, snapshot, without_timings
from simulation import ROLLOUTS, band, bundled_policy, simulate, write_scores, zero_variance_share
from test_predict import console, feedback_file
from test_recorded_runs import write_recorded_scores

from gaincurate.difficulty import ridge
from gaincurate.errors import ConfigError
from gaincurate.feedback_lines import append_rollouts
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Rescored, Scheduler
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.run.steps import open_run
from gaincurate.schedule.strategies.probe import FREE_COLUMNS, ProbeOptions, ProbeStrategy
from gaincurate.schedule.strategies.probe.features import project

SEEDS = (0, 1, 2)


# -- the ridge -------------------------------------------------------------------------------------------------


def brute_ridge(features, weights, labels, penalty) -> np.ndarray:
    """The same estimator in float64 by numpy's own solver: (X^T W X + diag(penalty) sum W) beta = X^T W y."""
    x = np.asarray(features, dtype=np.float64)
    gram = (x * weights[:, None]).T @ x + np.diag(penalty * weights.sum())
    return np.linalg.solve(gram, (x * weights[:, None]).T @ labels)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_fit_is_the_ridge_solved_in_float64(seed):
    rng = np.random.default_rng(seed)
    rows, width = 300, 17
    features = np.concatenate([np.ones((rows, 1)), rng.normal(size=(rows, width - 1))], axis=1).astype(np.float32)
    weights, labels = rng.uniform(0.1, 8, rows), rng.uniform(0, 1, rows)
    for strength in (1e-6, 0.1, 10.0):
        penalty = ridge.penalty_vector(width, free=3, strength=strength)
        beta = ridge.solve(ridge.normal_equations(features, weights, labels), penalty)
        expected = brute_ridge(features, weights, labels, penalty)
        assert np.allclose(beta, expected, rtol=1e-9, atol=1e-11)
        assert np.allclose(ridge.predict(features, beta), features.astype(np.float64) @ expected, atol=1e-10)


def test_normal_equations_in_blocks_are_the_whole_sum(monkeypatch):
    rng = np.random.default_rng(4)
    features, weights, labels = rng.normal(size=(50, 6)), rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    whole = ridge.normal_equations(features, weights, labels)
    monkeypatch.setattr(ridge, "ROW_BLOCK", 7)
    blocked = ridge.normal_equations(features, weights, labels)
    assert np.allclose(blocked.gram, whole.gram, rtol=1e-13) and np.allclose(blocked.moment, whole.moment, rtol=1e-13)
    assert np.array_equal(whole.gram, whole.gram.T)


def test_the_penalty_is_chosen_by_its_held_out_error_and_its_edge_is_flagged():
    rng = np.random.default_rng(9)
    rows = 400
    features = np.concatenate([np.ones((rows, 1)), rng.normal(size=(rows, 12))], axis=1)
    labels = np.clip(0.5 + 0.1 * features[:, 1] + rng.normal(0, 0.2, rows), 0, 1)
    weights, held_out = np.full(rows, 4.0), np.arange(rows) >= 300
    choice, whole = ridge.choose_strength(features, weights, labels, held_out, free=1)
    errors = []
    for strength in ridge.STRENGTHS:  # the definition, brute force
        beta = brute_ridge(features[~held_out], weights[~held_out], labels[~held_out],
                           ridge.penalty_vector(13, free=1, strength=strength))  # fmt: skip
        miss = np.clip(features[held_out] @ beta, 0, 1) - labels[held_out]
        errors.append(float(np.sum(weights[held_out] * miss**2)))
    assert choice.strength == ridge.STRENGTHS[int(np.argmin(errors))]
    assert np.allclose(choice.errors, errors, rtol=1e-8)
    assert choice.at_edge == (choice.strength in (ridge.STRENGTHS[0], ridge.STRENGTHS[-1]))
    assert ridge.choose_strength(features, weights, labels, np.zeros(rows, bool), free=1)[0] is None
    direct = ridge.normal_equations(features, weights, labels)  # the parts add up to the whole
    assert np.allclose(whole.gram, direct.gram, rtol=1e-12) and np.allclose(whole.moment, direct.moment, rtol=1e-12)


def test_a_wide_embedding_is_projected_exactly_whatever_the_summation_order():
    """Float16 values times signs sum exactly in float64: BLAS's product equals a sum in any order."""
    rng = np.random.default_rng(2)
    embeddings = rng.normal(size=(20, 4096)).astype(np.float16)
    projected = project(embeddings.astype(np.float32), 256)
    signs = np.random.default_rng(20_506).choice([-1.0, 0.0, 0.0, 1.0], size=(4096, 256))
    rows = embeddings.astype(np.float64)
    by_hand = np.array([[math.fsum(rows[i] * signs[:, k]) for k in range(3)] for i in range(3)])
    assert np.array_equal(projected[:3, :3], by_hand / math.sqrt(4096 / 2))
    assert project(embeddings[:, :200].astype(np.float32), 256).shape == (20, 200)  # narrow: as it is


def test_a_7b_sized_model_s_features_take_1_kib_per_measured_prompt_and_the_pool_s_estimates_none():
    """A 7B-sized model (Llama-2-7B's width and depth, built `from_config` on the meta device: no weights, no
    download) emits 4,096-wide hidden states at every scoring site, so its stored embedding is 4,096 wide. The fit
    keeps `width` float32 columns of each measured prompt, 1 KiB by default, plus the likelihood's two floats in its
    memory; the pool's estimates read the embedding a block at a time and never build the pool's features (a float32
    copy of this pool would take 64 MiB)."""
    import tracemalloc

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=4096, num_hidden_layers=32, intermediate_size=11008, num_attention_heads=32)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    layers = model.model.layers
    assert len(layers) == 32
    site_width = layers[-1].post_attention_layernorm.weight.shape[0]  # the scoring site: the last MLP's input
    embeddings = np.random.default_rng(0).standard_normal(size=(4096, site_width), dtype=np.float32).astype(np.float16)
    probe = ProbeStrategy(np.arange(4096), embeddings, ProbeOptions(likelihood=True))
    per_measured = probe.features.rows(np.arange(64)).nbytes / 64 + 2 * 8
    assert site_width == 4096 and per_measured <= 2048, per_measured
    beta = np.random.default_rng(1).normal(size=probe.features.width)
    tracemalloc.start()
    rates = probe.features.predict(beta)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rates.shape == (4096,) and peak < 32 * 2**20, peak


# -- following an improving policy ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    policy = bundled_policy()
    return root, policy, write_scores(root / "scores", policy)


@pytest.mark.parametrize("seed", SEEDS)
def test_it_follows_an_improving_policy_from_the_embedding_alone(world, seed):
    """Over epochs 5-19, with room for seed-to-seed spread (docs/strategies.md's simulation table)."""
    root, policy, scores = world
    result = simulate(scores, root / f"run-{seed}", policy, strategy="probe", seed=seed)
    measured = band(result)
    assert measured["distance_ratio"] < 0.8
    assert measured["fewer_extremes"] > 0.6
    figures = [line["selection"] for line in result.history[2:]]
    assert all(f["measured_groups"] > 0 and f["strength"] in ridge.STRENGTHS for f in figures)


def improving_feedback(policy, gc_ids, epoch: int) -> list[dict]:
    """One epoch of the simulated policy's rollouts of `gc_ids`, as feedback records."""
    rewards = policy.rollouts(gc_ids, epoch)
    return [{"gc_id": int(g), "reward": float(r)} for g, row in zip(gc_ids, rewards, strict=True) for r in row]


def drive_with_likelihood(
    scores: Path, policy, *, seed: int, epochs: int = 20, uniform_share: float | None = None, **settings
):
    """The scheduler fed, after each epoch, the log of every prompt's true pass rate at the next epoch as the
    answer likelihood: what a direct-answer task's likelihood is (docs/strategies.md, "probe")."""
    share = ProbeOptions().uniform_share if uniform_share is None else uniform_share
    config = ScheduleConfig(
        strategy="probe", subset_size=128, seed=seed, likelihood=True, uniform_share=share, **settings
    )
    table = load_scores(scores)
    scheduler = Scheduler(config, table.prompts, scores=table)
    plan = scheduler.step().plan
    selected, records = [plan.gc_ids], []
    for epoch in range(epochs - 1):
        feedback = improving_feedback(policy, plan.gc_ids, epoch)
        ids = scheduler.rescore_ids(feedback)
        logps = np.log(policy.pass_rates(epoch + 1)[ids])
        step = scheduler.step(feedback=feedback, rescored=Rescored(ids, None, logps))
        plan = step.plan
        selected.append(plan.gc_ids)
        records.append(step.record)
    return selected, records


def test_each_draw_the_answer_likelihood_cannot_shape_says_so_and_the_refresh_measures_what_the_next_can_use(world):
    """The fit learns the likelihood's weight only from rollout groups whose prompt had one measured before its epoch:
    after epoch 0 none has, so the refresh measures exactly the prompts of the next draw (which cannot depend on it),
    and that draw says the likelihood did not shape it; from then on every group carries one, the refresh measures
    its budget and the draws stop saying it."""
    _, policy, scores = world
    config = ScheduleConfig(strategy="probe", subset_size=128, seed=0, likelihood=True)
    table = load_scores(scores)
    scheduler = Scheduler(config, table.prompts, scores=table)
    plan, notes, asked = scheduler.step().plan, [], []
    for epoch in range(3):
        feedback = improving_feedback(policy, plan.gc_ids, epoch)
        ids = scheduler.rescore_ids(feedback)
        asked.append(ids)
        logps = np.log(policy.pass_rates(epoch + 1)[ids])
        plan = scheduler.step(feedback=feedback, rescored=Rescored(ids, None, logps)).plan
        notes.append(scheduler.reported.note)
        if epoch == 0:
            assert ids.tolist() == sorted(plan.gc_ids.tolist())
    assert notes[0] == (
        "the answer likelihood did not shape epoch 1's draw: none of the 128 rollout groups it fits had its prompt's "
        "likelihood measured before that epoch (128 prompts measured so far); this draw's prompts are measured with "
        "the model that trains them, for the next fit"
    )
    assert notes[1:] == [None, None] and [len(ids) for ids in asked[1:]] == [320] * 2  # the pool: less than the budget
    figures = scheduler.reported.figures
    assert figures["likelihood_groups"] >= 128 and figures["likelihood_weighed"]


def test_while_every_reward_is_the_same_nothing_is_measured_and_a_measurement_would_change_no_draw(world):
    """Every rollout wrong, as in a pilot whose completions are cut short: no fit can weigh the likelihood, so the
    refresh measures nothing and each draw says why; a run fed the whole budget's likelihoods after every epoch (what
    the refresh measured before) draws exactly the same epochs."""
    _, _, scores = world
    table = load_scores(scores)
    config = ScheduleConfig(strategy="probe", subset_size=64, seed=0, likelihood=True)
    lean, fed = (Scheduler(config, table.prompts, scores=table) for _ in range(2))
    plans, notes = [(lean.step().plan, fed.step().plan)], []
    for _ in range(3):
        feedback = [{"gc_id": int(g), "reward": 0.0} for g in plans[-1][0].gc_ids for _ in range(4)]
        assert lean.rescore_ids(feedback) is None
        ahead = fed.rescore_ids()
        assert ahead is not None and len(ahead) == 3 * 64
        step = fed.step(feedback=feedback, rescored=Rescored(ahead, None, -np.arange(len(ahead)) / 10))
        plans.append((lean.step(feedback=feedback).plan, step.plan))
        notes.append(lean.reported.note)
    assert all(a.gc_ids.tolist() == b.gc_ids.tolist() for a, b in plans)
    assert fed.reported.figures["likelihood_groups"] > 0 and fed.reported.figures["likelihood_weighed"] is False
    assert notes[0] == (
        "the answer likelihood did not shape epoch 1's draw: all 64 rollout groups it fits have the same mean reward, "
        "so nothing relates the likelihood to the reward; none is measured until the rewards differ"
    )
    assert "all 192 rollout groups" in notes[2]


def test_with_the_answer_likelihood_it_aims_as_well_as_the_true_pass_rates_allow(world):
    """Given the true pass rates as its likelihood feature, the estimate is nearly exact: over epochs 5-19 the 100
    prompts of each epoch nearest 0.5 (its aimed 90% and a few fewer) sit within 0.02 of the 100 nearest in the whole
    pool, and closer than the embedding alone aims."""
    root, policy, scores = world
    selected, records = drive_with_likelihood(scores, policy, seed=0)
    aimed, best = [], []
    for epoch in range(5, 20):
        rates = policy.pass_rates(epoch)
        aimed.append(np.sort(np.abs(rates[selected[epoch]] - 0.5))[:100].mean())
        best.append(np.sort(np.abs(rates - 0.5))[:100].mean())
    with_likelihood = float(np.mean(aimed))
    assert with_likelihood < float(np.mean(best)) + 0.02, (with_likelihood, np.mean(best))
    plain = simulate(scores, root / "plain", policy, strategy="probe", seed=0).selected
    from_embedding = np.mean([np.sort(np.abs(policy.pass_rates(e)[plain[e]] - 0.5))[:100].mean() for e in range(5, 20)])
    assert with_likelihood < from_embedding - 0.01, (with_likelihood, from_embedding)
    assert "likelihood" in records[-1].readout["estimate"]


def test_the_uniform_share_keeps_measuring_the_whole_pool(tmp_path):
    """However sure the estimates, a uniform slice of every epoch keeps the fit's labels covering the pool. Where the
    policy stands still (so the prompts near the target stay the same), half a share trains nearly every prompt
    within 20 epochs, and far more than none does."""
    policy = bundled_policy(rate=0.0)
    scores = write_scores(tmp_path / "scores", policy)
    distinct = {}
    for share in (0.0, 0.5):
        selected, _ = drive_with_likelihood(scores, policy, seed=1, uniform_share=share)
        distinct[share] = len(np.unique(np.concatenate(selected)))
    assert distinct[0.5] >= 0.95 * 320 and distinct[0.5] > distinct[0.0] + 30, distinct


def test_epoch_0_is_uniform_and_nothing_is_estimated_before_a_group_was_measured(world):
    root, policy, scores = world
    result = simulate(scores, root / "zero", policy, strategy="probe", seed=3, epochs=2)
    assert result.selections[0].picked is None
    assert result.history[0]["readout"]["estimate"] == "no estimate yet"


# -- on disk -------------------------------------------------------------------------------------------------------

CONFIG = ScheduleConfig(strategy="probe", subset_size=5, seed=3, likelihood=False)  # no model here to measure with


@pytest.mark.determinism
def test_seeded_runs_are_byte_identical_and_a_killed_step_resumes(tmp_path, monkeypatch):
    scores = write_recorded_scores(tmp_path / "scores")
    drive_epochs(tmp_path / "a", scores, 3, CONFIG, feedback_file)
    drive_epochs(tmp_path / "b", scores, 3, CONFIG, feedback_file)
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert {k: v for k, v in first.items() if k != "history.jsonl"} == {
        k: v for k, v in second.items() if k != "history.jsonl"
    }
    assert without_timings(rundir.read_history(tmp_path / "a")) == without_timings(rundir.read_history(tmp_path / "b"))
    state = json.loads((tmp_path / "a" / "state.json").read_text())
    assert set(state["memory"]) == {"groups", "likelihood"}
    assert len(state["memory"]["groups"]["gc_ids"]) == 15  # three epochs of five groups: it grows with what it measured
    history = check_killed_step_resumes(tmp_path / "resume", scores, CONFIG, feedback_file, monkeypatch)
    assert history[-1]["readout"]["estimate"] == "probe: ridge across prompts on the embedding"


def test_its_options_are_its_own():
    config = ScheduleConfig(strategy="probe", uniform_share=0.3, likelihood=True, answer_template="{{{answer}}}")
    assert config.options == ProbeOptions(uniform_share=0.3, likelihood=True, answer_template="{{{answer}}}")
    assert ScheduleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for options, message in [
        ({"uniform_share": 2}, r"uniform_share must be a number in \[0, 1\]"),
        ({"tau": 0}, "tau must be a positive number"),
        ({"likelihood": "yes"}, "likelihood is true or false"),
        ({"answer_template": "the answer"}, r"answer_template must be text holding \{answer\}"),
        # formatted with the answer alone at each measurement: another field or a lone brace is refused up front
        *(({"answer_template": t}, r"and no other \{field\}") for t in ("{answer} {x}", "{answer} {", "{answer}{0}")),
        ({"width": 0}, "width must be"),
        ({"refresh": 0}, "refresh must be a positive number"),
    ]:
        with pytest.raises(ConfigError, match=message) as error:
            ScheduleConfig(strategy="probe", **options)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("measured", [3, 7, 20, 57])
@pytest.mark.parametrize("logp", [-45.0, -2.0])
def test_equal_likelihoods_standardise_to_nothing_not_to_a_mark_of_the_measured(measured, logp):
    """Every measured prompt at one likelihood (all below the floor early on a hard task): the columns carry nothing,
    exactly 0 for every measured prompt as for the unmeasured ones, not +-1 from the rounding of their mean."""
    from gaincurate.schedule.strategies.probe import likelihood_scale

    pool = np.full(measured, logp)
    design = ProbeStrategy._likelihood_design(pool, likelihood_scale(pool))
    assert np.array_equal(design, np.zeros_like(design))


def test_only_the_likelihood_columns_and_the_intercept_go_unpenalised():
    assert FREE_COLUMNS == 3  # intercept, probability, log-probability: docs/strategies.md says so


def write_scores_without_answers(directory: Path) -> Path:
    from schedule_helpers import write_scores as write_toy_scores

    return write_toy_scores(directory, answer_column=None)


def test_the_console_script_runs_it_and_refuses_a_bad_option_in_one_line(tmp_path):
    scores = write_recorded_scores(tmp_path / "scores")
    run = tmp_path / "run"
    refused = console("schedule", "init", "--scores", scores, "--run", run, "--strategy", "probe",
                      "--uniform-share", "1.5")  # fmt: skip
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "gaincurate: error: --uniform-share must be a number in [0, 1]; got 1.5"
    ]
    assert not run.exists()
    unanswered = write_scores_without_answers(tmp_path / "unanswered")
    refused = console("schedule", "init", "--scores", unanswered, "--run", run, "--strategy", "probe", "--likelihood")
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
    assert "names no answer column" in refused.stderr and not run.exists()
    done = console("schedule", "init", "--scores", scores, "--run", run, "--strategy", "probe", "--likelihood",
                   "--subset-size", "4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert rundir.load_run(run).config.options.likelihood is True
    assert console("schedule", "step", "--run", run, "--quiet").returncode == 0
    ids = rundir.load_run(run).schedule.subset_ids
    feedback = tmp_path / "feedback.jsonl"
    rewards = [float(k <= i) for i in range(len(ids)) for k in range(ROLLOUTS)]  # mean rewards that differ
    append_rollouts(feedback, np.repeat(ids, ROLLOUTS).tolist(), rewards)
    stepped = console("schedule", "step", "--run", run, "--feedback", feedback)
    assert stepped.returncode == 0, stepped.stderr
    assert "not re-scored: no checkpoint was given" in stepped.stdout + stepped.stderr
    shown = console("schedule", "init", "--help").stdout
    assert "probe options" in shown and "--uniform-share" in shown and "--likelihood" in shown


def test_while_every_rollout_is_wrong_a_step_asks_for_no_model_and_says_why(tmp_path):
    """The new user's pilot whose completions are all wrong: `schedule step` without a checkpoint measures nothing,
    so it has nothing to miss, and says that the likelihood waits for rewards that differ."""
    scores, run = write_recorded_scores(tmp_path / "scores"), tmp_path / "run"
    init = ("schedule", "init", "--scores", scores, "--run", run, "--likelihood", "--subset-size", "4")
    assert console(*init).returncode == 0
    assert console("schedule", "step", "--run", run, "--quiet").returncode == 0
    for epoch in range(2):
        ids = rundir.load_run(run).schedule.subset_ids
        feedback = tmp_path / f"wrong-{epoch}.jsonl"
        append_rollouts(feedback, np.repeat(ids, ROLLOUTS).tolist(), [0.0] * (ROLLOUTS * len(ids)))
        stepped = console("schedule", "step", "--run", run, "--feedback", feedback)
        assert stepped.returncode == 0, stepped.stderr
        assert "not re-scored" not in stepped.stdout + stepped.stderr
        assert f"did not shape epoch {epoch + 1}'s draw: all {4 * (epoch + 1)} rollout groups" in stepped.stderr
        assert "none is measured until the rewards differ" in stepped.stderr


def test_the_likelihood_is_on_by_itself_where_every_prompt_has_an_answer_and_a_choice_overrides_it(tmp_path):
    """Resolved once at init from the scores and stored so; `--no-likelihood` turns it off, `--likelihood` on."""
    scores = write_recorded_scores(tmp_path / "scores")
    unanswered = Path(shutil.copytree(scores, tmp_path / "bare"))
    for directory, missing in [(scores, 0), (unanswered, 3)]:
        manifest = json.loads((directory / "manifest.json").read_text())  # what `gaincurate score` records
        (directory / "manifest.json").write_text(
            json.dumps(manifest | {"answers": {"column": "answer", "present": True, "missing": missing}})
        )
    for name, directory, flags, on, line in [
        ("answered", scores, [], True, "answer likelihood on (every prompt has an answer; --no-likelihood: off)"),
        ("bare", unanswered, [], False, "answer likelihood off: not every prompt has a reference answer"),
        ("off", scores, ["--no-likelihood"], False, None),
    ]:
        run = tmp_path / "runs" / name
        done = console("schedule", "init", "--scores", directory, "--run", run, "--subset-size", "4", *flags)
        assert done.returncode == 0, done.stderr
        assert rundir.load_run(run).config.options.likelihood is on
        assert json.loads((run / "state.json").read_text())["config"]["likelihood"] is on
        assert (line in done.stdout) if line else ("answer likelihood" not in done.stdout)
    assert ScheduleConfig().options.likelihood is None  # left to the scores until a run is built on them
    resumed = open_run(tmp_path / "runs" / "answered", scores, ScheduleConfig(subset_size=4), write=True)
    assert resumed.config.options.likelihood is True  # a Python caller's unset choice resolves as the stored one did


def test_where_each_prompt_is_all_right_or_all_wrong_the_likelihood_wastes_fewer_groups(tmp_path):
    """The all-or-nothing simulation (docs/strategies.md): embedding neighbours share a level, each member is mostly
    all right or all wrong. From the embedding the probe wastes about what dots does; with the likelihood, far less."""
    from simulation import ALL_OR_NOTHING_SPREAD

    policy = bundled_policy(member_spread=ALL_OR_NOTHING_SPREAD)
    scores = write_scores(tmp_path / "scores", policy)
    uniform = zero_variance_share(simulate(scores, tmp_path / "uniform", policy, strategy="uniform", seed=0))
    selected, records = drive_with_likelihood(scores, policy, seed=0)
    wasted = np.mean([record.readout["zero_variance"] for record in records[5:]])
    assert wasted < uniform - 0.2, (wasted, uniform)


def test_the_likelihood_keeps_the_zero_variance_filters_memory_beside_its_own(world):
    """probe --likelihood --skip-zero-variance: the fresh likelihoods and the filter's streaks live side by side in
    the memory (before the eight-member contract, folding the likelihood dropped the filter's keys and the next
    draw failed)."""
    root, policy, scores = world
    selected, records = drive_with_likelihood(scores, policy, seed=0, epochs=6, skip_zero_variance=True)
    assert len(selected) == 6 and all(len(gc_ids) == 128 for gc_ids in selected)
    assert all(record.selection["skipped"] >= 0 for record in records[1:])
    # The filter steps over the aim only: every aimed epoch keeps its uniform slice, so the readout has its control.
    assert all(record.readout["control_groups"] == 13 for record in records[1:])
