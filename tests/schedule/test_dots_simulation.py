"""dots against a simulated policy that keeps improving (tests/simulation.py), driven through `schedule step`'s API.

10 epochs of 32 of the 320 bundled prompts, 4 Bernoulli rollouts per selected prompt, true pass rates rising
every epoch and shared by embedding neighbours, default options. Two margins (issue #13):

* of the prompts first measured 0/4 in epochs 0-2, at least 30% are selected again later: a stale 0 must not
  bar a prompt for ever while the policy improves;
* in epochs 3-9 the selected prompts' mean |p_true - 0.5| is at most 0.8 times a uniform draw's.

Before measurements aged (forget 1, tau 1e-3, a measured prompt's own rate standing in for its prediction),
none of those prompts was ever selected again. `PYTHONPATH=tests python tests/schedule/test_dots_simulation.py`
prints the forget sweep of docs/dots.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from simulation import bundled_policy, simulate, write_scores

EPOCHS, SUBSET = 10, 32
EARLY = range(0, 3)  # epochs whose 0/4 prompts must come back
LATE = range(3, EPOCHS)  # epochs the distance to 0.5 is measured over
SEEDS = (0, 1, 2, 3, 4)


def margins(result, policy) -> dict[str, float]:
    """The two margins of one run: the share of early 0/4 prompts selected again, and the distance ratio."""
    first: dict[int, tuple[int, float]] = {}  # gc_id -> (epoch first measured, correct rollouts then)
    for epoch in range(EPOCHS):
        rewards = policy.rollouts(result.selected[epoch], epoch)
        for gc_id, row in zip(result.selected[epoch].tolist(), rewards, strict=True):
            first.setdefault(gc_id, (epoch, float(row.sum())))
    zeros = [gc_id for gc_id, (epoch, solved) in first.items() if epoch in EARLY and solved == 0]
    later = [set(result.selected[epoch].tolist()) for epoch in range(EPOCHS)]
    again = [gc_id for gc_id in zeros if any(gc_id in later[e] for e in range(first[gc_id][0] + 1, EPOCHS))]
    chosen = sum(float(np.abs(result.pass_rates[e][result.selected[e]] - 0.5).mean()) for e in LATE)
    uniform = sum(float(np.abs(result.pass_rates[e] - 0.5).mean()) for e in LATE)
    return {"zeros": len(zeros), "again": len(again) / max(len(zeros), 1), "distance_ratio": chosen / uniform}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dots-simulation")
    policy = bundled_policy()
    scores = write_scores(root / "scores", policy)
    count = iter(range(1000))

    def run(seed: int, **options) -> dict[str, float]:
        folder = root / f"run-{next(count)}"
        result = simulate(
            scores, folder, policy, strategy="dots", epochs=EPOCHS, subset_size=SUBSET, seed=seed, **options
        )
        return margins(result, policy)

    return run


@pytest.mark.parametrize("seed", SEEDS)
def test_default_dots_comes_back_to_stale_zeros_and_aims_near_the_middle(world, seed):
    measured = world(seed)
    assert measured["zeros"] >= 8  # enough prompts for the share to mean something
    assert measured["again"] >= 0.3, measured  # reached: 33-80% over 24 seeds
    assert measured["distance_ratio"] <= 0.8, measured  # reached: 0.63-0.73 over 24 seeds


def test_without_ageing_a_stale_zero_bars_its_prompt_for_ever(world):
    # The paper's settings with the trainer's own feedback as the reference set: nothing ages, and e^-500 is 0.
    for seed in SEEDS[:2]:
        assert world(seed, forget=1.0, tau=1e-3)["again"] == 0.0


def sweep(root: Path, seeds: range = range(24)) -> str:
    """The markdown table of docs/dots.md: both margins over seeds for a few forget rates (and the paper's settings)."""
    policy = bundled_policy()
    scores = write_scores(root / "scores", policy)
    lines = [
        "| forget | tau | early 0/4 prompts selected again: min / mean | distance ratio: mean / max |",
        "|---|---|---|---|",
    ]
    for index, (forget, tau) in enumerate([(1.0, 1e-3), (1.0, 0.05), (0.7, 0.05), (0.4, 0.05), (0.2, 0.05)]):
        runs = []
        for seed in seeds:
            folder = root / f"run-{index}-{seed}"
            result = simulate(
                scores,
                folder,
                policy,
                strategy="dots",
                epochs=EPOCHS,
                subset_size=SUBSET,
                seed=seed,
                forget=forget,
                tau=tau,
            )
            runs.append(margins(result, policy))
        again, ratio = [r["again"] for r in runs], [r["distance_ratio"] for r in runs]
        shares = f"{min(again):.0%} / {np.mean(again):.0%}"
        lines.append(f"| {forget:g} | {tau:g} | {shares} | {np.mean(ratio):.3f} / {max(ratio):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        sys.stdout.write(sweep(Path(folder)) + "\n")
