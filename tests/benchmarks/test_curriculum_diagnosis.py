"""The pool instrument (`measure_pool`) and the oracle-nonzero arm: issue 38's diagnosis, on the tiny bench."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from gaincurate.lab.benchmarks.curriculum import run_bench
from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED
from gaincurate.lab.benchmarks.curriculum.diagnosis import epoch_diagnosis, informative_auc, pearson_r, ranks
from gaincurate.lab.benchmarks.curriculum.oracle import OracleDrawnStrategy, OracleNonzeroStrategy, informative_uniform
from gaincurate.lab.benchmarks.curriculum.report import publish, report

ARMS = ["dots", "oracle-nonzero"]


@pytest.fixture(scope="module")
def on_and_off(tmp_path_factory):
    """The same arms at smoke size, the instrument off and on."""
    smoke = BUNDLED["cpu-arith"].smoke()
    outs = {}
    for measure in (False, True):
        out = tmp_path_factory.mktemp("diagnosis") / f"measure-{measure}"
        run_bench(dataclasses.replace(smoke, measure_pool=measure), out, strategies=ARMS)
        outs[measure] = out
    return outs


def _pair(out: Path, arm: str) -> dict:
    return json.loads((out / "pairs" / f"{arm}-seed0.json").read_text())


def test_the_instrument_changes_no_draw_of_training_and_is_never_charged(on_and_off):
    off, on = on_and_off[False], on_and_off[True]
    for arm in ARMS:
        before, after = _pair(off, arm), _pair(on, arm)
        # The same points (rollouts, tokens, accuracies, zero-variance shares) and the same epochs' readouts: the
        # arm trained on the same prompts and drew the same completions; only the seconds may differ.
        drop = [{k: v for k, v in p.items() if k != "seconds"} for p in before["points"]]
        assert drop == [{k: v for k, v in p.items() if k != "seconds"} for p in after["points"]]
        assert before["epochs"] == after["epochs"]
        assert before["pool_epochs"] is None and [e["epoch"] for e in after["pool_epochs"]] == [0, 1, 2]
        # Reported apart, never charged: its rollouts are in costs only, its seconds off the clock.
        costs = after["costs"]
        pool = len(after["pool_epochs"]) * 32 * BUNDLED["cpu-arith"].smoke().oracle_rollouts
        assert costs["pool_measure_rollouts"] == pool and "pool_measure_rollouts" not in before["costs"]
        assert costs["pool_measure_seconds"] > 0.0 and costs["pool_measure_tokens"] > 0
    # A run directory's history (the epoch's positions and the feedback's digest) is byte for byte the same.
    strip = [{k: v for k, v in json.loads(line).items() if k != "timings"} for line in
             (off / "runs" / "dots-seed0" / "history.jsonl").read_text().splitlines()]  # fmt: skip
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "timings"} for line in
                     (on / "runs" / "dots-seed0" / "history.jsonl").read_text().splitlines()]  # fmt: skip
    assert not (off / "diagnosis.jsonl").exists()


def test_diagnosis_lines_the_table_and_the_report_re_derive_them(on_and_off, tmp_path):
    on = on_and_off[True]
    lines = [json.loads(line) for line in (on / "diagnosis.jsonl").read_text().splitlines()]
    assert {(line["strategy"], line["epoch"]) for line in lines} == {(a, e) for a in ARMS for e in (0, 1, 2)}
    for line in lines:
        assert 0.0 <= line["pool_informative"] <= 1.0 and 0.0 <= line["trained_pass_rate"] <= 1.0
        # Off the chain task: the answer's likelihood, the angle score (stored, in parts, re-scored live) and the
        # embedding re-computed live (alone and beside the stored one)
        assert set(line["candidates"]) == {"embedding", "answer", "angle", "angle-parts", "angle-live",
                                           "embedding-live", "embedding-both"}  # fmt: skip
    # The zero-variance share is the savings readout's for the trained epochs; the draw after the last step has none.
    readout = {e["epoch"]: e["readout"]["zero_variance"] for e in _pair(on, "dots")["epochs"]}
    assert {line["epoch"]: line["zero_variance"] for line in lines if line["strategy"] == "dots"} == {
        **readout,
        2: None,
    }
    summary = json.loads((on / "summary.json").read_text())
    assert set(summary["diagnosis"]) == set(ARMS)
    assert "Pool diagnosis" in (on / "table.md").read_text()
    folder = tmp_path / "results-pilot"
    publish(on, folder)
    assert (folder / "diagnosis.jsonl").read_bytes() == (on / "diagnosis.jsonl").read_bytes()
    again, table = report(folder)
    assert again["diagnosis"] == summary["diagnosis"] and "Pool diagnosis" in table


def test_the_live_scores_of_the_model_that_scored_the_pool_are_the_scores_folders(on_and_off):
    """Re-computed with the bench's initial model, the angle score and the embedding are the stored ones (the
    embedding stored in float16), and the model is left in the mode it was in."""
    from gaincurate.lab.benchmarks.curriculum.assets import prepare_assets
    from gaincurate.lab.benchmarks.curriculum.candidates import live_scores
    from gaincurate.lab.benchmarks.curriculum.harness import load_initial
    from gaincurate.shards import read_scores

    smoke = dataclasses.replace(BUNDLED["cpu-arith"].smoke(), measure_pool=True)
    assets = prepare_assets(smoke, on_and_off[True])
    model, tokenizer = load_initial(assets, smoke)
    table = read_scores(assets.scores_dir)
    ids = table.column("gc_id").to_pylist()[::-1]
    model.train()
    score, embedding = live_scores(assets.scores_dir, ids, model, tokenizer)
    assert model.training and embedding.shape == (len(ids), model.config.hidden_size)
    stored = np.stack(table.column("gc_embedding").to_pylist()[::-1]).astype(np.float32)
    np.testing.assert_allclose(embedding, stored, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(score, table.column("gc_score").to_numpy()[::-1], rtol=1e-5)


def test_an_embedding_in_the_embeddings_place_is_fitted_as_the_embedding_is():
    """The stored embedding under another name gives the embedding's figures exactly; one that carries the pass
    rate (a column of it among noise) tells the informative prompts apart better."""
    from gaincurate.lab.benchmarks.curriculum.candidates import EMBEDDING, candidate_figures

    rng = np.random.default_rng(7)
    true = np.clip(rng.beta(0.6, 0.6, 240), 0.01, 0.99)
    rates = rng.binomial(4, true) / 4.0
    embedding = rng.normal(size=(240, 8))
    telling = np.concatenate([embedding[:, :7], 3.0 * (true - 0.5)[:, None]], axis=1)
    figures = candidate_figures({}, embedding, rates, np.arange(0, 240, 4), 0.5, None,
                                {"same": embedding.copy(), "telling": telling})  # fmt: skip
    assert figures["same"] == figures[EMBEDDING]
    assert figures["telling"]["fit_auc"] > figures[EMBEDDING]["fit_auc"] + 0.1


def test_correlations_are_pearson_and_spearman_with_tied_ranks():
    assert ranks([0.5, 0.0, 0.5, 1.0]) == [2.5, 1.0, 2.5, 4.0]
    assert pearson_r([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == pytest.approx(1.0)
    assert pearson_r([0.0, 1.0, 2.0], [2.0, 1.0, 0.0]) == pytest.approx(-1.0)
    assert pearson_r([0.0, 1.0], [0.0, 1.0]) is None  # too few
    assert pearson_r([0.5, 0.5, 0.5], [0.0, 0.5, 1.0]) is None  # one side constant
    xs, ys = [0.1, 0.2, 0.3, 0.9], [0.0, 0.01, 0.02, 1.0]  # monotone, not linear: Spearman 1, Pearson below
    assert pearson_r(ranks(xs), ranks(ys)) == pytest.approx(1.0) and pearson_r(xs, ys) < 0.99
    figures = epoch_diagnosis(3, np.array([0.1, np.nan, 0.5, 0.9]), "est", np.array([0.0, 0.5, 0.5, 1.0]), [1, 2])
    assert figures["compared"] == 3 and figures["pearson"] == pytest.approx(pearson_r([0.1, 0.5, 0.9], [0, 0.5, 1]))
    assert (figures["trained_pass_rate"], figures["trained_informative"], figures["pool_informative"]) == (
        0.5,
        1.0,
        0.5,
    )
    # What a greedy aim would have drawn, and how well nearness to the target finds the informative prompts.
    assert informative_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert informative_auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5  # ties count half
    assert informative_auc([0.1, 0.2], [True, True]) is None
    aim = epoch_diagnosis(1, np.array([0.5, 0.45, 0.0, 1.0]), "est", np.array([0.5, 0.25, 1.0, 0.0]), [2, 3])
    assert (aim["aimed_pass_rate"], aim["aimed_informative"], aim["informative_auc"]) == (0.375, 1.0, 1.0)
    none = epoch_diagnosis(0, None, "no pass-rate estimate", np.array([0.0, 1.0, 0.5]), [0])
    assert none["pearson"] is None and none["spearman"] is None and none["compared"] == 0


def test_oracle_nonzero_draws_uniformly_among_the_informative_prompts():
    rates = np.array([0.0, 0.25, 1.0, 0.5, 0.0, 0.75, 1.0, 0.0])
    informative = {1, 3, 5}
    for seed in range(20):
        chosen = informative_uniform(rates, 2, np.random.default_rng(seed)).tolist()
        assert set(chosen) <= informative and chosen == sorted(chosen)
    seen = {tuple(informative_uniform(rates, 2, np.random.default_rng(s)).tolist()) for s in range(50)}
    assert len(seen) == 3  # every pair of the three is drawn
    # Fewer informative prompts than an epoch: all of them, then the rest uniformly; none at all: uniform over all.
    assert informative <= set(informative_uniform(rates, 5, np.random.default_rng(0)).tolist())
    assert len(set(informative_uniform(np.zeros(8), 4, np.random.default_rng(0)).tolist())) == 4

    class Context:
        gc_ids = np.arange(8)
        subset_size = 3

    class State:
        epoch = 0

    arm = OracleNonzeroStrategy(lambda ids, epoch: (rates, 5), target=0.5, rollouts=4)
    assert arm.choose(State, Context, np.random.default_rng(0)).positions.tolist() == [1, 3, 5]
    report = arm.report(State, Context, type("Drawn", (), {"info": {}})())
    assert report.band is None and report.estimates.tolist() == rates.tolist()


def test_oracle_drawn_draws_the_oracle_s_rates_exactly_as_probe_draws_its_estimates():
    """Epoch 0 uniform, then probe's uniform tenth and its Gumbel-top-k near the target: the positions
    `ProbeStrategy.choose` keeps first, given the same rates as its estimate and the same generator."""
    from gaincurate.schedule.state import ScheduleState
    from gaincurate.schedule.strategies.contract import RankingContext
    from gaincurate.schedule.strategies.probe import Estimate, ProbeOptions, ProbeStrategy

    rng = np.random.default_rng(3)
    rates, gc_ids = rng.integers(0, 9, size=300) / 8, np.arange(300) * 2
    context = RankingContext(gc_ids, np.zeros(300), 40)
    arm = OracleDrawnStrategy(lambda ids, epoch: (rates, 5), target=0.5, rollouts=8)
    probe = ProbeStrategy(gc_ids, rng.normal(size=(300, 4)).astype(np.float16), ProbeOptions())
    for epoch in (0, 1, 5):
        state = ScheduleState(epoch=epoch, ranking=gc_ids, scores=np.zeros(300))
        probe._last = (state, Estimate(rates, {}) if epoch else None)
        chosen = arm.choose(state, context, np.random.default_rng(epoch)).positions
        expected = probe.choose(state, context, np.random.default_rng(epoch)).order[:40]
        assert chosen.tolist() == sorted(expected.tolist()), epoch
        assert epoch == 0 or np.mean(np.abs(rates[chosen] - 0.5)) < np.mean(np.abs(rates - 0.5))


def test_an_angle_column_enters_the_fit_standardised_and_only_a_telling_one_helps():
    """A free column that carries the true pass rate (on an arbitrary scale, one value missing) helps the cross-fitted
    fit tell the informative prompts apart; a noise column, alone or as one of two, does not; the standardisation
    is the float64 brute force's."""
    from gaincurate.lab.benchmarks.curriculum.candidates import EMBEDDING, candidate_figures, standardised

    rng = np.random.default_rng(5)
    true = np.clip(rng.beta(0.6, 0.6, 240), 0.01, 0.99)
    rates = rng.binomial(4, true) / 4.0
    embedding = rng.normal(size=(240, 8))
    telling = 40.0 + 3.0 * true  # on the angle score's scale
    telling[7] = np.nan
    noise = rng.normal(1.4, 0.2, 240)
    columns = {"angle": telling, "angle-parts": np.stack([noise, rng.normal(size=240)], axis=1), "noise": noise}
    figures = candidate_figures({}, embedding, rates, np.arange(0, 240, 4), 0.5, columns)
    assert set(figures) == {EMBEDDING, "angle", "angle-parts", "noise"} and figures["angle-parts"]["spearman"] is None
    assert figures["angle"]["fit_auc"] > figures[EMBEDDING]["fit_auc"] + 0.15
    assert abs(figures["noise"]["fit_auc"] - figures[EMBEDDING]["fit_auc"]) < 0.1
    assert abs(figures["angle-parts"]["fit_auc"] - figures[EMBEDDING]["fit_auc"]) < 0.1

    finite = [float(v) for v in telling if np.isfinite(v)]
    mean = sum(finite) / len(finite)
    spread = (sum((v - mean) ** 2 for v in finite) / len(finite)) ** 0.5
    expected = [0.0 if not np.isfinite(v) else (float(v) - mean) / spread for v in telling]
    np.testing.assert_allclose(standardised(telling)[:, 0], expected, rtol=0, atol=1e-12)
    assert standardised(np.full(5, 3.0)).tolist() == [[0.0]] * 5


def test_each_candidate_feature_is_held_against_the_measured_rates_on_halves_it_was_not_fitted_on():
    """A likelihood that is the log of the true pass rate ranks the measured rates (4 samples each) and, in the
    probe's cross-fitted fit, tells the informative prompts apart far better than a random embedding alone; one
    that is noise does neither. A prompt's cross-fitted estimate never reads its own measured rate."""
    from gaincurate.lab.benchmarks.curriculum.candidates import EMBEDDING, candidate_figures, cross_fitted

    rng = np.random.default_rng(3)
    true = np.clip(rng.beta(0.6, 0.6, 240), 0.01, 0.99)
    rates = rng.binomial(4, true) / 4.0
    embedding = rng.normal(size=(240, 8))
    features = {"answer": np.log(true), "solution": rng.normal(-1.0, 0.3, 240)}
    figures = candidate_figures(features, embedding, rates, np.arange(0, 240, 4), 0.5)
    assert set(figures) == {EMBEDDING, "answer", "solution"} and figures[EMBEDDING]["spearman"] is None
    assert figures["answer"]["spearman"] > 0.7 and abs(figures["solution"]["spearman"]) < 0.2
    assert figures["answer"]["fit_auc"] > figures[EMBEDDING]["fit_auc"] + 0.15
    assert abs(figures["solution"]["fit_auc"] - 0.5) < 0.15
    moved = rates.copy()
    moved[0] = 1.0 - moved[0]  # an even prompt: it trains the odd half's fit, never its own estimate
    before, after = (cross_fitted(embedding, features["answer"], r) for r in (rates, moved))
    assert np.array_equal(before[0::2], after[0::2]) and not np.array_equal(before[1::2], after[1::2])
