"""`pilot` in TRL in process keeps its pilot completions in the trained group: r pilot + n - r fresh per prompt.

A stock GRPOTrainer (CurriculumGRPOTrainer) on the tiny random Llama, groups of 4, pilots of 2: each committed
prompt's group is 2 completions the trainer generates and the 2 its pilot sampled, weighted by pi_old / mu.
The answer check is the completion's length parity, so that the random model gets some rollouts right.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import Counter, defaultdict

import pytest

pytest.importorskip("trl")

from test_trl_screen import RecordingScreener
from trl_helpers import grpo_settings, score_prompts

from gaincurate.integrations.trl import GainCurriculum
from gaincurate.integrations.trl.rewards import REUSED_COLUMN
from gaincurate.lab.strategies import pilot_reuse as trl_reuse
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.schedule import ScheduleConfig

GROUP, ROLLOUTS, SUBSET, PROMPTS_PER_STEP, EPOCHS = 4, 2, 4, 2, 2  # n, r, m; 2 optimizer steps an epoch
CONFIG = ScheduleConfig(strategy="pilot", subset_size=SUBSET, pilot_factor=2, pilot_rollouts=ROLLOUTS, seed=3)


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory):
    return score_prompts(tiny_llama, tmp_path_factory.mktemp("trl-reuse") / "scores")


class SeenRewards:
    """The reward function: token-sum parity; keeps every row it scored (epoch, gc_id, completion ids, reused)."""

    __name__ = "parity"

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, tuple[int, ...], bool]] = []

    def __call__(self, completion_ids, gc_id, trainer_state, **kwargs):
        reused = kwargs.get(REUSED_COLUMN) or [False] * len(gc_id)
        epoch = int(trainer_state.epoch + 1e-6)
        self.rows += [(epoch, int(g), tuple(c), bool(r)) for g, c, r in zip(gc_id, completion_ids, reused, strict=True)]
        return [float(sum(c) % 2) for c in completion_ids]  # varied rewards, so the policy moves


def policy_logps64(trainer, inputs):
    """Per-token log-probs of the trainer's policy on the batch's completions, in float64, as TRL's loss takes them."""
    import torch

    model = copy.deepcopy(trainer.model).double()
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    width = inputs["completion_ids"].size(1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -width - 1 : -1] / trainer.temperature
    logps = torch.log_softmax(logits, dim=-1)
    return logps.gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)


@pytest.fixture(scope="module")
def trained(scores, tiny_llama, tmp_path_factory):
    """Two epochs with the live pilot; what the trainer generated, scored, recorded and weighed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from gaincurate.integrations.trl import CurriculumGRPOTrainer
    from gaincurate.lab.strategies import screening as screeners
    from gaincurate.schedule.run.run import Run

    patch = pytest.MonkeyPatch()
    patch.setattr(AnswerChecker, "__call__", lambda self, completion, answer: len(completion) % 2 == 0)
    real_screener, recorders = screeners.live_screener, []

    def recording_live_screener(*args, **kwargs):
        recorders.append(RecordingScreener(real_screener(*args, **kwargs)))
        return recorders[-1]

    patch.setattr(screeners, "live_screener", recording_live_screener)
    generated, recorded, weights = [], defaultdict(Counter), []
    real_generate = GRPOTrainer._generate_single_turn

    def counting_generate(self, prompt_ids, *args, **kwargs):
        generated.append((self.state.global_step, len(prompt_ids)))
        return real_generate(self, prompt_ids, *args, **kwargs)

    patch.setattr(GRPOTrainer, "_generate_single_turn", counting_generate)
    real_record = Run.record

    def counting_record(self, gc_ids, rewards):
        recorded[self.epoch].update(int(g) for g in gc_ids)
        return real_record(self, gc_ids, rewards)

    patch.setattr(Run, "record", counting_record)
    real_fold = trl_reuse.fold_replay_weights
    trainer_box = []

    def spying_fold(old, behaviour, advantages, mask, cap):
        folded = real_fold(old, behaviour, advantages, mask, cap)
        reused = (old != behaviour).any(dim=1)  # rows whose mu is the pilot's
        step = trainer_box[0].state.global_step
        weights.append((step, folded.log_weight[reused].double(), mask[reused].bool()))
        return folded

    patch.setattr(trl_reuse, "fold_replay_weights", spying_fold)
    real_fold_pilot, brute = trl_reuse.PilotReuseMixin._fold_pilot_weights, []

    def checking_fold(self, inputs, logps):
        """pi_old / mu by brute force: the policy as it stands, in float64, on the batch's own rows."""
        reused, mu = inputs[trl_reuse.REUSED_KEY].clone(), inputs[trl_reuse.BEHAVIOUR_KEY].double()
        expected = policy_logps64(self, inputs) - mu
        real_fold_pilot(self, inputs, logps)
        folded = inputs["old_per_token_logps"].double() - mu  # log of the weight folded in, after the cap
        tokens = inputs["completion_mask"].bool() & reused.unsqueeze(1)
        brute.append((folded[tokens], expected[tokens].clamp(max=math.log(trl_reuse.REUSE_IS_CAP))))

    patch.setattr(trl_reuse.PilotReuseMixin, "_fold_pilot_weights", checking_fold)
    try:
        seen = SeenRewards()
        curriculum = GainCurriculum(scores, CONFIG)
        settings = grpo_settings(tmp_path_factory.mktemp("trl-reuse-out"), num_train_epochs=EPOCHS, save_strategy="no")
        settings |= {"num_generations": GROUP, "per_device_train_batch_size": PROMPTS_PER_STEP * GROUP}
        trainer = CurriculumGRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_llama), args=GRPOConfig(**settings),
            reward_funcs=[seen], processing_class=AutoTokenizer.from_pretrained(tiny_llama), curriculum=curriculum,
        )  # fmt: skip
        trainer_box.append(trainer)
        trainer.train()
    finally:
        patch.undo()
    (recorder,) = recorders
    return {"curriculum": curriculum, "trainer": trainer, "calls": recorder.calls, "seen": seen,
            "generated": generated, "recorded": recorded, "weights": weights, "brute": brute}  # fmt: skip


def test_the_trainer_generates_n_minus_r_rows_for_each_committed_prompt(trained):
    steps = EPOCHS * SUBSET // PROMPTS_PER_STEP
    # Every generation batch: 2 prompts, each GROUP - ROLLOUTS fresh rows; the other rows are the pilot's.
    assert trained["generated"] == [(step, PROMPTS_PER_STEP * (GROUP - ROLLOUTS)) for step in range(steps)]
    assert trained["trainer"]._pilot_store.fresh_rows == [PROMPTS_PER_STEP * (GROUP - ROLLOUTS)] * steps


def test_the_trained_group_holds_the_pilot_completions(trained):
    seen, history = trained["seen"], trained["curriculum"].history
    for line, (candidates, epoch, rollouts, screening) in zip(history, trained["calls"], strict=False):
        assert epoch == line["epoch"] and rollouts == ROLLOUTS and screening.completions is not None
        kept = dict(zip(candidates, screening.completions, strict=True))
        for gc_id in line["subset_ids"]:
            rows = [(ids, reused) for e, g, ids, reused in seen.rows if e == epoch and g == gc_id]
            assert len(rows) == GROUP  # one whole group scored
            assert sorted(ids for ids, reused in rows if reused) == sorted(map(tuple, kept[gc_id].completion_ids))
            assert sum(not reused for _, reused in rows) == GROUP - ROLLOUTS


def test_reused_rows_are_not_fed_back_twice(trained):
    history = trained["curriculum"].history
    for line in history:  # the pilot fed its r rollouts to the posterior; training adds only its fresh ones
        assert trained["recorded"][line["epoch"]] == {g: GROUP - ROLLOUTS for g in line["subset_ids"]}


def test_the_weight_is_one_until_the_policy_moves_and_then_it_is_not(trained):
    weights = trained["weights"]
    pilot_steps = {0, SUBSET // PROMPTS_PER_STEP}  # epoch 0's pilot at step 0, epoch 1's at the end of epoch 0
    same = [w[m] for step, w, m in weights if step in pilot_steps]
    later = [w[m] for step, w, m in weights if step not in pilot_steps]
    assert same and later
    # The pilot's mu and the loss forward's pi_old are the same weights: log(pi_old / mu) is rounding only.
    assert max(float(w.abs().max()) for w in same) < 1e-4
    # After an optimizer step with lr 1e-2 the policy moved: the weights are no longer 1.
    assert max(float(w.abs().max()) for w in later) > 1e-3


def test_the_weight_is_pi_old_over_mu_computed_in_float64(trained):
    """The weight folded into the loss is the policy at the loss over the pilot's mu, capped at 2."""
    assert trained["brute"] and any(len(folded) for folded, _ in trained["brute"])
    moved = 0.0
    for folded, expected in trained["brute"]:
        if folded.numel():
            assert (folded - expected).abs().max().item() < 1e-4
            moved = max(moved, expected.abs().max().item())
    assert moved > 1e-3  # among them, weights of a policy that had moved since its pilot


def test_a_trainer_that_cannot_weigh_them_trains_full_groups_with_one_warning(scores, tiny_llama, tmp_path, caplog):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from gaincurate.integrations.trl import CurriculumGRPOTrainer

    curriculum = GainCurriculum(scores, CONFIG)
    settings = grpo_settings(tmp_path, num_generations=GROUP, per_device_train_batch_size=PROMPTS_PER_STEP * GROUP)
    with caplog.at_level(logging.WARNING, logger="gaincurate.lab.strategies.pilot_reuse"):
        trainer = CurriculumGRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_llama), args=GRPOConfig(**settings, loss_type="sapo"),
            reward_funcs=[SeenRewards()], processing_class=AutoTokenizer.from_pretrained(tiny_llama),
            curriculum=curriculum,
        )  # fmt: skip
    assert not isinstance(trainer, trl_reuse.PilotReuseMixin)  # its class gains the mixin only when it reuses
    assert [r.message for r in caplog.records if "not reused" in r.message] and "loss_type='sapo'" in caplog.text
