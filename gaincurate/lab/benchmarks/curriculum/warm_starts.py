"""Running a verdict across warm starts: the task is the unit, each warm start one draw of it.

    gaincurate bench curriculum --bench warm-starts --out OUT --workers 2     # run (or resume) the declared verdict
    gaincurate bench curriculum --report OUT                                  # every table again, from the files

A warm-start verdict (`verdicts.py`: what one declares, and every one declared) names tasks (bundled benches), warm
starts (`warm_start_seed` values), arms and fresh seeds. Each (task, warm start) is a unit run in two benches of its
own, both ordinary bench folders:

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
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.interrupts import stop_workers
from gaincurate.lab.benchmarks.curriculum.verdicts import VERDICTS, WarmStartVerdict
from gaincurate.progress import NULL_PROGRESS, Progress

DECLARATION = "warm_starts.json"
PILOT, COMPARE = "pilot", "compare"
# The CPU flags that decide which kernels torch runs, and so the warm start a machine trains.
SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


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

        from gaincurate.lab.benchmarks.curriculum.bench import start_worker

        context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=start_worker)
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
    except KeyboardInterrupt:
        if pool is not None:
            stop_workers(pool)  # Ctrl-C: no queued job starts, and no running one trains on
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _settle(unit: _Unit, progress: Progress) -> None:
    """One of the unit's jobs has finished: advance it, and count it once it is done."""
    unit.running -= 1
    unit.advance()
    if unit.phase == "done":
        progress.advance(1)
