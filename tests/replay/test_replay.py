"""Rollout replay: the loss arithmetic, advantages, the buffer and its checkpoint file, the config (fast, CPU)."""

from __future__ import annotations

import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gaincurate.errors import ConfigError, InputError
from gaincurate.integrations.trl.replay import ReplayConfig
from gaincurate.integrations.trl.replay.batch import count_prompt_groups
from gaincurate.integrations.trl.replay.buffer import ReplayBuffer
from gaincurate.integrations.trl.replay.loss import (
    fold_replay_weights,
    group_advantages,
    group_has_signal,
    nanstd,
    replay_token_loss,
)

EPS_LOW, EPS_HIGH = 0.2, 0.28


def trl_clipped_token_loss(logps, old_logps, advantages, epsilon_low, epsilon_high):
    """TRL's token-level clipped loss (grpo_trainer.py `_compute_loss`, loss_type grpo/bnpo/dr_grpo/dapo)."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    coef_1 = torch.exp(logps - old_logps)
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    return -torch.min(coef_1 * advantages, coef_2 * advantages)


# -- the loss formula ------------------------------------------------------------------------------

# (pi_theta, pi_old, mu, A, cap, expected loss), worked by hand with eps_low = 0.2, eps_high = 0.28.
HAND_CASES = {
    # r = 1.8, r_old = 1.2: clip range [0.96, 1.536]; A > 0 takes the clipped 1.536.
    "above-range-positive-A": (0.9, 0.6, 0.5, 1.0, None, -1.536),
    # A < 0: min(-1.8, -1.536) = -1.8, the unclipped (pessimistic) term.
    "above-range-negative-A": (0.9, 0.6, 0.5, -1.0, None, 1.8),
    # The cap 1.1 replaces r_old = 1.2: range [0.88, 1.408].
    "above-range-capped": (0.9, 0.6, 0.5, 1.0, 1.1, -1.408),
    # r = 0.6 below r_old (1 - eps) = 0.96; A < 0 takes the clipped -0.96 * -1 -> loss 0.96.
    "below-range-negative-A": (0.3, 0.6, 0.5, -1.0, None, 0.96),
    # Inside the range nothing clips: loss = -r A = -1.1 * 2.
    "inside-range": (0.55, 0.6, 0.5, 2.0, None, -2.2),
    # Cap exactly at r_old changes nothing.
    "cap-equal-to-weight": (0.9, 0.6, 0.5, 1.0, 1.2, -1.536),
    # A fresh token (pi_old = mu): plain PPO clip at 1 + eps_high.
    "fresh-token": (0.9, 0.5, 0.5, 1.0, None, -1.28),
}


@pytest.mark.parametrize("case", list(HAND_CASES), ids=list(HAND_CASES))
def test_replay_token_loss_matches_hand_worked_values(case):
    pi_theta, pi_old, mu, advantage, cap, expected = HAND_CASES[case]
    log = lambda p: torch.tensor([[math.log(p)]], dtype=torch.float64)  # noqa: E731
    loss = replay_token_loss(
        log(pi_theta),
        log(pi_old),
        log(mu),
        torch.tensor([advantage], dtype=torch.float64),
        EPS_LOW,
        EPS_HIGH,
        cap,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("cap", [None, 1.0, 1.3, 3.0], ids=["cap-None", "cap-1.0", "cap-1.3", "cap-3.0"])
def test_folded_trl_loss_equals_replay_formula_values_and_gradients(cap):
    generator = torch.Generator().manual_seed(11)
    shape = (6, 9)
    behaviour = -torch.rand(shape, generator=generator, dtype=torch.float64) * 3 - 0.1
    # Weights pi_old / mu from 0.3 to 3, and current ratios spread over every clip region.
    old = behaviour + (torch.rand(shape, generator=generator, dtype=torch.float64) * 2.3 - 1.2)
    logps = (old + torch.randn(shape, generator=generator, dtype=torch.float64) * 0.4).requires_grad_()
    advantages = torch.randn(shape[0], generator=generator, dtype=torch.float64)
    mask = torch.ones(shape, dtype=torch.long)
    mask[2, 5:] = 0

    reference = replay_token_loss(logps, old, behaviour, advantages, EPS_LOW, EPS_HIGH, cap)
    folded = fold_replay_weights(old, behaviour, advantages, mask, cap)
    trl = trl_clipped_token_loss(logps, folded.old_logps, folded.advantages, EPS_LOW, EPS_HIGH)

    valid = mask.bool()
    torch.testing.assert_close(trl[valid], reference[valid], rtol=1e-12, atol=1e-12)
    (grad_reference,) = torch.autograd.grad((reference * mask).sum(), logps)
    (grad_trl,) = torch.autograd.grad((trl * mask).sum(), logps)
    torch.testing.assert_close(grad_trl, grad_reference, rtol=1e-12, atol=1e-12)
    # The edges are exercised: some tokens clipped, and (when capped) some weights truncated.
    ratio, weight = torch.exp(logps - behaviour), torch.exp(old - behaviour)
    if cap is not None:
        weight = weight.clamp(max=cap)
    clipped = (ratio > weight * (1 + EPS_HIGH)) | (ratio < weight * (1 - EPS_LOW))
    assert clipped[valid].any() and (~clipped[valid]).any()
    if cap is not None and cap < 3.0:
        assert folded.truncated.any() and (~folded.truncated[valid]).any()
    assert not folded.truncated[~valid].any()


def test_fresh_rows_fold_to_trl_inputs_bit_for_bit():
    generator = torch.Generator().manual_seed(3)
    old = -torch.rand(4, 7, generator=generator) * 4
    advantages = torch.randn(4, generator=generator)
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[1, 3:] = 0
    folded = fold_replay_weights(old, old.clone(), advantages, mask, cap=2.0)
    assert torch.equal(folded.old_logps, old)
    assert torch.equal(folded.advantages, advantages.unsqueeze(1).expand(4, 7))
    assert not folded.truncated.any()
    assert torch.equal(folded.log_weight, torch.zeros_like(old))


def test_padding_never_makes_inf_or_nan():
    old = torch.tensor([[-1.0, 0.0]])
    behaviour = torch.tensor([[-1.5, -200.0]])  # the padded position holds garbage
    folded = fold_replay_weights(old, behaviour, torch.tensor([1.0]), torch.tensor([[1, 0]]), cap=None)
    assert torch.isfinite(folded.old_logps).all() and torch.isfinite(folded.advantages).all()
    assert folded.advantages[0, 1] == 1.0


# -- advantages ------------------------------------------------------------------------------------


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0], [0.0], [0.0], [1.0], [2.0], [2.0], [2.0], [5.0]])
    weights = torch.ones(1)
    std_first = math.sqrt(1 / 3)  # Bessel-corrected std of (1, 0, 0, 1)
    group = group_advantages(rewards, weights, 4, "group")
    assert group[:4].tolist() == pytest.approx([x / (std_first + 1e-4) for x in (0.5, -0.5, -0.5, 0.5)])
    none = group_advantages(rewards, weights, 4, "none")
    assert none.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, -0.75, -0.75, -0.75, 2.25])
    batch = group_advantages(rewards, weights, 4, "batch")
    std_all = float(torch.tensor([1.0, 0, 0, 1, 2, 2, 2, 5]).std())
    assert batch.tolist() == pytest.approx([x / (std_all + 1e-4) for x in none.tolist()])


def test_group_advantages_weights_and_unscorable_rows():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [float("nan"), float("nan")], [1.0, float("nan")]])
    advantages = group_advantages(rewards, torch.tensor([2.0, 1.0]), 4, "none")
    # Weighted rewards 2, 1, NaN, 2: mean over the scorable ones is 5/3; the unscorable row gets 0.
    assert advantages.tolist() == pytest.approx([1 / 3, -2 / 3, 0.0, 1 / 3])


@pytest.mark.parametrize("dim", [None, 1], ids=["all", "dim-1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_nanstd_is_trls_bit_for_bit(dim, dtype):
    trl_utils = pytest.importorskip("trl.trainer.utils")
    values = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), dtype=dtype)
    values[0, 1] = values[2, :3] = values[3, :] = float("nan")  # groups with 3, 1 and 0 values left
    for keepdim in (False, True):
        ours, theirs = nanstd(values, dim=dim, keepdim=keepdim), trl_utils.nanstd(values, dim=dim, keepdim=keepdim)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert torch.equal(ours.nan_to_num(-7.0), theirs.nan_to_num(-7.0))


def test_group_has_signal():
    ones = torch.ones(1)
    assert not group_has_signal(torch.tensor([[1.0], [1.0], [1.0]]), ones, "sum_then_normalize")
    assert group_has_signal(torch.tensor([[1.0], [0.0], [1.0]]), ones, "sum_then_normalize")
    assert not group_has_signal(torch.tensor([[1.0], [float("nan")], [float("nan")]]), ones, "sum_then_normalize")
    # Two functions cancelling in the weighted sum: no signal summed, signal when normalized separately.
    cancelling = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert not group_has_signal(cancelling, torch.ones(2), "sum_then_normalize")
    assert group_has_signal(cancelling, torch.ones(2), "normalize_then_sum")


# -- storing groups from a fresh batch ---------------------------------------------------------------


def fresh_batch(rewards: list[list[float]], group_size: int = 4, width: int = 5):
    """A fake TRL output for len(rewards) // group_size groups, with its rewards and behaviour log-probs."""
    rows = len(rewards)
    generator = torch.Generator().manual_seed(rows)
    completion_mask = torch.ones(rows, width, dtype=torch.long)
    completion_mask[0, 3:] = 0
    prompt_mask = torch.ones(rows, 3, dtype=torch.long)
    prompt_mask[:group_size, 0] = 0  # the first group's prompt is one token shorter, left-padded
    fresh = {
        "prompt_ids": torch.randint(3, 60, (rows, 3), generator=generator),
        "prompt_mask": prompt_mask,
        "completion_ids": torch.randint(3, 60, (rows, width), generator=generator),
        "completion_mask": completion_mask,
    }
    for start in range(0, rows, group_size):
        fresh["prompt_ids"][start : start + group_size] = fresh["prompt_ids"][start]
    behaviour = -torch.rand(rows, width, generator=generator)
    return fresh, torch.tensor(rewards), behaviour


def fake_trainer(capacity: int = 8, group_size: int = 4, config: ReplayConfig | None = None):
    """Just the state ReplayMixin's storing methods read, around a real buffer (no model, no TRL trainer)."""
    pytest.importorskip("trl")
    from gaincurate.integrations.trl.replay.trainer import ReplayMixin

    trainer = SimpleNamespace(
        replay_config=config or ReplayConfig(),
        num_generations=group_size,
        reward_weights=torch.ones(1),
        multi_objective_aggregation="sum_then_normalize",
        replay_buffer=ReplayBuffer(capacity=capacity, seed=0),
        state=SimpleNamespace(global_step=7),
        replay_history=[],
        _pending_groups=[],
        _captured_logps={},
    )
    trainer.queue = lambda *a: ReplayMixin._queue_fresh_groups(trainer, *a)
    trainer.flush = lambda: ReplayMixin._flush_pending_groups(trainer)

    def store(*args):
        trainer.queue(*args)
        return trainer.flush()

    trainer.store = store
    return trainer


def test_zero_variance_groups_are_never_stored():
    trainer = fake_trainer()
    rewards = [[1.0], [1.0], [1.0], [1.0]] + [[0.0], [1.0], [0.0], [0.0]] + [[0.5]] * 4
    fresh, rewards, behaviour = fresh_batch(rewards)
    stored = trainer.store(fresh, rewards, behaviour, 3)
    assert [group.uid for group in stored] == [0]
    assert len(trainer.replay_buffer) == 1
    group = stored[0]
    assert group.step == 7
    assert torch.equal(group.rewards_per_func, rewards[4:8])
    assert torch.equal(group.prompt_ids, fresh["prompt_ids"][4])
    assert torch.equal(group.completion_ids, fresh["completion_ids"][4:8])
    assert torch.equal(group.behaviour_logps, behaviour[4:8])


def test_stored_group_drops_padding():
    trainer = fake_trainer()
    fresh, rewards, behaviour = fresh_batch([[0.0], [1.0], [1.0], [0.0]])
    fresh["completion_mask"][:, 3:] = 0  # every completion ended by token 3
    (group,) = trainer.store(fresh, rewards, behaviour, 1)
    assert group.prompt_ids.tolist() == fresh["prompt_ids"][0, 1:].tolist()
    assert group.completion_ids.shape == (4, 3)
    assert torch.equal(group.behaviour_logps, behaviour[:, :3])


def test_groups_wait_for_log_probs_from_the_loss_forward():
    trainer = fake_trainer()
    rewards = [[0.0], [1.0], [1.0], [0.0]] + [[1.0], [0.0], [0.0], [0.0]] + [[1.0], [0.0], [1.0], [1.0]]
    fresh, rewards, behaviour = fresh_batch(rewards)
    assert trainer.queue(fresh, rewards, None, 3) == list(range(12))
    assert len(trainer.replay_buffer) == 0
    for row in [*range(0, 4), *range(8, 12)]:  # the middle group's rows never reach the loss
        trainer._captured_logps[row] = behaviour[row]
    stored = trainer.flush()
    assert [group.uid for group in stored] == [0, 1]
    assert torch.equal(stored[0].behaviour_logps, behaviour[0:4])
    assert torch.equal(stored[1].rewards_per_func, rewards[8:12])
    assert trainer._pending_groups == [] and trainer._captured_logps == {}


def test_zero_variance_groups_are_stored_when_asked():
    trainer = fake_trainer(config=ReplayConfig(replay_skip_zero_variance=False))
    rewards = [[1.0], [1.0], [1.0], [1.0]] + [[0.0], [1.0], [0.0], [0.0]] + [[0.5]] * 4
    fresh, rewards, behaviour = fresh_batch(rewards)
    stored = trainer.store(fresh, rewards, behaviour, 3)
    assert [group.uid for group in stored] == [0, 1, 2]
    for group, start in zip(stored, (0, 4, 8), strict=True):
        assert torch.equal(group.rewards_per_func, rewards[start : start + 4])
        assert torch.equal(group.completion_ids, fresh["completion_ids"][start : start + 4].to(torch.int32))


def test_prompt_groups_must_be_consecutive_repeats():
    assert count_prompt_groups([{"prompt": "a"}, {"prompt": "a"}, {"prompt": "b"}, {"prompt": "b"}], 2) == 2
    with pytest.raises(ConfigError, match="mini_repeat_count"):
        count_prompt_groups([{"prompt": "a"}, {"prompt": "b"}, {"prompt": "a"}, {"prompt": "b"}], 2)
    with pytest.raises(ConfigError, match="not a multiple"):
        count_prompt_groups([{"prompt": "a"}, {"prompt": "a"}, {"prompt": "b"}], 2)


# -- buffer ----------------------------------------------------------------------------------------


def add_groups(buffer: ReplayBuffer, count: int, *, with_ref: bool = False, start_step: int = 0) -> None:
    for index in range(count):
        generator = torch.Generator().manual_seed(index)
        width = 2 + index % 3
        rewards = torch.rand(4, 2, generator=generator)
        rewards[1, 0] = float("nan")
        buffer.add(
            step=start_step + index,
            prompt_ids=torch.randint(3, 60, (1 + index % 4,), generator=generator),
            completion_ids=torch.randint(3, 60, (4, width), generator=generator),
            completion_mask=torch.ones(4, width, dtype=torch.long),
            behaviour_logps=-torch.rand(4, width, generator=generator),
            rewards_per_func=rewards,
            ref_logps=-torch.rand(4, width, generator=generator) if with_ref else None,
        )


def test_fifo_keeps_the_newest_capacity_groups():
    buffer = ReplayBuffer(capacity=4, seed=0)
    add_groups(buffer, 10)
    assert len(buffer) == 4
    assert [group.uid for group in buffer] == [6, 7, 8, 9]
    assert [group.step for group in buffer] == [6, 7, 8, 9]


def draw_sequence(seed: int, rounds: int = 20) -> list[list[int]]:
    buffer = ReplayBuffer(capacity=6, seed=seed)
    drawn = []
    for round_index in range(rounds):
        add_groups(buffer, 2, start_step=round_index)
        drawn.append([group.uid for group in buffer.draw(min(3, len(buffer)))])
    return drawn


def test_draws_are_seeded_reproducible_and_without_replacement():
    first, again, other = draw_sequence(seed=5), draw_sequence(seed=5), draw_sequence(seed=6)
    assert first == again
    assert first != other
    assert all(len(set(uids)) == len(uids) for uids in first)


def test_draws_are_uniform_over_the_buffer():
    buffer = ReplayBuffer(capacity=5, seed=0)
    add_groups(buffer, 5)
    counts = np.zeros(5)
    for _ in range(5000):
        for group in buffer.draw(2):
            counts[group.uid] += 1
    assert counts.sum() == 10000
    np.testing.assert_allclose(counts / 10000, 0.2, atol=0.015)


def test_draw_zero_uses_no_randomness_and_overdraw_raises():
    buffer, twin = ReplayBuffer(capacity=5, seed=1), ReplayBuffer(capacity=5, seed=1)
    add_groups(buffer, 5)
    add_groups(twin, 5)
    assert buffer.draw(0) == []
    assert [g.uid for g in buffer.draw(3)] == [g.uid for g in twin.draw(3)]
    with pytest.raises(ValueError, match="cannot draw 6"):
        buffer.draw(6)


@pytest.mark.parametrize("with_ref", [False, True], ids=["no-ref", "ref"])
def test_buffer_round_trips_through_a_checkpoint_file(tmp_path, with_ref):
    buffer = ReplayBuffer(capacity=5, seed=3)
    add_groups(buffer, 8, with_ref=with_ref)
    buffer.draw(2)  # advance the RNG: the file must carry its state, not the seed
    path = tmp_path / "checkpoint-8" / "replay_buffer.safetensors"
    buffer.save(path)
    loaded = ReplayBuffer.load(path)
    assert loaded.capacity == 5 and len(loaded) == 5
    assert all(a.same_as(b) for a, b in zip(buffer, loaded, strict=True))
    assert [g.uid for g in loaded.draw(3)] == [g.uid for g in buffer.draw(3)]
    add_groups(loaded, 1)
    add_groups(buffer, 1)
    assert list(loaded)[-1].uid == list(buffer)[-1].uid == 8
    assert sorted(p.name for p in path.parent.iterdir()) == ["replay_buffer.safetensors"]  # no temp file left


def test_empty_buffer_round_trips_and_smaller_capacity_keeps_newest(tmp_path):
    empty = ReplayBuffer(capacity=3, seed=0)
    empty.save(tmp_path / "empty.safetensors")
    assert len(ReplayBuffer.load(tmp_path / "empty.safetensors")) == 0

    buffer = ReplayBuffer(capacity=6, seed=0)
    add_groups(buffer, 6)
    buffer.save(tmp_path / "full.safetensors")
    smaller = ReplayBuffer.load(tmp_path / "full.safetensors", capacity=2)
    assert [group.uid for group in smaller] == [4, 5]


def test_loading_a_foreign_file_is_a_one_line_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a gaincurate replay buffer"):
        ReplayBuffer.load(tmp_path / "other.safetensors")


# -- config ----------------------------------------------------------------------------------------


def test_buffer_capacity_is_groups_or_batches():
    assert ReplayConfig().buffer_capacity(batch_prompts=8) == 32  # the default: 4 generation batches
    assert ReplayConfig(replay_capacity_batches=2).buffer_capacity(batch_prompts=8) == 16
    assert ReplayConfig(replay_capacity_batches=1).buffer_capacity(batch_prompts=3) == 3
    assert ReplayConfig(replay_capacity=5, replay_capacity_batches=2).buffer_capacity(batch_prompts=8) == 5


def test_pure_modules_import_without_trl():
    """Only the trainer adapter needs TRL: the package, its config, buffer, batch and loss modules do not."""
    code = (
        "import sys\n"
        "from gaincurate.integrations.trl.replay import batch, buffer, loss\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trl', 'transformers')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_fresh_prompt_plan():
    half = ReplayConfig(replay_fresh_fraction=0.5)
    assert [half.fresh_prompts(4, buffered) for buffered in (0, 1, 2, 3, 50)] == [4, 3, 2, 2, 2]
    assert ReplayConfig(replay_fresh_fraction=0.3).fresh_prompts(4, 50) == 2  # ceil(1.2): never below delta
    assert ReplayConfig(replay_fresh_fraction=1.0).fresh_prompts(4, 50) == 4
    assert ReplayConfig(replay_fresh_fraction=0.01).fresh_prompts(4, 50) == 1
    assert ReplayConfig(replay_fresh_fraction=0.75).fresh_prompts(8, 50) == 6


@pytest.mark.parametrize(
    "kwargs",
    [
        {"replay_fresh_fraction": 0.0},
        {"replay_fresh_fraction": 1.5},
        {"replay_capacity": 0},
        {"replay_capacity_batches": 0},
        {"replay_is_cap": 0.5},
        {"replay_is_cap": float("nan")},
    ],
    ids=["delta-0", "delta-1.5", "capacity-0", "capacity-batches-0", "cap-below-1", "cap-nan"],
)
def test_bad_replay_config_is_a_config_error(kwargs):
    with pytest.raises(ConfigError):
        ReplayConfig(**kwargs)
