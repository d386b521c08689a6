"""The scale bench (`gaincurate bench scale`): seconds and peak memory of every strategy's steps, by pool size.

For each size it builds (once, then reuses) a synthetic scores directory (`gaincurate.lab.benchmarks.scale_data`),
then for every registered strategy runs, each in a fresh process through the real `gaincurate` console script:
`schedule init`, `schedule step` (epoch 0), `schedule step --feedback` `epochs` times with seeded synthetic
feedback (`rollouts` per prompt of the epoch), and `schedule status`. It records each command's wall seconds and
peak resident memory (`os.wait4`'s `ru_maxrss`, that process alone, spawned by a small launcher so it does not
inherit the bench's own peak). A strategy added to the registry joins without
a change here; one that needs a live policy (screen, pilot) is skipped, with the reason.

    gaincurate bench scale --sizes 10000,100000 --workdir /tmp/scale --out scale.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import ConfigError
from gaincurate.errors import setting as setting_name
from gaincurate.settings import at_least, setting

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True, kw_only=True)
class ScaleBench:
    """What one scale bench measures; `gaincurate bench scale` takes each field as an option."""

    sizes: tuple[int, ...] = setting(DEFAULT_SIZES, "Comma list of pool sizes (prompts).", cli="sizes")
    strategies: tuple[str, ...] = setting((), "Comma list of strategies.", cli="words", shown="every registered one")
    subset: int = setting(4096, "Prompts per epoch.", check=at_least(1))
    rollouts: int = setting(8, "Rollouts per prompt of an epoch's synthetic feedback.", check=at_least(1))
    epochs: int = setting(3, "`schedule step` steps with feedback after epoch 0.", check=at_least(1))
    width: int = setting(576, "Embedding width (SmolLM2-135M's hidden size; 0: no embeddings).", check=at_least(0))
    seed: int = setting(0, "Seed of the synthetic scores and feedback.")
    agreement: int = setting(
        100_000,
        "Up to this pool size, also compare bounded and unbounded reference sets (Spearman).",
        check=at_least(0),
    )
    workdir: str | None = setting(
        None, "Folder for the scores and run directories (scores kept and reused).", cli="path", shown="a temporary one"
    )

    def __post_init__(self) -> None:
        # `schedule init` refuses a subset larger than the pool: every strategy of that size would fail.
        smallest = min(self.sizes, default=self.subset)
        if self.subset > smallest:
            raise ConfigError(
                f"{setting_name('subset', self.subset)} is larger than the pool size {smallest:,} "
                f"({setting_name('sizes')}); pass {setting_name('subset')} {smallest} or less, or larger sizes"
            )


def console_script() -> list[str]:
    """The `gaincurate` console script beside this Python, or `python -m gaincurate` where there is none."""
    script = Path(sys.executable).with_name("gaincurate")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gaincurate"]


# Runs each timed command and reports its figures. On Linux a child's peak RSS starts at the high-water mark of the
# process that spawned it (vfork, then exec, carries it over): a command spawned by the bench itself, which holds the
# hidden pass rates and the agreement's matrices, would report the bench's size as its own. So every command is
# spawned by this small process, started once, whose own peak stays near 15 MB.
LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    started = time.perf_counter()
    with open(job["log"], "ab") as sink:
        pid = subprocess.Popen(job["command"], stdout=sink, stderr=sink).pid
        _, status, usage = os.wait4(pid, 0)
    print(json.dumps([time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                      os.waitstatus_to_exitcode(status)]), flush=True)
"""


class Launcher:
    """The small process that spawns and times every command of a bench (`LAUNCHER`)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)  # fmt: skip

    def timed(self, command: list[str], log: Path) -> dict[str, Any]:
        """Run one command in a fresh process: its wall seconds, peak RSS (GB), CPU seconds and exit status."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"command": command, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        seconds, cpu, maxrss, code = json.loads(self.process.stdout.readline())
        return {
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "peak_gb": round(maxrss / 2**20, 3),  # Linux gives KiB: GiB, the key keeps its old name
            "ok": code == 0,
        }

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()


def skip_reason(name: str) -> str | None:
    """Why a strategy is not benched (None: it is): it needs a live policy to measure candidates with."""
    from gaincurate.schedule.strategies.contract import POLICY
    from gaincurate.schedule.strategies.registry import STRATEGIES

    if POLICY in STRATEGIES[name].about.needs:
        return "needs a live policy to measure candidates (no model in this bench)"
    return None


def bench_strategy(
    name: str, scores: Path, run: Path, options: ScaleBench, pass_rates: Any, launcher: Launcher
) -> dict[str, Any]:
    """init, step (epoch 0), step with feedback `epochs` times, status: each timed in a fresh process."""
    import pyarrow.parquet as pq

    from gaincurate.lab.benchmarks.scale_data import write_feedback

    shutil.rmtree(run, ignore_errors=True)
    gaincurate, log = console_script(), run.with_suffix(".log")
    log.unlink(missing_ok=True)
    steps: dict[str, Any] = {}
    init = ["schedule", "init", "--scores", str(scores), "--run", str(run), "--strategy", name]
    steps["init"] = launcher.timed(
        [*gaincurate, *init, "--subset-size", str(options.subset), "--seed", str(options.seed)], log
    )
    steps["next_0"] = (
        launcher.timed([*gaincurate, "schedule", "step", "--run", str(run)], log) if steps["init"]["ok"] else None
    )
    for epoch in range(1, options.epochs + 1):
        previous = steps.get(f"next_{epoch - 1}")
        if not previous or not previous["ok"]:
            break
        drawn = pq.read_table(run / f"epoch-{epoch - 1:04d}.parquet", columns=["gc_id"]).column("gc_id").to_numpy()
        feedback = run.parent / f"{run.name}-feedback-{epoch - 1}.jsonl"
        write_feedback(feedback, drawn, pass_rates=pass_rates, rollouts=options.rollouts, seed=options.seed,
                       epoch=epoch - 1)  # fmt: skip
        step = ["schedule", "step", "--run", str(run), "--feedback", str(feedback)]
        steps[f"next_{epoch}"] = launcher.timed([*gaincurate, *step], log)
    failed = [step for step, value in steps.items() if value is not None and not value["ok"]]
    # After a failed step `status` would only fail on the missing run too, and its line would hide the cause: the
    # log's last line is then the failed step's own error.
    status = ["schedule", "status", "--run", str(run), "--json"]
    steps["status"] = None if failed else launcher.timed([*gaincurate, *status], log)
    failed += ["status"] if steps["status"] is not None and not steps["status"]["ok"] else []
    error = log.read_text(errors="replace").strip().splitlines()[-1:] if failed else []
    state = run / "state.json"
    return {
        "steps": steps,
        "state_mb": round(state.stat().st_size / 2**20, 3) if state.is_file() else None,
        **({"failed": failed, "error": error[0] if error else ""} if failed else {}),
    }


def reference_agreement(name: str, scores: Path, run: Path, hidden: np.ndarray) -> dict[str, Any] | None:
    """For dots and predict after the run's last step: Spearman of each prompt's estimate (and of its selection
    weight) with the reference set bounded, as the strategy runs, against every measured prompt attended to; for
    dots also the Pearson of its neighbours' prediction with the `hidden` pass rates over the prompts never
    measured, bounded and not (how much the bound costs its aim)."""
    from gaincurate.difficulty.estimate import estimate_pass_rates
    from gaincurate.difficulty.predict import reference_limit
    from gaincurate.difficulty.reference import embeddings_from_table
    from gaincurate.lab.strategies import predict
    from gaincurate.metrics import pearson, spearman
    from gaincurate.schedule.run.inputs import load_scores
    from gaincurate.schedule.run.rundir import load_run
    from gaincurate.schedule.strategies import dots

    state = load_run(run).schedule
    prompts = embeddings_from_table(load_scores(scores).table, str(scores))
    if name == "dots":
        strategy = dots.DotsStrategy(prompts)
        rates = strategy.measured(state)

        never = ~np.isin(strategy.gc_ids, rates.gc_ids)
        aim: dict[str, float] = {}

        def estimate(limit: int) -> np.ndarray:
            found = estimate_pass_rates(strategy.embeddings, strategy.gc_ids, rates, now=state.epoch - 1,
                                        tau=strategy.tau_attn, forget=strategy.forget, limit=limit)  # fmt: skip
            key = "pearson_hidden_bounded" if limit else "pearson_hidden_all"
            aim[key] = round(pearson(found.neighbour[never], hidden[never]), 4)
            return found.estimate

        bounded, full = estimate(strategy.reference_limit), estimate(0)
        weights = [dots.selection_log_weights(p, target=strategy.target, tau=strategy.tau) for p in (bounded, full)]
        measured, limit, extra = len(rates), strategy.reference_limit, aim
    elif name == "predict":
        strategy = predict.PredictStrategy(prompts.gc_ids, prompts.embeddings, predict.PredictStrategy.about.options())
        evidence = predict.Evidence.from_memory(state.memory)

        def rate(limit: int) -> np.ndarray:
            return predict.predict_informative(strategy.embeddings, strategy.gc_ids, evidence, now=state.epoch - 1,
                                               options=strategy.options, limit=limit).rate  # fmt: skip

        bounded, full = rate(reference_limit(len(prompts.gc_ids))), rate(0)
        weights = [bounded, full]
        measured, limit, extra = len(evidence.informative), reference_limit(len(prompts.gc_ids)), {}
    else:
        return None
    return {
        "measured": measured,
        "limit": limit,
        "spearman_estimate": round(spearman(bounded, full), 4),
        "spearman_selection": round(spearman(*weights), 4),
        "max_abs_difference": round(float(np.nanmax(np.abs(bounded - full))), 4),
        **extra,
    }


def machine() -> dict[str, Any]:
    """The CPU, its cores, the date and the load average when the bench started."""
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "unknown",
    ) if Path("/proc/cpuinfo").is_file() else "unknown"  # fmt: skip
    return {"cpu": model, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def bench_scale(options: ScaleBench, progress: Any = None) -> dict[str, Any]:
    """Every size, every strategy: the steps' seconds and peak memory, with the machine and its load."""
    import tempfile

    from gaincurate.lab.benchmarks.scale_data import hidden_pass_rates, write_synthetic_scores
    from gaincurate.schedule.strategies.registry import STRATEGIES

    names = options.strategies or tuple(STRATEGIES)
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown:
        raise ConfigError(f"--strategies: {', '.join(unknown)} not registered; choose from {', '.join(STRATEGIES)}")
    launcher = Launcher()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(options.workdir) if options.workdir else Path(scratch)
            workdir.mkdir(parents=True, exist_ok=True)
            result: dict[str, Any] = {"options": asdict(options), "machine": machine(), "sizes": {}}
            for size in options.sizes:
                started = time.perf_counter()
                scores = write_synthetic_scores(workdir / f"scores-{size}-w{options.width}-s{options.seed}", rows=size,
                                                width=options.width, seed=options.seed)  # fmt: skip
                rates = hidden_pass_rates(size, options.seed)
                per_size: dict[str, Any] = {"build_seconds": round(time.perf_counter() - started, 1), "strategies": {}}
                for name in names:
                    reason = skip_reason(name)
                    if reason is None:
                        load = os.getloadavg()[0]
                        line = bench_strategy(name, scores, workdir / f"run-{size}-{name}", options, rates, launcher)
                        line["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
                        if size <= options.agreement and "failed" not in line:
                            found = reference_agreement(name, scores, workdir / f"run-{size}-{name}", rates)
                            line |= {"agreement": found} if found else {}
                    else:
                        line = {"skipped": reason}
                    per_size["strategies"][name] = line
                    result["sizes"][str(size)] = per_size
                    # Kept as it grows: a million-prompt bench runs for hours on a shared machine, and may be stopped.
                    (workdir / "scale-partial.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
                    if progress is not None:
                        progress(size, name, line)
                result["sizes"][str(size)] = per_size
            return result
    finally:
        launcher.close()


def _cell(step: dict[str, Any] | None) -> str:
    if step is None:
        return "-"
    # CPU seconds beside the wall clock: on a shared machine the load average inflates the wall clock, not the CPU.
    cell = f"{step['seconds']:.1f} s (cpu {step['cpu_seconds']:.1f}) / {step['peak_gb']:.2f} GiB"  # KiB / 2 ** 20
    return cell + ("" if step["ok"] else " (failed)")


def result_lines(result: dict[str, Any]) -> list[str]:
    """A markdown table per size: each strategy's init, step (epoch 0, then with feedback: `next N`, as
    recorded), status."""
    epochs = result["options"]["epochs"]
    heads = ["init", "next 0", *(f"next {e}" for e in range(1, epochs + 1)), "status"]
    keys = ["init", "next_0", *(f"next_{e}" for e in range(1, epochs + 1)), "status"]
    lines = [f"machine: {result['machine']}"]
    for size, per_size in result["sizes"].items():
        lines += ["", f"{int(size):,} prompts (built in {per_size['build_seconds']} s)", ""]
        lines.append("| strategy | " + " | ".join(heads) + " | state.json | load |")
        lines.append("|---" * (len(heads) + 3) + "|")
        for name, line in per_size["strategies"].items():
            if "skipped" in line:
                lines.append(f"| {name} | skipped: {line['skipped']} |")
                continue
            cells = [_cell(line["steps"].get(key)) for key in keys]
            load = "-".join(f"{value:.1f}" for value in line["load"])
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {line['state_mb']} MB | {load} |")
            if "error" in line:
                lines.append(f"|   | error: {line['error'][:150]} |")
        lines += [agreement_line(name, line["agreement"]) for name, line in per_size["strategies"].items()
                  if "agreement" in line]  # fmt: skip
    return lines


def agreement_line(name: str, found: dict[str, Any]) -> str:
    """How the bounded reference set agrees with the full one; within the bound they are one set, so no agreement is
    claimed."""
    hidden = ""
    if "pearson_hidden_all" in found:
        hidden = (f"; Pearson with the hidden rates, never-measured prompts: {found['pearson_hidden_bounded']}"
                  f" (all measured: {found['pearson_hidden_all']})")  # fmt: skip
    if found["measured"] <= found["limit"]:
        bound = f"within the reference bound of {found['limit']}: the bounded set is every one, nothing to compare"
        return f"{name}: {found['measured']} measured prompts, {bound}{hidden}"
    return (
        f"{name}: reference set bounded to {found['limit']} of {found['measured']} measured prompts: "
        f"Spearman {found['spearman_estimate']} (estimates), {found['spearman_selection']} (selection), "
        f"largest difference {found['max_abs_difference']}{hidden}"
    )


def failures(result: dict[str, Any]) -> list[str]:
    """Each strategy run that failed at a step, as `SIZE NAME (STEP)`."""
    return [
        f"{int(size):,} {name} ({line['failed'][0]})"
        for size, per_size in result["sizes"].items()
        for name, line in per_size["strategies"].items()
        if line.get("failed")
    ]
