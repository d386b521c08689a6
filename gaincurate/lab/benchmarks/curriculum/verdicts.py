"""The warm-start verdicts: what one declares (`WarmStartVerdict`) and every one declared so far (`VERDICTS`).

Each entry is written and committed before any of its pairs runs, with its section in docs/benchmark-history.md
(named in its comment); `warm_starts.run_warm_starts` runs one by name, `pooled.report` reads what it wrote. An entry
that has run stays as it ran: a changed question is a new entry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig, parse_seeds

# `probe-default`: the default on the bench's rows, probe with the likelihood (decided from the scores, and on, every
# bench row having an answer) and the pause on. The plain `probe` arm is the embedding alone (the harness sets it), the
# default between the embedding verdict and the likelihood verdict (docs/benchmark-history.md).
PROBE_DEFAULT = {"strategy": "probe", "likelihood": True}
# probe on its embedding alone as it ran before the in-run control: no likelihood, never paused.
PROBE_ALONE = {"strategy": "probe", "likelihood": False, "pause": False}


@dataclass(frozen=True, kw_only=True)
class WarmStartVerdict:
    """Tasks, warm starts, arms, fresh seeds and the goal, fixed before any pair runs."""

    name: str
    tasks: tuple[str, ...]
    warm_starts: tuple[int, ...]
    arms: tuple[str, ...]
    primary: tuple[str, ...]
    seeds: str  # the comparison's fresh seeds, the same on every unit unless seeds_apart
    pilot_seeds: str = "90-92"
    # Each warm start its own fresh seeds (`unit_seeds`): a seed fixes an epoch's draws, so seeds shared by every warm
    # start share their effect on the ratio, which more warm starts then cannot average away.
    seeds_apart: bool = False
    seed_stride: int = 0  # with seeds_apart, the shift from one warm start's seeds to the next (0: their count)
    schedule: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The comparison's arms measure the whole pool as each epoch is drawn (the pool instrument, not charged), at the
    # trained group's size: a prompt measured with 0 < p < 1 is a group of it with rewards that varied (own_policy.py).
    measure_pool: bool = False
    goal_arm: str = "probe-default"
    goal_pooled: float = 0.6  # the pooled compute ratio the goal arm reaches on every task
    goal_worst: float = 1.05  # and no warm start above this
    smoke: bool = False

    def smoked(self) -> WarmStartVerdict:
        """The first task, two warm starts, one pilot seed and one fresh seed: the path end to end, at smoke size."""
        first = f"{parse_seeds(self.pilot_seeds)[0]}"
        return dataclasses.replace(self, tasks=self.tasks[:1], warm_starts=self.warm_starts[:2], smoke=True,
                                   pilot_seeds=f"{first}-{first}", seeds=f"{parse_seeds(self.seeds)[0]}-"
                                   f"{parse_seeds(self.seeds)[0]}")  # fmt: skip

    def unit_seeds(self, warm_start: int) -> str:
        """The fresh seeds of `warm_start`'s comparison: the declared ones, or with seeds_apart, shifted by their count
        (or seed_stride) times the warm start's place in the verdict (declared 326-329: the first warm start's, the
        next 330-333; declared 326-329,358-361 with a stride of 4: the next 330-333,362-365)."""
        if not self.seeds_apart:
            return self.seeds
        seeds = parse_seeds(self.seeds)
        shift = self.warm_starts.index(warm_start) * (self.seed_stride or len(seeds))
        if len(seeds) == 1:  # a lone number reads as a count of seeds
            return f"{seeds[0] + shift}-{seeds[0] + shift}"
        return ",".join(str(seed + shift) for seed in seeds)

    def task_config(self, task: str, warm_start: int) -> BenchConfig:
        config = dataclasses.replace(BUNDLED[task], warm_start_seed=warm_start)
        return config.smoke() if self.smoke else config

    def pilot_config(self, task: str, warm_start: int) -> BenchConfig:
        return dataclasses.replace(self.task_config(task, warm_start), name=f"{task}-ws{warm_start}-pilot",
                                   strategies=("uniform",), seeds=self.pilot_seeds, primary=(), schedule={},
                                   target=None, other_targets=())  # fmt: skip

    def compare_config(self, task: str, warm_start: int, targets: dict[float, float]) -> BenchConfig:
        """The unit's comparison, its targets from its pilot (at smoke size, where uniform gains nothing in a few
        steps, the task's own)."""
        config = self.task_config(task, warm_start)
        if self.measure_pool:
            config = dataclasses.replace(config, measure_pool=True, oracle_rollouts=config.num_generations)
        target, others = config.target, config.other_targets
        if targets:
            target, others = targets[0.75], (targets[0.5], targets[0.9])
        return dataclasses.replace(config, name=f"{task}-ws{warm_start}", strategies=self.arms,
                                   seeds=self.unit_seeds(warm_start),
                                   primary=self.primary, schedule=self.schedule, target=target,
                                   other_targets=others)  # fmt: skip

    def units(self) -> list[tuple[str, int]]:
        return [(task, k) for k in self.warm_starts for task in self.tasks]


# Declared before its runs (docs/benchmark-history.md, "The default across warm starts"): the shipped default
# (`probe`, no options), probe on its embedding alone as it ran before the control, the baseline and the ceiling.
VERDICTS = {
    "warm-starts": WarmStartVerdict(
        name="warm-starts",
        tasks=("cpu-chain", "cpu-arith", "cpu-mult"),
        warm_starts=(0, 1, 2, 3),
        arms=("uniform", "probe-default", "probe-alone", "oracle"),
        primary=("probe-default", "probe-alone"),
        seeds="300-301",
        schedule={"probe-default": PROBE_DEFAULT, "probe-alone": PROBE_ALONE},
    ),
}
# Declared before its runs (docs/benchmark-history.md, "The default across warm starts on cpu-mult, more seeds"):
# the same units, pilots and targets, four fresh seeds more, without the oracle.
VERDICTS["warm-starts-mult"] = dataclasses.replace(
    VERDICTS["warm-starts"], name="warm-starts-mult", tasks=("cpu-mult",), seeds="302-305",
    arms=("uniform", "probe-default", "probe-alone"),
)  # fmt: skip
# Declared before its runs (docs/benchmark-history.md, "A cheaper likelihood refresh across warm starts"): the default
# with its refresh cut to one epoch's worth of prompts (the next draw's candidates, no rotation) against the default as
# shipped on `cpu-mult`'s warm starts, where the refresh is most of what the default pays beyond uniform; and on the
# two other tasks against uniform alone, to see whether their savings hold.
PROBE_REFRESH_1 = PROBE_DEFAULT | {"refresh": 1.0}
VERDICTS["refresh-mult"] = dataclasses.replace(
    VERDICTS["warm-starts"], name="refresh-mult", tasks=("cpu-mult",), seeds="306-309",
    arms=("uniform", "probe-default", "probe-refresh1"), primary=("probe-default", "probe-refresh1"),
    schedule={"probe-default": PROBE_DEFAULT, "probe-refresh1": PROBE_REFRESH_1}, goal_arm="probe-refresh1",
)  # fmt: skip
VERDICTS["refresh-others"] = dataclasses.replace(
    VERDICTS["refresh-mult"], name="refresh-others", tasks=("cpu-chain", "cpu-arith"), seeds="306-307",
    arms=("uniform", "probe-refresh1"), primary=("probe-refresh1",), schedule={"probe-refresh1": PROBE_REFRESH_1},
)  # fmt: skip
# Declared before its runs (docs/benchmark-history.md, "The embedding alone as the default, across warm starts"):
# the default against probe without the likelihood, its pause on (plain `probe` since this verdict), on every task.
PROBE_EMBEDDING = {"strategy": "probe", "likelihood": False}
VERDICTS["embedding-mult"] = dataclasses.replace(
    VERDICTS["warm-starts"], name="embedding-mult", tasks=("cpu-mult",), seeds="310-317",
    arms=("uniform", "probe-default", "probe-embedding"), primary=("probe-default", "probe-embedding"),
    schedule={"probe-default": PROBE_DEFAULT, "probe-embedding": PROBE_EMBEDDING}, goal_arm="probe-embedding",
)  # fmt: skip
VERDICTS["embedding-others"] = dataclasses.replace(
    VERDICTS["embedding-mult"], name="embedding-others", tasks=("cpu-chain", "cpu-arith"), seeds="310-311",
)  # fmt: skip
# Declared before its runs (docs/benchmark-history.md, "The default on cpu-mult's warm starts of a second CPU"): the
# default as shipped against uniform alone, on the warm starts the running machine trains, fresh seeds; then on the
# two other tasks.
VERDICTS["default-mult"] = dataclasses.replace(
    VERDICTS["embedding-mult"], name="default-mult", seeds="318-325", arms=("uniform", "probe"), primary=("probe",),
    schedule={}, goal_arm="probe",
)  # fmt: skip
VERDICTS["default-others"] = dataclasses.replace(
    VERDICTS["default-mult"], name="default-others", tasks=("cpu-chain", "cpu-arith"), seeds="318-319",
)  # fmt: skip
# Declared before its runs (docs/benchmark-history.md, "The likelihood as the default where rows carry answers, on the
# second CPU's warm starts"): the likelihood beside the default at the same seeds, whose uniform and probe pairs are
# default-mult's and default-others', copied.
VERDICTS["likelihood-mult"] = dataclasses.replace(
    VERDICTS["default-mult"], name="likelihood-mult", arms=("uniform", "probe", "probe-likelihood"),
    primary=("probe", "probe-likelihood"), schedule={"probe-likelihood": {"strategy": "probe", "likelihood": True}},
    goal_arm="probe-likelihood",
)  # fmt: skip
VERDICTS["likelihood-others"] = dataclasses.replace(
    VERDICTS["likelihood-mult"], name="likelihood-others", tasks=("cpu-chain", "cpu-arith"), seeds="318-319",
)  # fmt: skip
# Exploratory, on the pilot seeds (docs/benchmark-history.md, "The probe's draw on cpu-mult's warm starts"): the
# options the probe has kept since before any run, against the default, where the default saves least.
VERDICTS["draw-mult-pilot"] = dataclasses.replace(
    VERDICTS["embedding-mult"], name="draw-mult-pilot", seeds="90-92",
    arms=("uniform", "probe", "probe-tau0.15", "probe-target0.35", "probe-target0.65", "probe-forget0.5"),
    primary=("probe",), goal_arm="probe",
    schedule={"probe-tau0.15": {"strategy": "probe", "tau": 0.15}, "probe-target0.35": {"strategy": "probe",
              "target": 0.35}, "probe-target0.65": {"strategy": "probe", "target": 0.65},
              "probe-forget0.5": {"strategy": "probe", "forget": 0.5}},
)  # fmt: skip

# Exploratory, on the same pilot seeds (docs/benchmark-history.md, "What the oracles train on at cpu-mult"): where the
# oracle and oracle-nonzero aim, family by family, beside the default's aim. Their uniform and probe pairs are
# draw-mult-pilot's, the same code and settings, copied into its folders rather than trained again.
VERDICTS["oracle-mult-pilot"] = dataclasses.replace(
    VERDICTS["draw-mult-pilot"], name="oracle-mult-pilot", arms=("uniform", "probe", "oracle", "oracle-nonzero"),
    primary=("probe",), schedule={},
)  # fmt: skip

# Exploratory, on the same pilot seeds (docs/benchmark-history.md, "GRESO's filter over the probe at cpu-mult"): the
# default with `--skip-zero-variance`, since the oracles skip the four-digit products that the default keeps drawing.
VERDICTS["skip-mult-pilot"] = dataclasses.replace(
    VERDICTS["draw-mult-pilot"], name="skip-mult-pilot", arms=("uniform", "probe", "probe-skip"),
    schedule={"probe-skip": {"strategy": "probe", "skip_zero_variance": True}},
)  # fmt: skip

# Exploratory, on the same pilot seeds (docs/benchmark-history.md, "What the control costs the default at cpu-mult"):
# the default without its uniform slice, to price the control.
VERDICTS["slice-mult-pilot"] = dataclasses.replace(
    VERDICTS["draw-mult-pilot"], name="slice-mult-pilot", arms=("uniform", "probe", "probe-noslice"),
    schedule={"probe-noslice": {"strategy": "probe", "uniform_share": 0.0}},
)  # fmt: skip

# Exploratory, on the same pilot seeds (docs/benchmark-history.md, "The probe's draw with the oracle's rates at
# cpu-mult"): the oracle's measurement drawn as the probe draws, beside the oracle and the default.
VERDICTS["oracle-drawn-mult-pilot"] = dataclasses.replace(
    VERDICTS["draw-mult-pilot"], name="oracle-drawn-mult-pilot", arms=("uniform", "probe", "oracle", "oracle-drawn"),
    schedule={},
)  # fmt: skip

# Exploratory, on the same pilot seeds (docs/benchmark-history.md, "The answer's likelihood over the whole pool at
# cpu-mult"): the likelihood as its refresh measures it by default, and measured for every pool prompt every epoch.
VERDICTS["likelihood-mult-pilot"] = dataclasses.replace(
    VERDICTS["draw-mult-pilot"], name="likelihood-mult-pilot",
    arms=("uniform", "probe", "probe-likelihood", "probe-likelihood-pool"),
    schedule={"probe-likelihood": {"strategy": "probe", "likelihood": True},
              "probe-likelihood-pool": {"strategy": "probe", "likelihood": True, "refresh": 9.0}},
)  # fmt: skip

# Declared before its runs (docs/benchmark-history.md, "The default on four more of cpu-mult's warm starts"): the
# default as shipped on bench rows on warm starts it has never run on; then read over all eight with the likelihood
# verdict's pairs of warm starts 0-3, copied.
VERDICTS["default-mult-more"] = dataclasses.replace(
    VERDICTS["likelihood-mult"], name="default-mult-more", warm_starts=(4, 5, 6, 7),
    arms=("uniform", "probe-likelihood"), primary=("probe-likelihood",),
)  # fmt: skip
VERDICTS["default-mult-eight"] = dataclasses.replace(
    VERDICTS["default-mult-more"], name="default-mult-eight", warm_starts=tuple(range(8)),
)  # fmt: skip
# Declared before its runs (docs/benchmark-history.md, "The default on four more warm starts of cpu-chain and
# cpu-arith"): the same on the two other tasks, four fresh seeds; then over all eight, warm starts 0-3's pilots and
# their pairs at seeds 318-319 copied from likelihood-others, 320-321 run there.
VERDICTS["default-others-more"] = dataclasses.replace(
    VERDICTS["default-mult-more"], name="default-others-more", tasks=("cpu-chain", "cpu-arith"), seeds="318-321",
)  # fmt: skip
VERDICTS["default-others-eight"] = dataclasses.replace(
    VERDICTS["default-others-more"], name="default-others-eight", warm_starts=tuple(range(8)),
)  # fmt: skip
# Declared before its runs (docs/benchmark-history.md, "The default with each warm start's own seeds"): the default as
# shipped on all eight warm starts of the three tasks, four fresh seeds on each warm start and none shared, so that the
# interval narrows with the warm starts; the pilots are default-others-eight's and default-mult-eight's, copied.
VERDICTS["apart"] = dataclasses.replace(
    VERDICTS["default-mult-eight"], name="apart", tasks=("cpu-chain", "cpu-arith", "cpu-mult"), seeds="326-329",
    seeds_apart=True,
)  # fmt: skip

# Exploratory, on the pilot seeds (docs/benchmark-history.md, "What can be saved on cpu-mult's later warm starts"):
# the oracle, the oracle's rates drawn as the probe draws, and the default on warm starts 4-7, where the default saved
# least at fresh seeds; the uniform pairs are the pilots' own, copied.
VERDICTS["oracle-mult-late-pilot"] = dataclasses.replace(
    VERDICTS["default-mult-more"], name="oracle-mult-late-pilot", seeds="90-92",
    arms=("uniform", "probe-likelihood", "oracle", "oracle-drawn"),
)  # fmt: skip

# Declared before its runs (docs/benchmark-history.md, "The probe's draw with every prompt's rate, at apart's seeds"):
# the oracle and the oracle's rates drawn as the probe draws, on all eight of `cpu-mult`'s warm starts at the fresh
# seeds the default was last read on; uniform's and the default's pairs are apart's, copied.
VERDICTS["oracle-mult-apart"] = dataclasses.replace(
    VERDICTS["apart"], name="oracle-mult-apart", tasks=("cpu-mult",),
    arms=("uniform", "probe-likelihood", "oracle", "oracle-drawn"),
)  # fmt: skip

# Declared before its runs (docs/benchmark-history.md, "The default on cpu-mult at eight seeds a warm start"): apart's
# cpu-mult units with four fresh seeds more on each warm start (warm start k: 358 + 4k to 361 + 4k), read with apart's
# four (326 + 4k to 329 + 4k, copied): the worst warm start at the size the report says it needs.
VERDICTS["apart-mult-eight-seeds"] = dataclasses.replace(
    VERDICTS["apart"], name="apart-mult-eight-seeds", tasks=("cpu-mult",), seeds="326-329,358-361", seed_stride=4,
)  # fmt: skip

# Exploratory, on the pilot seeds (docs/benchmark-history.md, "Every prompt's likelihood after epoch 0 at cpu-mult"):
# the default as its declaring commit changed it (the history names the commit), its first refresh measuring every
# prompt and epoch 0's groups taking theirs, on all eight of cpu-mult's warm starts; the uniform pairs are the
# pilots' own, copied. The change was reverted after it: run from that commit, or read the rule as the bench arm
# probe-pool-first.
VERDICTS["pool-first-mult-pilot"] = dataclasses.replace(
    VERDICTS["apart"], name="pool-first-mult-pilot", tasks=("cpu-mult",), seeds="90-92", seeds_apart=False,
    arms=("uniform", "probe-likelihood"),
)  # fmt: skip

# Declared before its runs (docs/benchmark-history.md, "Every prompt's likelihood after epoch 0, across warm starts"):
# the pilot's change as its own arm beside the default, on apart's units at apart's seeds; uniform's and the
# default's pairs are apart's, copied.
VERDICTS["pool-first"] = dataclasses.replace(
    VERDICTS["apart"], name="pool-first", arms=("uniform", "probe-likelihood", "probe-pool-first"),
    primary=("probe-likelihood", "probe-pool-first"),
    schedule={**VERDICTS["apart"].schedule, "probe-pool-first": {"strategy": "probe-pool-first", "likelihood": True}},
)  # fmt: skip

# Declared before its runs (docs/benchmark-history.md, "Every prompt's likelihood after epoch 0, at fresh seeds"):
# pool-first's two seed-by-seed readings again on seeds that judged nothing, on cpu-chain and cpu-mult (warm start k:
# 358 + 4k to 361 + 4k); cpu-mult's uniform and default pairs are apart-mult-eight-seeds', copied.
VERDICTS["pool-first-fresh"] = dataclasses.replace(
    VERDICTS["pool-first"], name="pool-first-fresh", tasks=("cpu-chain", "cpu-mult"), seeds="358-361", seed_stride=4,
)  # fmt: skip

# Declared before its runs (docs/benchmark-history.md, "The control against the pool under the run's own policy"): the
# default on apart's units at the first two of apart's seeds on each warm start (warm start k: 326 + 4k and 327 + 4k),
# with the pool instrument on at the trained group's size; the uniform pairs are apart's, copied, and the default's
# run again, so that its points can be held against apart's (the instrument changes no draw).
VERDICTS["own-policy"] = dataclasses.replace(
    VERDICTS["apart"], name="own-policy", seeds="326-327", seed_stride=4, measure_pool=True,
)  # fmt: skip

# Assembled after both of its parts were read, not declared before runs (docs/benchmark-history.md, "The default on
# cpu-chain at eight seeds a warm start, assembled"): apart's cpu-chain pairs (warm start k: 326 + 4k to 329 + 4k) and
# pool-first-fresh's uniform and default pairs (358 + 4k to 361 + 4k), copied; no pair runs.
VERDICTS["apart-chain-eight-seeds"] = dataclasses.replace(
    VERDICTS["apart-mult-eight-seeds"], name="apart-chain-eight-seeds", tasks=("cpu-chain",),
)  # fmt: skip
