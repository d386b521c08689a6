"""`strategy="pilot"` in process: a stock TRL GRPOTrainer trains on the candidates the live model's pilot committed.

The pilot samples the trainer's own model (tests/helpers.py's tiny random Llama) through screen's live screener, as
`gaincurate rollout` does; its answer check is replaced by the completion's length parity so that the random model
gets some rollouts right. Epoch 0 is piloted when training begins; each later epoch at the end of the one before,
with the model as it then stands, and those pilots are kept in the posterior.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")

from test_trl_screen import RecordingScreener, train
from trl_helpers import NUM_GENERATIONS, score_prompts

from gaincurate.integrations.trl import GainCurriculum
from gaincurate.lab.strategies.screening import spent
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.schedule import ScheduleConfig
from gaincurate.schedule.run.rundir import load_run, read_history

SUBSET, FACTOR, ROLLOUTS = 4, 2, 2  # m, k, r
PILOTED = FACTOR * SUBSET
CONFIG = ScheduleConfig(strategy="pilot", subset_size=SUBSET, pilot_factor=FACTOR, pilot_rollouts=ROLLOUTS, seed=3)
EPOCHS = 2  # test_trl_screen.train's


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory):
    return score_prompts(tiny_llama, tmp_path_factory.mktemp("trl-pilot") / "scores")


def test_grpo_trains_the_candidates_the_live_model_piloted(scores, tiny_llama, tmp_path, monkeypatch):
    from gaincurate.lab.strategies import screening as screeners

    monkeypatch.setattr(AnswerChecker, "__call__", lambda self, completion, answer: len(completion) % 2 == 0)
    real, made = screeners.live_screener, []

    def recording_live_screener(scores_dir, model, tokenizer, *, seed, **keep):
        made.append(model)
        recorder = RecordingScreener(real(scores_dir, model, tokenizer, seed=seed, **keep))
        made.append(recorder)
        return recorder

    monkeypatch.setattr(screeners, "live_screener", recording_live_screener)
    curriculum = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "run")
    rewards, trainer = train(curriculum, tiny_llama, tmp_path / "out")
    model, recorder = made
    assert model is trainer.model
    # attach() reuses the pilots too: each committed prompt's group of 2 is 1 fresh and 1 pilot completion.
    assert trainer._pilot_store.fresh_rows and set(trainer._pilot_store.fresh_rows) == {2}
    history = read_history(tmp_path / "run")
    assert curriculum.history == history and [line["epoch"] for line in history] == list(range(EPOCHS))
    # One pilot per epoch drawn (the trained ones and the next), k x m candidates, r rollouts each, in order.
    assert [(epoch, rollouts, len(ids)) for ids, epoch, rollouts, _ in recorder.calls] == [
        (epoch, ROLLOUTS, PILOTED) for epoch in range(EPOCHS + 1)
    ]
    for line, (candidates, _, _, screening) in zip(history, recorder.calls, strict=False):
        assert rewards.ids(line["epoch"]) == {g: NUM_GENERATIONS for g in line["subset_ids"]}  # whole groups scored
        chosen = line["subset_ids"]
        assert len(chosen) == SUBSET and set(chosen) <= set(candidates)
        # Committed: in the band (0 < p < 1) first, then nearest 0.5, against every candidate left out.
        key = {g: (not 0 < p < 1, abs(p - 0.5)) for g, p in zip(candidates, screening.rates.tolist(), strict=True)}
        assert max(key[g] for g in chosen) <= min(key[g] for g in set(candidates) - set(chosen))
        selection = line["selection"]
        assert selection["piloted"] == PILOTED and selection["pilot_rollouts"] == PILOTED * ROLLOUTS
        assert selection["pilot_tokens"] == screening.tokens > 0
    # Every pilot rollout is charged, and what the pilots measured is kept: every candidate has left the prior.
    assert spent(curriculum.run).rollouts == (EPOCHS + 1) * PILOTED * ROLLOUTS
    memory = load_run(tmp_path / "run").schedule.memory
    later = {g for ids, epoch, _, _ in recorder.calls if epoch > 0 for g in ids}
    assert later <= set(memory["posterior"]["gc_ids"])
    assert memory["pilot"]["epoch"] == EPOCHS and memory["pilot"]["gc_ids"] == recorder.calls[-1][0]
    assert np.array_equal(memory["pilot"]["sums"], recorder.calls[-1][3].sums)


def test_a_screener_of_your_own_is_taken_for_pilot(scores):
    def mine(gc_ids, epoch, rollouts):  # never called: nothing trains here
        raise AssertionError

    assert GainCurriculum(scores, CONFIG, policy_measure=mine).policy_measure is mine
