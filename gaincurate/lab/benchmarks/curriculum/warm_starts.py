"""Verdicts across warm starts: the task is the unit, each warm start one draw of it.

    gaincurate bench curriculum --bench warm-starts --out OUT --workers 2     # run (or resume) the declared verdict
    gaincurate bench curriculum --report OUT                                  # every table again, from the files

A warm-start verdict names tasks (bundled benches), warm starts (`warm_start_seed` values), arms and fresh seeds.
Each (task, warm start) is a unit run in two benches of its own, both ordinary bench folders:

    OUT/warm_starts.json          the declaration, and each unit's CPU (model name, SIMD flags, torch's kernels)
    OUT/TASK/wsK/pilot/           uniform on the pilot seeds: its mean gain gives the unit's targets, by the
                                  declared rule (75% of the gain; 50% and 90% for sensitivity: `pilot_targets`)
    OUT/TASK/wsK/compare/         the arms on the fresh seeds, against those targets, from the same initial weights

Units run warm start by warm start (every task's first warm start, then every task's second...), the next unit's
pilot filling a worker while a unit ends, so a run cut short holds whole units on every task. The report reads each
unit's paired compute ratio to the target (`summary.py`: geometric mean over seeds, t interval, censored seeds
counted at their budget) and pools them (`pooled.py`, which reads the folders this module writes).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig, parse_seeds
from gaincurate.progress import NULL_PROGRESS, Progress

DECLARATION = "warm_starts.json"
PILOT, COMPARE = "pilot", "compare"
# `probe-default`: the default on the bench's rows, probe with the likelihood (decided from the scores, and on, every
# bench row having an answer) and the pause on. The plain `probe` arm is the embedding alone (the harness sets it), the
# default between the embedding verdict and the likelihood verdict (docs/benchmark-history.md).
PROBE_DEFAULT = {"strategy": "probe", "likelihood": True}
# probe on its embedding alone as it ran before the in-run control: no likelihood, never paused.
PROBE_ALONE = {"strategy": "probe", "likelihood": False, "pause": False}
# The CPU flags that decide which kernels torch runs, and so the warm start a machine trains.
SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


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
    schedule: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        times the warm start's place in the verdict (declared 326-329: the first warm start's, the next 330-333)."""
        if not self.seeds_apart:
            return self.seeds
        seeds = parse_seeds(self.seeds)
        shift = self.warm_starts.index(warm_start) * len(seeds)
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


def unit_folder(out: Path, task: str, warm_start: int) -> Path:
    return Path(out) / task / f"ws{warm_start}"


def cpu() -> dict[str, Any]:
    """This machine's CPU: model name, the SIMD flags that pick torch's kernels, and the kernels torch picked."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    lines = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    model = " ".join(lines.get("model name\t", lines.get("model name", platform.processor())).split())
    flags = set(lines.get("flags\t", lines.get("flags", "")).split())
    import torch

    return {"model": model, "flags": [flag for flag in SIMD_FLAGS if flag in flags],
            "torch_kernels": torch.backends.cpu.get_cpu_capability()}  # fmt: skip


def _declare(out: Path, verdict: WarmStartVerdict) -> dict[str, Any]:
    """Write the declaration into `out`, or check that the run already there is the same one."""
    path = out / DECLARATION
    declared = json.loads(json.dumps(dataclasses.asdict(verdict)))
    if path.is_file():
        kept = json.loads(path.read_text())
        if kept["verdict"] != declared:
            raise ConfigError(f"{out} holds another warm-start run; pass another --out, or delete it to start again")
        return kept
    kept = {"verdict": declared, "cpu": {}}
    atomic_write_bytes(path, (json.dumps(kept, indent=2) + "\n").encode())
    return kept


def _pair_job(config: BenchConfig, folder: Path, arm: str, seed: int) -> None:
    from gaincurate.lab.benchmarks.curriculum.bench import run_bench

    run_bench(config, folder, strategies=(arm,), seeds=f"{seed}-{seed}")


def _assets_job(config: BenchConfig, folder: Path) -> None:
    from gaincurate.lab.benchmarks.curriculum.assets import prepare_assets

    prepare_assets(config, folder)


def _missing(config: BenchConfig, folder: Path) -> list[tuple]:
    """The pair jobs of `config` with no finished file in `folder`, seed by seed."""
    from gaincurate.lab.benchmarks.curriculum.bench import pair_name

    return [(_pair_job, config, folder, arm, seed) for seed in config.seed_list for arm in config.strategies
            if not (folder / "pairs" / f"{pair_name(arm, seed)}.json").is_file()]  # fmt: skip


class _Unit:
    """One (task, warm start): its assets, then its pilot, then its comparison; each phase a list of jobs."""

    def __init__(self, verdict: WarmStartVerdict, out: Path, task: str, warm_start: int) -> None:
        self.verdict, self.task, self.warm_start = verdict, task, warm_start
        self.folder = unit_folder(out, task, warm_start)
        self.pilot = verdict.pilot_config(task, warm_start)
        self.phase, self.running = "assets", 0
        marker = self.folder / PILOT / "assets" / "assets.json"
        self.pending = [] if marker.is_file() else [(_assets_job, self.pilot, self.folder / PILOT)]

    def advance(self) -> None:
        """Step through phases whose jobs are all done (finishing each bench as its phase ends)."""
        from gaincurate.lab.benchmarks.curriculum.bench import claim, finish
        from gaincurate.lab.benchmarks.curriculum.report import pilot_targets

        # Each phase claims its folder before finishing it: one assembled wholly from copied pairs trains nothing,
        # and would otherwise have no bench.json for a report to read (or to check the copies against).
        while not self.pending and not self.running and self.phase != "done":
            if self.phase == "assets":
                self.phase, self.pending = PILOT, _missing(self.pilot, self.folder / PILOT)
            elif self.phase == PILOT:
                claim(self.folder / PILOT, self.pilot)
                summary = finish(self.folder / PILOT, self.pilot, self.pilot.strategies)
                targets = pilot_targets(summary)
                if not targets and not self.verdict.smoke:  # no gain, no target by the declared rule
                    self.phase = "done"
                    continue
                compare = self.verdict.compare_config(self.task, self.warm_start, targets)
                if not (self.folder / COMPARE / "assets").is_dir():  # the pilot's weights, byte for byte
                    shutil.copytree(self.folder / PILOT / "assets", self.folder / COMPARE / "assets")
                self.compare, self.phase = compare, COMPARE
                self.pending = _missing(compare, self.folder / COMPARE)
            else:
                if (self.folder / COMPARE / "pairs").is_dir():
                    claim(self.folder / COMPARE, self.compare)
                    finish(self.folder / COMPARE, self.compare, self.compare.strategies)
                self.phase = "done"


def run_warm_starts(
    verdict: WarmStartVerdict | str, out: Path, *, workers: int = 1, smoke: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> None:  # fmt: skip
    """Run (or resume) a warm-start verdict into `out`; `pooled.report(out)` reads it."""
    if not isinstance(verdict, WarmStartVerdict):
        verdict = VERDICTS[verdict]
    verdict = verdict.smoked() if smoke else verdict
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept = _declare(out, verdict)
    units = [_Unit(verdict, out, task, k) for task, k in verdict.units()]
    for unit in units:
        kept["cpu"].setdefault(f"{unit.task}/ws{unit.warm_start}", cpu())
    atomic_write_bytes(out / DECLARATION, (json.dumps(kept, indent=2) + "\n").encode())
    _drive(units, workers, progress)


def _drive(units: list[_Unit], workers: int, progress: Progress) -> None:
    """Run every unit's jobs, the earliest unit's first, at most `workers` at once (in this process with one)."""
    progress.set_total(len(units))
    for unit in units:
        unit.advance()
    progress.advance(sum(unit.phase == "done" for unit in units))
    pool = None
    if workers > 1:
        import multiprocessing

        from gaincurate.lab.benchmarks.curriculum.bench import _die_with_parent

        context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_die_with_parent)
    running: dict[Any, _Unit] = {}
    try:
        while True:
            for unit in units:
                while unit.pending and len(running) < workers:
                    job, *args = unit.pending.pop(0)
                    pair = f", {args[2]} seed {args[3]}" if len(args) > 2 else ""
                    progress.stage(f"{unit.task} warm start {unit.warm_start}: {unit.phase}{pair}")
                    unit.running += 1
                    if pool is None:
                        job(*args)
                        _settle(unit, progress)
                    else:
                        running[pool.submit(job, *args)] = unit
            if not running:
                if all(unit.phase == "done" for unit in units):
                    return
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                unit = running.pop(future)
                future.result()  # a failed job stops the run with its error; finished pairs are kept
                _settle(unit, progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _settle(unit: _Unit, progress: Progress) -> None:
    """One of the unit's jobs has finished: advance it, and count it once it is done."""
    unit.running -= 1
    unit.advance()
    if unit.phase == "done":
        progress.advance(1)
