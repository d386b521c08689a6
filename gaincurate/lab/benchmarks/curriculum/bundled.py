"""The bundled bench configs by name (the tasks, the demonstration, the declared verdicts), and config files.

load_config("cpu-arith")              # a bundled config
load_config("my-bench.json")          # a JSON or TOML file of BenchConfig fields (unknown keys are an error)
load_config("cpu-arith").smoke()      # the same code at smoke size: 1 seed, a few steps
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gaincurate.errors import ConfigError
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.schedule.config import DEFAULT_STRATEGY

_ARITH_SMOKE = {
    "pool": ((1, 16), (2, 16)),
    "eval": ((1, 8), (2, 8)),
    "warm_start_steps": 60,
    "warm_start_digits": (1, 2),
    "model_shape": {"layers": 2, "hidden": 32, "heads": 2},
    "steps": 4,
    "subset_size": 8,
    "prompts_per_step": 4,
    "num_generations": 4,
    "eval_every": 2,
    "eval_samples": 2,
    "oracle_rollouts": 2,
    "pauc_budget": None,
}

# The real 135M model on one thread: a GRPO step of two 8-token completions costs about 10 s (generation,
# forward and backward, AdamW over 135M weights), an evaluation about 5 s. So one step on one prompt (one
# curriculum epoch: its draw, training, epoch end and the next draw), evaluated at steps 0 and 1 on two held-out
# prompts: 25-35 s per arm, where eight completions a step would take 2-3 minutes. Nothing is learnt at this size.
_MATH_SMOKE = {
    **{"pool_rows": 4, "eval_rows": 2, "steps": 1, "prompts_per_step": 1, "num_generations": 2, "subset_size": 1},
    **{"eval_every": 1, "eval_samples": 1, "eval_batch": 4, "oracle_rollouts": 1, "max_completion_length": 8},
}

# The chain task at smoke size: sums of 4 and 5 terms, whose completions (steps, then the answer) are the longest.
_CHAIN_SMOKE = {**_ARITH_SMOKE, "pool": ((4, 16), (5, 16)), "eval": ((4, 8), (5, 8)), "warm_start_digits": (4, 5)}

# The GAIN-RL ablation: the accuracy-driven centre over a random ranking, the angle ranking swept at a fixed
# rate, and the ranking oriented by the first epoch's pass rates with a signed update (adj_min = -adj_max) so mu
# can move back. Arms of their own, run after the declared strategies (`--strategies`).
GAIN_ABLATION = {
    "gain-random": {"strategy": "gain", "ranking": "random"},
    "gain-sweep": {"strategy": "gain", "mu_control": "sweep"},
    "gain-signed": {"strategy": "gain", "direction": "auto", "adj_min": "-13.3%"},
}

# The first task: a frontier family (2-digit sums, supervised with a +1 slip half of the time), a solved family
# (1 digit) and never-seen sums (3-4 digits); held out: fresh 2-digit sums, read by the sampled pass rate. Its
# analysis is fixed before any of its seeds run, so that no result can move it: 160 steps (uniform plateaus after
# about 110), evaluation every 10 steps, crossings on a centred 3-point mean, the target at 75% of uniform's gain on
# pilot seeds 90-93 (50% and 90% for sensitivity), the partial AUC over the first 5,120 rollouts (80 steps), Holm
# over dots, mopps and gain. The comparison's seeds, 100-111, chose nothing.
_CPU_ARITH = BenchConfig(
    name="cpu-arith",
    pool=((1, 96), (2, 64), (3, 176), (4, 176)),
    eval=((2, 240),),
    warm_start_digits=(1, 2),
    warm_start_steps=1500,
    warm_start_noise=((2, 0.5),),
    steps=160,
    eval_every=10,
    headline="sampled",
    smooth=3,
    # From `gaincurate bench curriculum --report docs/results/cpu-arith-pilot`: 50%, 75%, 90% of uniform's gain.
    target=0.768,
    other_targets=(0.652, 0.838),
    primary=("dots", "mopps", "gain"),
    pauc_budget=5120,
    oracle_rollouts=4,  # the ceiling's measurement of all 512 prompts each epoch is the dearest part of a seed
    strategies=("uniform", "dots", "mopps", "gain", "oracle"),
    seeds="100-111",
    # The GAIN-RL ablation, declared with the rest and run after the arms above.
    schedule=GAIN_ABLATION,
    smoke_overrides=_ARITH_SMOKE,
)

# The second task, different in kind and built by nobody's hand: products of a d-digit number and one digit,
# whose difficulty varies naturally (length, carries, the multiplier). The frontier is the warm start's own
# half-learnt family: 1,000 supervised steps on 1- to 3-digit products, no slip, leave 3-digit ones at about 0.4
# sampled; 4-digit ones were never seen. Its design and target come from pilot seeds 90-93 only, by cpu-arith's
# rule; the analysis, the arms, the GRPO settings and the comparison's seeds (100-111) are cpu-arith's.
_CPU_MULT = dataclasses.replace(
    _CPU_ARITH,
    name="cpu-mult",
    operator="*",
    pool=((1, 100), (2, 150), (3, 150), (4, 150)),
    eval=((3, 240),),
    warm_start_digits=(1, 2, 3),
    warm_start_steps=1000,
    warm_start_noise=(),
    # From `gaincurate bench curriculum --report docs/results/cpu-mult-pilot`: 50%, 75%, 90% of uniform's gain.
    target=0.446,
    other_targets=(0.435, 0.452),
)

# The third task: an answer that follows reasoning. Sums of 4 to 7 one-digit terms; the completion writes every
# running total, then "=" and the answer, and the reward reads the answer only (chain.py). The frontier is cpu-arith's
# recipe moved into the reasoning: the warm start (1,500 supervised steps on 4- and 5-term sums) slips the last step of
# 5-term sums by +1 half of the time; 6 and 7 terms were never seen. A 2-layer width-64 model: the other tasks' shape
# costs 6x the CPU per supervised step on these longer sequences. Its target comes from uniform on pilot seeds 90-93
# by cpu-arith's rule; the analysis and GRPO settings are cpu-arith's. It keeps the pilot's arms and seeds, so that
# running it by name runs no fresh seed; its verdict, on fresh seeds, is `cpu-chain-compute` in _VERDICTS below.
_CPU_CHAIN = dataclasses.replace(
    _CPU_ARITH,
    name="cpu-chain",
    task="chain",
    pool=((4, 96), (5, 64), (6, 176), (7, 176)),
    eval=((5, 240),),
    model_shape={"layers": 2, "hidden": 64, "heads": 2},
    warm_start_digits=(4, 5),
    warm_start_steps=1500,
    warm_start_noise=((5, 0.5),),
    max_completion_length=21,  # 7 terms: 6 totals of at most 2 digits, 5 commas, "=", 2 digits, the end token
    # From `gaincurate bench curriculum --report docs/results/cpu-chain-pilot`: 50%, 75%, 90% of uniform's gain.
    target=0.715,
    other_targets=(0.643, 0.758),
    primary=(),
    strategies=("uniform", "oracle"),
    seeds="90-93",
    schedule={},
    smoke_overrides=_CHAIN_SMOKE,
)

# The headroom verdict: the baseline, the two estimators of the first comparisons, the ceiling, and the two
# mechanisms it tests (pilot and commit; a predictor learned across prompts).
HEADROOM_ARMS = ("uniform", "dots", "mopps", "oracle", "pilot", "predict")
HEADROOM_PRIMARY = ("dots", "mopps", "pilot", "predict")


def _verdict(name: str, task: BenchConfig, arms: tuple, primary: tuple, seeds: str, targets: tuple) -> BenchConfig:
    """`task` with a verdict's arms, analysis, fresh seeds and targets: (target, (sensitivity targets))."""
    schedule = {"probe-likelihood": PROBE_LIKELIHOOD} if "probe-likelihood" in arms else {}
    return dataclasses.replace(task, name=name, target=targets[0], other_targets=targets[1], primary=primary,
                               strategies=arms, seeds=seeds, schedule=schedule)  # fmt: skip


# The probe verdict: the baseline, the default, the probe without and with the answer likelihood, the ceiling.
PROBE_ARMS = ("uniform", "dots", "probe", "probe-likelihood", "oracle")
PROBE_PRIMARY = ("dots", "probe", "probe-likelihood")
PROBE_LIKELIHOOD = {"strategy": "probe", "likelihood": True}

# The ten-minute demonstration (`gaincurate bench curriculum --demo`): cpu-arith exactly as declared (task, warm
# start, GRPO, target, analysis), uniform against the default strategy as shipped (probe, the likelihood decided from
# the scores: on, every row having an answer; the bench's plain probe arm is the embedding alone), on two seeds that
# no comparison or pilot uses (comparisons: 100-147; pilots: 90-99). Two seeds show the saving and are no verdict: a
# sign-flip test on two seeds cannot go below p 0.5. Two workers keep a slower or busier laptop inside ten minutes.
_DEMO = dataclasses.replace(
    _CPU_ARITH, name="demo", strategies=("uniform", DEFAULT_STRATEGY), primary=(DEFAULT_STRATEGY,), seeds="200-201",
    schedule={DEFAULT_STRATEGY: {"strategy": DEFAULT_STRATEGY, "likelihood": None}},
)  # fmt: skip
DEMO_WORKERS = 2

# The declared strategies of every bundled config run with the scheduler's own defaults; only the ablation arms
# set options.
BUNDLED: dict[str, BenchConfig] = {
    "cpu-arith": _CPU_ARITH,
    "cpu-mult": _CPU_MULT,
    "cpu-chain": _CPU_CHAIN,
    "demo": _DEMO,
    # Sized to the 2-core machine: one GRPO step of 8 completions of the few-shot prompt takes about 40 s on one
    # thread, so 16 steps, 3 evaluation points and the oracle's 4 measurements of 32 prompts fit about 15-30
    # minutes per strategy. The learning rate was set before any run (5e-6: a short run must be able to move).
    "cpu-smollm2-math": BenchConfig(
        name="cpu-smollm2-math",
        task="math",
        model=None,
        dataset=None,
        pool_rows=32,
        eval_rows=24,
        steps=16,
        prompts_per_step=2,
        num_generations=4,
        subset_size=8,
        learning_rate=5e-6,
        max_completion_length=96,
        eval_every=8,
        eval_samples=2,
        eval_batch=16,
        oracle_rollouts=4,
        seeds=1,
        smoke_overrides=_MATH_SMOKE,
    ),
    # One H100 call (10 minutes) per (strategy, seed); docs/benchmark-history.md, "Training efficiency", says how to
    # run it.
    "gpu-math": BenchConfig(
        name="gpu-math",
        task="math",
        model=None,
        dataset="../shared/data/math_train.json",
        pool_rows=1024,
        eval_rows=256,
        steps=120,
        prompts_per_step=16,
        num_generations=8,
        subset_size=128,
        learning_rate=1e-6,
        max_completion_length=384,
        eval_every=20,
        eval_samples=4,
        eval_batch=128,
        device="cuda",
        smoke_overrides={**_MATH_SMOKE, "device": "cpu", "dataset": None},
    ),
}


# The declared verdicts: (task, arms, primary arms, fresh seeds, (target, sensitivity targets)). Each is fixed
# before any of its pairs runs and never changed after, so that no result can move its analysis (the bench also
# refuses a later call on the same folder whose analysis differs). A target is 75% of uniform's mean gain on pilot
# seeds of the same warm start (50% and 90% for sensitivity), so it holds for that warm start (initial_sha256) only;
# a machine that builds another one declares its own verdict from its own pilot seeds by the same rule.
# docs/benchmark-history.md keeps each declaration with its date and machine, docs/results/NAME/README.md each run.
_VERDICTS = {
    # The headroom verdict: every arm again on one warm start, Holm over the four practical arms; targets from that
    # warm start's pilot seeds 90-92 (`--report docs/results/cpu-*-diagnosis-pilot`, "As a pilot").
    "cpu-arith-headroom": (_CPU_ARITH, HEADROOM_ARMS, HEADROOM_PRIMARY, "112-123", (0.729, (0.638, 0.783))),
    "cpu-mult-headroom": (_CPU_MULT, HEADROOM_ARMS, HEADROOM_PRIMARY, "112-123", (0.421, (0.405, 0.431))),
    # The probe verdict: targets from its own pilot seeds 90-92 (`--report docs/results/cpu-*-probe-pilot`).
    "cpu-arith-probe": (_CPU_ARITH, PROBE_ARMS, PROBE_PRIMARY, "124-135", (0.779, (0.659, 0.851))),
    "cpu-mult-probe": (_CPU_MULT, PROBE_ARMS, PROBE_PRIMARY, "124-135", (0.447, (0.436, 0.454))),
    # The same verdict for the other warm start (AVX-512 machines: initial_sha256 128ce2c7... for cpu-arith, 7ee3a0bb...
    # for cpu-mult), its targets by the same declared rule from that warm start's uniform pilot seeds 90-92
    # (`--report docs/results/cpu-*-diagnosis-pilot`, "As a pilot").
    "cpu-arith-probe-avx512": (_CPU_ARITH, PROBE_ARMS, PROBE_PRIMARY, "124-135", (0.729, (0.638, 0.783))),
    "cpu-mult-probe-avx512": (_CPU_MULT, PROBE_ARMS, PROBE_PRIMARY, "124-135", (0.421, (0.405, 0.431))),
    # The chain task's verdict: the probe verdict's arms on fresh seeds, the targets of `cpu-chain` (for the warm start
    # initial_sha256 2eec3d77...).
    "cpu-chain-compute": (_CPU_CHAIN, PROBE_ARMS, PROBE_PRIMARY, "136-147", (0.715, (0.643, 0.758))),
    # The same verdict on the two direct-answer tasks: the probe verdict's targets, for its warm starts
    # (initial_sha256 65e9c3d4... and 0d6e40c5...).
    "cpu-arith-compute": (_CPU_ARITH, PROBE_ARMS, PROBE_PRIMARY, "136-147", (0.779, (0.659, 0.851))),
    "cpu-mult-compute": (_CPU_MULT, PROBE_ARMS, PROBE_PRIMARY, "136-147", (0.447, (0.436, 0.454))),
}
BUNDLED |= {name: _verdict(name, *spec) for name, spec in _VERDICTS.items()}
# For `--bench`'s help: the tasks and demos by name, the verdicts by their kinds (cpu-TASK-KIND).
BENCH_HELP = (
    f"{', '.join(name for name in BUNDLED if name not in _VERDICTS)}, a declared verdict (cpu-TASK-KIND, KIND: "
    f"{', '.join(sorted({name.split('-', 2)[2] for name in _VERDICTS}))}; docs/benchmarks.md), or JSON/TOML."
)


def load_config(spec: str | Path) -> BenchConfig:
    """A bundled config by name (`BUNDLED`: `cpu-arith`, `cpu-mult`, ...) or a JSON/TOML file."""
    if str(spec) in BUNDLED:
        return BUNDLED[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--bench {spec} is neither a bundled config ({', '.join(BUNDLED)}) nor a file")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except ValueError as error:
        raise ConfigError(f"--bench {spec} cannot be parsed ({error})") from None
    base = data.pop("base", None)
    if base is not None:
        if base not in BUNDLED:
            raise ConfigError(f"--bench {spec}: base {base!r} is not a bundled config ({', '.join(BUNDLED)})")
        data = {**BUNDLED[base].to_dict(), **data}
    return BenchConfig.from_dict(data)
