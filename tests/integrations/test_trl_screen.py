"""`strategy="screen"` in process: a stock TRL GRPOTrainer trains on the prompts screening kept.

The live screener samples the trainer's own model (tests/helpers.py's tiny random Llama) as `gaincurate
rollout` does; its answer check is replaced by the completion's length parity so that the random model gets
some rollouts right. A custom `policy_measure=` replaces it altogether.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")

from trl_helpers import NUM_GENERATIONS, EpochRewards, grpo_settings, score_prompts

from gaincurate.integrations.trl import GainCurriculum
from gaincurate.lab.strategies.screening import Screening
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.schedule import ScheduleConfig
from gaincurate.schedule.run.rundir import read_history

SUBSET, FACTOR, ROLLOUTS = 4, 2, 2  # m, k, r
SCREENED = FACTOR * SUBSET
CONFIG = ScheduleConfig(strategy="screen", subset_size=SUBSET, screen_factor=FACTOR, screen_rollouts=ROLLOUTS, seed=3)
EPOCHS = 2


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory):
    return score_prompts(tiny_llama, tmp_path_factory.mktemp("trl-screen") / "scores")


def train(curriculum, model_dir, output_dir):
    """Two epochs of the stock GRPOTrainer on the tiny model; returns what the reward function saw."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    rewards = EpochRewards()
    rewards.__name__ = "parity"
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=GRPOConfig(**grpo_settings(output_dir, num_train_epochs=EPOCHS, save_strategy="no")),
        train_dataset=curriculum.train_dataset(),
        reward_funcs=curriculum.wrap_rewards([rewards]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[curriculum.callback],
    )
    curriculum.attach(trainer)
    assert curriculum.run.epoch == -1  # screen draws epoch 0 with the policy, at on_train_begin
    trainer.train()
    return rewards, trainer


class RecordingScreener:
    """Wraps a screener: keeps each call's (gc_ids, epoch, rollouts) and the Screening it returned."""

    def __init__(self, screener):
        self.screener = screener
        self.calls: list[tuple[list[int], int, int, Screening]] = []

    def __call__(self, gc_ids, epoch, rollouts):
        screening = self.screener(gc_ids, epoch, rollouts)
        self.calls.append(([int(g) for g in gc_ids], int(epoch), int(rollouts), screening))
        return screening


def check_kept(candidates: list[int], screening: Screening, chosen: list[int]) -> None:
    """`chosen` is m of the candidates: in band (0 < p < 1) first, then nearest 0.5 (ties go by the draw)."""
    assert len(chosen) == SUBSET and set(chosen) <= set(candidates)
    rates = dict(zip(candidates, screening.rates.tolist(), strict=True))

    def key(gc_id: int) -> tuple[bool, float]:
        return (not 0 < rates[gc_id] < 1, abs(rates[gc_id] - 0.5))

    assert max(key(g) for g in chosen) <= min(key(g) for g in set(candidates) - set(chosen))


def check_epochs(history, rewards, calls, plan_ids) -> None:
    """One screening per epoch drawn (the trained ones and the next); each trained epoch is its screen's choice."""
    assert [line["epoch"] for line in history] == list(range(EPOCHS))
    assert [(epoch, rollouts, len(ids)) for ids, epoch, rollouts, _ in calls] == [
        (epoch, ROLLOUTS, SCREENED) for epoch in range(EPOCHS + 1)
    ]
    for line, (candidates, _, _, screening) in zip(history, calls, strict=False):
        assert rewards.ids(line["epoch"]) == {g: NUM_GENERATIONS for g in line["subset_ids"]}
        check_kept(candidates, screening, line["subset_ids"])
        selection = line["selection"]
        assert selection["screened"] == SCREENED and selection["screen_rollouts"] == SCREENED * ROLLOUTS
        assert selection["screen_tokens"] == screening.tokens
        assert selection["in_band"] == int(np.sum((screening.rates > 0) & (screening.rates < 1)))
        assert selection["screened_pass_rate"] == pytest.approx(float(screening.rates.mean()))
    check_kept(calls[EPOCHS][0], calls[EPOCHS][3], plan_ids)  # the next epoch, drawn and waiting


def test_grpo_trains_the_prompts_the_live_model_screened(scores, tiny_llama, tmp_path, monkeypatch):
    from gaincurate.lab.strategies import screening as screeners

    monkeypatch.setattr(AnswerChecker, "__call__", lambda self, completion, answer: len(completion) % 2 == 0)
    real, made = screeners.live_screener, []

    def recording_live_screener(scores_dir, model, tokenizer, *, seed, keep=None):
        assert keep is None  # screen keeps no completions
        made.append((model, seed))
        recorder = RecordingScreener(real(scores_dir, model, tokenizer, seed=seed))
        made.append(recorder)
        return recorder

    monkeypatch.setattr(screeners, "live_screener", recording_live_screener)
    curriculum = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "run")
    rewards, trainer = train(curriculum, tiny_llama, tmp_path / "out")
    (model, seed), recorder = made
    assert model is trainer.model and seed == CONFIG.seed
    history = read_history(tmp_path / "run")
    assert curriculum.history == history
    check_epochs(history, rewards, recorder.calls, curriculum.run.plan.gc_ids.tolist())
    assert all(line["selection"]["screen_tokens"] > 0 for line in history)
    # Every rollout of the epoch's screening is one completion of r per candidate.
    assert all(np.array_equal(s.counts, np.full(SCREENED, ROLLOUTS)) for *_, s in recorder.calls)
    spent = curriculum.run.scheduler.policy.spent
    assert spent.rollouts == (EPOCHS + 1) * SCREENED * ROLLOUTS


def fixed_rates(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
    """Made-up but deterministic pass rates: a third all wrong or all right, the rest spread inside (0, 1)."""
    gc_ids = np.asarray(gc_ids, dtype=np.int64)
    rates = 0.5 + 0.45 * np.sin(gc_ids + 3.0 * epoch)
    rates[gc_ids % 3 == 0] = (gc_ids[gc_ids % 3 == 0] % 2).astype(np.float64)
    return Screening(rates * rollouts, np.full(len(gc_ids), rollouts), tokens=7)


def test_a_custom_screener_decides_each_epoch(scores, tiny_llama, tmp_path, monkeypatch):
    from gaincurate.lab.strategies import screening as screeners

    def no_live_screener(*args, **kwargs):
        raise AssertionError("a given screener replaces the live one")

    monkeypatch.setattr(screeners, "live_screener", no_live_screener)
    recorder = RecordingScreener(fixed_rates)
    curriculum = GainCurriculum(scores, CONFIG, policy_measure=recorder)  # no run directory: kept in memory
    rewards, _ = train(curriculum, tiny_llama, tmp_path / "out")
    history = curriculum.history
    check_epochs(history, rewards, recorder.calls, curriculum.run.plan.gc_ids.tolist())
    for line, (candidates, _, _, screening) in zip(history, recorder.calls, strict=False):
        # The in-band candidates nearest 0.5, exactly: these made-up rates have no ties among them.
        rates = dict(zip(candidates, screening.rates.tolist(), strict=True))
        inside = sorted((g for g in candidates if 0 < rates[g] < 1), key=lambda g: abs(rates[g] - 0.5))
        assert len(inside) >= SUBSET
        assert sorted(line["subset_ids"]) == sorted(inside[:SUBSET])
        assert line["selection"]["screen_tokens"] == 7
        assert line["selection"]["chosen_pass_rate"] == pytest.approx(np.mean([rates[g] for g in inside[:SUBSET]]))


def test_a_screener_for_another_strategy_is_refused(scores):
    from gaincurate.errors import ConfigError

    with pytest.raises(ConfigError, match="policy_measure= replaces the policy measurement"):
        GainCurriculum(scores, ScheduleConfig(strategy="uniform", subset_size=4), policy_measure=fixed_rates)
