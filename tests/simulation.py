"""A simulated learning policy over the 320 bundled prompts, to test what a curriculum strategy selects.

No model is involved. Each prompt gets a made-up embedding and a hidden hardness that is a function of it,
so embedding neighbours share their pass rates. The policy improves every epoch:

    p_q(t) = sigmoid(START + RATE * t - hardness_q)

and each selected prompt gets ROLLOUTS Bernoulli rollouts of that pass rate. The outcomes come from one
fixed table of uniforms per (prompt, epoch, rollout), so two strategies that pick the same prompt in the same
epoch see the same rewards (common random numbers: comparisons between strategies are less noisy).

`simulate` drives a run directory through the public API, `gaincurate.schedule.run.steps.init_run` and
`Run.open(RUN).step`, exactly as `gaincurate schedule init` / `step` would, with the feedback written as JSON lines by
`gaincurate.feedback_lines.append_rollouts`. The strategy and its options are parameters, so any strategy runs:

    scores = write_scores(tmp_path / "scores", policy := bundled_policy())
    result = simulate(scores, tmp_path / "run", policy, strategy="mopps", seed=1)
    band(result)   # selected prompts vs a uniform draw over epochs 5-19

Run this file (`python tests/simulation.py`) to print the margins table of docs/strategies.md,
`python tests/simulation.py ablation` for its table of gain's ablation options,
`python tests/simulation.py all-or-nothing` for its table of the all-or-nothing variant (`predict`'s section), and
`python tests/simulation.py bound` for docs/dots.md's table of dots and predict with a bounded reference set.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from fake_scores import score_columns, write_scores_dir

import gaincurate
from gaincurate.feedback_lines import append_rollouts

ASSET = Path(gaincurate.__file__).parent / "assets" / "math_sample.jsonl"
ROLLOUTS = 4
EPOCHS = 20
SUBSET = 128  # of the 320 prompts: each prompt comes back every few epochs
WINDOW = range(5, 20)  # epochs the margins are measured over
EXTREME = 0.05  # a true pass rate below 0.05 or above 0.95 rarely gives a mixed rollout group
WIDTH = 16  # embedding width
START, RATE = -1.5, 0.15  # the policy's logit offset at epoch 0, and its gain per epoch


@dataclass(frozen=True)
class SimulatedPolicy:
    """Hidden pass rates that rise every epoch; `hardness` is a function of `embeddings`."""

    embeddings: np.ndarray  # [N, WIDTH] float32, row q is gc_id q
    hardness: np.ndarray  # [N]
    uniforms: np.ndarray  # [N, epochs, ROLLOUTS]: rollout r of prompt q in epoch t is correct iff below p_q(t)
    start: float = START
    rate: float = RATE

    def pass_rates(self, epoch: int) -> np.ndarray:
        """True pass rate of every prompt (gc_id order) while epoch `epoch` trains."""
        return 1.0 / (1.0 + np.exp(-(self.start + self.rate * epoch - self.hardness)))

    def rollouts(self, gc_ids: np.ndarray, epoch: int) -> np.ndarray:
        """[len(gc_ids), ROLLOUTS] rewards, 1.0 for a correct rollout."""
        gc_ids = np.asarray(gc_ids, dtype=np.int64)
        probabilities = self.pass_rates(epoch)[gc_ids]
        return (self.uniforms[gc_ids, epoch] < probabilities[:, None]).astype(np.float64)


def simulated_screener(policy: SimulatedPolicy, calls: list[tuple[np.ndarray, int, int]]):
    """A stand-in for `gaincurate.lab.strategies.screening.checkpoint_screener` that screens with the simulated policy.

    Candidates drawn for epoch t are rolled with the pass rates of epoch t (the policy that will train it), from
    uniforms of their own (seeded by the run's seed and t), so screening never replays the training rollouts.
    Every call is appended to `calls` as (gc_ids, epoch, rollouts), so a test can count the rollouts spent.
    """
    from gaincurate.lab.strategies.screening import Screening

    def factory(run_dir: Path, scores_dir: Path, *, seed: int, model_path: Path | None, progress: Any = None):
        def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
            gc_ids = np.asarray(gc_ids, dtype=np.int64)
            calls.append((gc_ids.copy(), epoch, rollouts))
            uniforms = np.random.default_rng([seed, epoch, 31]).random((len(gc_ids), rollouts))
            sums = (uniforms < policy.pass_rates(epoch)[gc_ids][:, None]).sum(axis=1).astype(np.float64)
            return Screening(sums, np.full(len(gc_ids), rollouts), 0)

        return screen

    return factory


def bundled_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in ASSET.read_text().splitlines() if line.strip()]


def bundled_policy(
    seed: int = 0, *, epochs: int = EPOCHS, start: float = START, rate: float = RATE, member_spread: float = 0.0
) -> SimulatedPolicy:
    """The policy over the bundled prompts: hardness from the stated difficulty (1-5), the type and noise.

    `member_spread` > 0 adds to each prompt's hardness an offset of its own (normal, that sd) that its embedding
    does not carry: the all-or-nothing variant (`all_or_nothing_table`), where embedding neighbours share a level
    but each member is mostly all right or all wrong, as on the bench's `cpu-mult`.
    """
    rows = bundled_rows()
    rng = np.random.default_rng([seed, 15])
    types = sorted({row["type"] for row in rows})
    type_offset = dict(zip(types, rng.normal(0.0, 0.7, len(types)), strict=True))
    type_centre = dict(zip(types, rng.normal(0.0, 2.0, (len(types), WIDTH)), strict=True))
    difficulty = np.array([row["difficulty"] for row in rows], dtype=np.float64)
    hardness = 1.1 * (difficulty - 3) + np.array([type_offset[row["type"]] for row in rows])
    hardness += rng.normal(0.0, 0.4, len(rows))
    # The embedding carries the hardness along one direction, plus the type and a little noise: prompts
    # near each other in it have nearly the same pass rate, as the DOTS paper assumes of real embeddings.
    direction = rng.normal(size=WIDTH)
    direction /= np.linalg.norm(direction)
    embeddings = np.stack([type_centre[row["type"]] for row in rows]) + np.outer(hardness, direction) * 2.0
    embeddings += rng.normal(0.0, 0.3, embeddings.shape)
    uniforms = rng.random((len(rows), epochs, ROLLOUTS))
    if member_spread:  # drawn from a stream of its own, so the default policy stays what it was
        hardness = hardness + np.random.default_rng([seed, 16]).normal(0.0, member_spread, len(rows))
    return SimulatedPolicy(embeddings.astype(np.float32), hardness, uniforms, start, rate)


def write_scores(directory: Path, policy: SimulatedPolicy, *, reversed_scores: bool = False) -> Path:
    """A complete scores directory of the bundled prompts, embeddings included, as `gaincurate score` writes.

    gc_score falls with hardness plus as much noise again (correlation about -0.5), so `gain` ranks by a
    real but weak signal, as angle scores do on real data. `reversed_scores`: it rises with hardness instead
    (the same noise), so the highest score marks the hardest prompts, as on the bench's `cpu-arith`.
    """
    rows = bundled_rows()
    count = len(rows)
    rng = np.random.default_rng(7)
    inputs = pa.table({key: [row[key] for row in rows] for key in ("problem", "answer", "type")})
    score = 1.0 + (0.1 if reversed_scores else -0.1) * policy.hardness + rng.normal(0.0, 0.25, count)
    columns = score_columns(score, [len(row["problem"].split()) for row in rows])
    columns["gc_embedding"] = pa.array([row.astype(np.float16) for row in policy.embeddings], pa.list_(pa.float16()))
    return write_scores_dir(
        directory, inputs, columns, dataset={"name": "math_sample", "fingerprint": "math-sample-simulated"}
    )


@dataclass(frozen=True)
class SimulationResult:
    selected: list[np.ndarray]  # gc_ids of each epoch
    pass_rates: list[np.ndarray]  # every prompt's true pass rate during each epoch (gc_id order)
    memories: list[dict[str, Any] | None]  # the strategy's memory in the state as each epoch was drawn
    history: list[dict[str, Any]]  # the run's history.jsonl
    selections: list[Any]  # the state's record of how each epoch was drawn (`gaincurate.schedule.state.Drawn`)


def simulate(
    scores_dir: Path,
    run_dir: Path,
    policy: SimulatedPolicy,
    *,
    strategy: str,
    epochs: int = EPOCHS,
    subset_size: int = SUBSET,
    seed: int = 0,
    checkpoint: Path | None = None,
    **options: Any,
) -> SimulationResult:
    """Train `epochs` simulated epochs with `strategy` (and ScheduleConfig `options`) in `run_dir`.

    `checkpoint` is passed to every step, as `schedule run` passes the newest one (screen needs one to screen with).
    """
    from gaincurate.schedule.config import ScheduleConfig
    from gaincurate.schedule.run import rundir
    from gaincurate.schedule.run.run import Run
    from gaincurate.schedule.run.steps import init_run

    # No checkpoint scores here: gain and length move mu by accuracy alone (their angle term off).
    mu_settings = {"rescore": "none"} if strategy in ("gain", "length") else {}
    config = ScheduleConfig(strategy=strategy, subset_size=subset_size, seed=seed, **(mu_settings | options))
    init_run(run_dir, scores_dir, config)
    Run.open(run_dir).step(checkpoint=checkpoint)
    selected, rates, memories, selections = [], [], [], []
    for epoch in range(epochs):
        schedule = rundir.load_run(run_dir).schedule
        gc_ids = schedule.subset_ids
        selected.append(gc_ids)
        memories.append(schedule.memory)
        selections.append(schedule.selection)
        rates.append(policy.pass_rates(epoch))
        if epoch == epochs - 1:
            break
        rewards = policy.rollouts(gc_ids, epoch)
        feedback = run_dir / f"rollouts-{epoch:04d}.jsonl"
        append_rollouts(feedback, np.repeat(gc_ids, ROLLOUTS).tolist(), rewards.ravel().tolist())
        Run.open(run_dir).step(feedback=feedback, checkpoint=checkpoint)
    return SimulationResult(selected, rates, memories, rundir.read_history(run_dir), selections)


def band(result: SimulationResult, window: range = WINDOW) -> dict[str, float]:
    """Over `window`: the selected prompts' mean |p - 0.5| and count of extreme pass rates, and both for a
    uniform draw of the same size (exact expectations, not a sampled run)."""
    distance = extremes = uniform_distance = uniform_extremes = 0.0
    for epoch in window:
        rates, chosen = result.pass_rates[epoch], result.selected[epoch]
        extreme = (rates < EXTREME) | (rates > 1 - EXTREME)
        distance += float(np.abs(rates[chosen] - 0.5).mean())
        extremes += float(extreme[chosen].sum())
        uniform_distance += float(np.abs(rates - 0.5).mean())
        uniform_extremes += float(extreme.mean()) * len(chosen)
    return {
        "distance": distance / len(window),
        "uniform_distance": uniform_distance / len(window),
        "distance_ratio": distance / uniform_distance,
        "extremes": extremes,
        "uniform_extremes": uniform_extremes,
        "fewer_extremes": 1.0 - extremes / uniform_extremes,
    }


def margins_table(root: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    """The markdown table of docs/strategies.md: each strategy, with and without the GRESO filter."""
    policy = bundled_policy()
    scores = write_scores(root / "scores", policy)
    lines = [
        "| strategy | mean abs(p - 0.5), ratio to uniform | extreme prompts, fewer than uniform | per seed (fewer) |",
        "|---|---|---|---|",
    ]
    runs = [
        (name, {})
        for name in ("uniform", "gain", "length", "dots", "mopps", "greso", "screen", "variance", "pilot", "predict")
    ]
    runs += [("screen", {"screen_rollouts": 2})]  # pilot's pilot budget (k = 2, r = 2)
    runs += [(name, {"skip_zero_variance": True}) for name in ("uniform", "gain", "length", "dots", "mopps")]
    runs += [("mopps", {"forget": 1.0})]
    runs += [(name, {"band": (0.2, 0.8)}) for name in ("dots", "mopps", "screen")]
    checkpoint = root / "policy"  # screen screens with a checkpoint; the simulated screener never loads it
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes((8).to_bytes(8, "little") + b"{}      ")
    for index, (name, options) in enumerate(runs):
        bands = []
        for seed in seeds:
            screener = simulated_screener(policy, [])
            with _replaced("gaincurate.lab.strategies.screening", "checkpoint_screener", screener):
                run_dir = root / f"run-{index}-{seed}"
                result = simulate(scores, run_dir, policy, strategy=name, seed=seed, checkpoint=checkpoint, **options)
            bands.append(band(result))
        label = name + "".join(f" {key}={value}" for key, value in options.items())
        ratio = np.mean([b["distance_ratio"] for b in bands])
        fewer = np.mean([b["fewer_extremes"] for b in bands])
        per_seed = ", ".join(f"{b['fewer_extremes']:.0%}" for b in bands)
        lines.append(f"| {label} | {ratio:.3f} | {fewer:.0%} | {per_seed} |")
    return "\n".join(lines)


ALL_OR_NOTHING_SPREAD = 6.0  # member offsets this wide leave most prompts all right or all wrong in every epoch


def zero_variance_share(result: SimulationResult, window: range = WINDOW) -> float:
    """The share of trained groups whose rollouts all agreed over `window`, from the run's own readout."""
    return float(np.mean([line["readout"]["zero_variance"] for line in result.history if line["epoch"] in window]))


def oracle_zero_variance(policy: SimulatedPolicy, subset: int = SUBSET, window: range = WINDOW) -> float:
    """The expected zero-variance share of the `subset` prompts most likely to give a mixed group (an oracle)."""
    shares = []
    for epoch in window:
        rates = policy.pass_rates(epoch)
        mixed = 1.0 - rates**ROLLOUTS - (1.0 - rates) ** ROLLOUTS
        shares.append(1.0 - float(np.sort(mixed)[-subset:].mean()))
    return float(np.mean(shares))


def all_or_nothing_table(root: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    """docs/strategies.md's table for the all-or-nothing variant: `python tests/simulation.py all-or-nothing`."""
    lines = [
        "| policy | strategy | mean abs(p - 0.5), ratio to uniform | extreme prompts, fewer than uniform "
        "| zero-variance groups (per seed) |",
        "|---|---|---|---|---|",
    ]
    for label, spread in (("bundled", 0.0), ("all-or-nothing", ALL_OR_NOTHING_SPREAD)):
        policy = bundled_policy(member_spread=spread)
        scores = write_scores(root / f"scores-{label}", policy)
        for name in ("uniform", "dots", "mopps", "variance", "predict"):
            results = [simulate(scores, root / f"{label}-{name}-{seed}", policy, strategy=name, seed=seed)
                       for seed in seeds]  # fmt: skip
            bands, zero = [band(result) for result in results], [zero_variance_share(result) for result in results]
            lines.append(
                f"| {label} | {name} | {np.mean([b['distance_ratio'] for b in bands]):.3f} "
                f"| {np.mean([b['fewer_extremes'] for b in bands]):.0%} "
                f"| {np.mean(zero):.0%} ({', '.join(f'{z:.0%}' for z in zero)}) |"
            )
        lines.append(
            f"| {label} | oracle (expected, best {SUBSET} by true p) | - | - | {oracle_zero_variance(policy):.0%} |"
        )
    return "\n".join(lines)


# gain's ablation options (docs/strategies.md, "GAIN-RL ablation options"): each arm is gain's config fields.
# A signed update: adj_min -10% of N lies below the largest backward step without an angle term (-0.76 n = -5.1%).
ABLATION_ARMS: dict[str, dict[str, Any]] = {
    "uniform": {"strategy": "uniform"},
    "gain": {"strategy": "gain"},
    "gain --ranking random": {"strategy": "gain", "ranking": "random"},
    "gain --mu-control sweep": {"strategy": "gain", "mu_control": "sweep"},
    "gain --direction auto": {"strategy": "gain", "direction": "auto"},
    "gain --adj-min -10%": {"strategy": "gain", "adj_min": "-10%"},
    "gain --direction auto --adj-min -10%": {"strategy": "gain", "direction": "auto", "adj_min": "-10%"},
}


def ablation_runs(root: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> dict[tuple[str, str], list[SimulationResult]]:
    """Every arm of ABLATION_ARMS on both score directions ("falls" with hardness, as published; "rises"), by seed."""
    policy = bundled_policy()
    results: dict[tuple[str, str], list[SimulationResult]] = {}
    for scores_name, flipped in (("falls", False), ("rises", True)):
        scores = write_scores(root / f"scores-{scores_name}", policy, reversed_scores=flipped)
        for index, (arm, fields) in enumerate(ABLATION_ARMS.items()):
            options = {key: value for key, value in fields.items() if key != "strategy"}
            results[scores_name, arm] = [
                simulate(scores, root / f"run-{scores_name}-{index}-{seed}", policy, strategy=fields["strategy"],
                         seed=seed, **options)
                for seed in seeds
            ]  # fmt: skip
    return results


def ablation_table(root: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    """The markdown table of docs/strategies.md's "GAIN-RL ablation options": `python tests/simulation.py ablation`."""
    lines = [
        "| score vs hardness | arm | mean abs(p - 0.5), ratio to uniform | extreme prompts, fewer than uniform "
        "| mean p chosen (uniform's) | mu at epoch 19, per seed | direction |",
        "|---|---|---|---|---|---|---|",
    ]
    for (scores_name, arm), results in ablation_runs(root, seeds).items():
        bands = [band(result) for result in results]
        chosen = np.mean([_mean_rate(result, chosen=True) for result in results])
        everyone = np.mean([_mean_rate(result, chosen=False) for result in results])
        mus = ", ".join(f"{result.history[-1]['mu_next']:.0f}" for result in results)
        directions = {
            line["direction"]["ranking"] for result in results for line in result.history if "direction" in line
        }
        lines.append(
            f"| {scores_name} | {arm} | {np.mean([b['distance_ratio'] for b in bands]):.3f} "
            f"| {np.mean([b['fewer_extremes'] for b in bands]):.0%} | {chosen:.2f} ({everyone:.2f}) "
            f"| {mus if arm != 'uniform' else '-'} | {', '.join(sorted(directions)) or '-'} |"
        )
    return "\n".join(lines)


def _mean_rate(result: SimulationResult, *, chosen: bool, window: range = WINDOW) -> float:
    """The mean true pass rate over `window` of the selected prompts, or of every prompt (a uniform draw's)."""
    rates = [result.pass_rates[t][result.selected[t]] if chosen else result.pass_rates[t] for t in window]
    return float(np.mean([r.mean() for r in rates]))


# Reference sets as a share of the measured prompts, as a pool's size makes them (docs/dots.md, "A bounded reference
# set"): all of them (a pool up to 48,828 prompts in the scale bench), about 1 in 12 (100,000 prompts: 1,000 of
# 11,988 measured), about 1 in 47 (a million: 256).
BOUNDS = (("all", 0), ("1 in 12", 27), ("1 in 47", 7))


def bound_table(root: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    """dots and predict under the improving policy with their reference set bounded as a large pool bounds it."""
    policy = bundled_policy()
    scores = write_scores(root / "scores", policy)
    lines = [
        "| strategy | reference set | mean abs(p - 0.5), ratio to uniform | extreme prompts, fewer than uniform | "
        "zero-variance share |",
        "|---|---|---|---|---|",
    ]
    for name in ("dots", "predict"):
        for label, limit in BOUNDS:
            bands, shares = [], []
            for seed in seeds:
                bounded = (lambda n, limit=limit: limit) if limit else (lambda n: 10**9)
                with _replaced(f"gaincurate.schedule.strategies.{name}", "reference_limit", bounded):
                    result = simulate(scores, root / f"run-{name}-{limit}-{seed}", policy, strategy=name, seed=seed)
                bands.append(band(result))
                shares.append(zero_variance_share(result))
            ratio = np.mean([b["distance_ratio"] for b in bands])
            fewer = np.mean([b["fewer_extremes"] for b in bands])
            lines.append(f"| {name} | {label} | {ratio:.3f} | {fewer:.0%} | {np.mean(shares):.3f} |")
    return "\n".join(lines)


@contextlib.contextmanager
def _replaced(module: str, name: str, value: Any):
    """`module.name` set to `value` for the block (the margins table runs outside pytest's monkeypatch)."""
    import importlib

    target = importlib.import_module(module)
    previous = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, previous)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tables = {"ablation": ablation_table, "all-or-nothing": all_or_nothing_table, "bound": bound_table}
        table = tables[sys.argv[1]] if sys.argv[1:] else margins_table
        sys.stdout.write(table(Path(folder)) + "\n")
