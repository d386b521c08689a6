"""The bench's screen arm pays for its screening: its rollouts, tokens and seconds are charged like training's."""

from __future__ import annotations

import json

import pytest

from gaincurate.lab.benchmarks.curriculum import run_bench
from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED
from gaincurate.lab.strategies.screen import SCREEN_FACTOR, SCREEN_ROLLOUTS


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """`--smoke` cpu-arith with uniform (no screening) and screen (default k and r): about 10 s."""
    out = tmp_path_factory.mktemp("bench-screen") / "out"
    summary = run_bench("cpu-arith", out, strategies=["uniform", "screen"], smoke=True)
    pairs = {name: json.loads((out / "pairs" / f"{name}-seed0.json").read_text()) for name in ("uniform", "screen")}
    return out, summary, pairs


def training_rollouts(step: int) -> int:
    config = BUNDLED["cpu-arith"].smoke()
    return step * config.prompts_per_step * config.num_generations


def test_uniform_is_charged_its_training_rollouts_only(bench):
    _, _, pairs = bench
    uniform = pairs["uniform"]
    assert [p["rollouts"] for p in uniform["points"]] == [training_rollouts(p["step"]) for p in uniform["points"]]
    assert "screen_rollouts" not in uniform["costs"]


def test_screen_charges_its_screening_to_every_point(bench):
    out, summary, pairs = bench
    config = BUNDLED["cpu-arith"].smoke()
    screen = pairs["screen"]
    costs = screen["costs"]
    per_draw = SCREEN_FACTOR * config.subset_size * SCREEN_ROLLOUTS  # k x m candidates, r rollouts each
    # One screening per epoch trained; the epoch drawn after the last step (never trained) is not charged.
    assert costs["screen_rollouts"] == config.epochs * per_draw > 0
    assert costs["screen_tokens"] > 0 and costs["screen_seconds"] > 0
    final = screen["points"][-1]
    assert final["step"] == config.steps
    assert final["rollouts"] == training_rollouts(final["step"]) + costs["screen_rollouts"]
    assert final["tokens"] > costs["screen_tokens"]  # training's tokens, and the screening's on top
    # Every point after the start carries the screening done so far: more than training's, never less later.
    extra = [p["rollouts"] - training_rollouts(p["step"]) for p in screen["points"]]
    assert extra[0] == 0 and all(e > 0 and e % per_draw == 0 for e in extra[1:])
    assert extra == sorted(extra)
    lines = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [line["rollouts"] for line in lines if line["strategy"] == "screen"] == [
        p["rollouts"] for p in screen["points"]
    ]
    assert summary["strategies"]["screen"]["costs"]["screen_rollouts"] == costs["screen_rollouts"]


def test_a_band_reaches_the_bench_through_the_configs_schedule_field(tmp_path):
    """Strategy options such as --band go in a config file's `schedule` field, keyed by strategy."""
    config_file = tmp_path / "banded.json"
    config_file.write_text(json.dumps({"base": "cpu-arith", "schedule": {"mopps": {"band": [0.2, 0.8]}}}))
    out = tmp_path / "out"
    run_bench(config_file, out, strategies=["mopps"], smoke=True)
    pair = json.loads((out / "pairs" / "mopps-seed0.json").read_text())
    assert pair["points"][-1]["step"] == BUNDLED["cpu-arith"].smoke().steps
    from gaincurate.lab.benchmarks.curriculum.bundled import load_config
    from gaincurate.schedule.config import ScheduleConfig

    fields = load_config(config_file).schedule_fields("mopps")
    assert ScheduleConfig(strategy="mopps", **fields).band == (0.2, 0.8)


def test_a_pilot_pair_pays_r_pilot_and_n_minus_r_fresh_rollouts_per_trained_prompt(tmp_path):
    """pilot's committed prompts keep their pilot completions in the trained group (TRL in process): the trainer
    rolls n - r fresh rollouts for each, and every pilot rollout, the discarded candidates' too, is charged once."""
    from gaincurate.lab.strategies.pilot import PILOT_FACTOR, PILOT_ROLLOUTS

    out = tmp_path / "out"
    run_bench("cpu-arith", out, strategies=["pilot"], smoke=True)
    pair = json.loads((out / "pairs" / "pilot-seed0.json").read_text())
    config = BUNDLED["cpu-arith"].smoke()
    costs, final = pair["costs"], pair["points"][-1]
    per_draw = int(PILOT_FACTOR * config.subset_size) * PILOT_ROLLOUTS  # k x m candidates, r rollouts each
    assert costs["screen_rollouts"] == config.epochs * per_draw > 0
    fresh = config.num_generations - min(PILOT_ROLLOUTS, config.num_generations - 1)
    assert final["step"] == config.steps
    assert final["rollouts"] == final["step"] * config.prompts_per_step * fresh + costs["screen_rollouts"]
    # Every point: the fresh rollouts of the steps so far, plus the pilots drawn so far.
    for point in pair["points"][1:]:
        extra = point["rollouts"] - point["step"] * config.prompts_per_step * fresh
        assert extra > 0 and extra % per_draw == 0
