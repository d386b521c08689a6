"""`run_bench`: every (arm, seed) pair of a bench, resumable and in parallel, then the summary, tables and plot.

    OUT/bench.json          the config the bench runs, its analysis included (another is refused once a pair trains)
    OUT/assets/             the data split, the initial model and the pool's scores (shared by every pair)
    OUT/pairs/NAME.json     one finished pair: its evaluation points, costs and initial-weights digest
    OUT/work/NAME/          the pair in progress (its points so far); removed when it finishes
    OUT/runs/NAME/          the pair's run directory (history.jsonl, epoch files): `gaincurate schedule status` reads it
    OUT/work/NAME.lock      held by the process training NAME, so two workers (or two benches) never train one pair
    OUT/runs.jsonl, OUT/costs.jsonl, OUT/summary.json, OUT/table.md, OUT/curves.png
    OUT/readouts.jsonl      every epoch's savings readout; table.md shows it per arm (`...curriculum.readout`)
    OUT/diagnosis.jsonl     with `measure_pool`: every draw's pool measurement against the estimates (`...diagnosis`)

Pairs run seed by seed (every arm of the first seed, then the next...), so a partial bench already holds paired
comparisons. With `workers` > 1 each pair trains in its own spawned process with the config's torch threads;
every process loads the same initial weights from OUT/assets, so the starts are byte-identical (each pair
records the digest, and the summary refuses pairs whose digests differ). A pair's file is written atomically
when it finishes; a killed bench therefore resumes at the pairs without one and never reruns a finished pair.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.lab.benchmarks.curriculum.assets import ASSETS, MARKER, prepare_assets
from gaincurate.lab.benchmarks.curriculum.bundled import load_config
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig, parse_seeds
from gaincurate.lab.benchmarks.curriculum.interrupts import mark_worker, raise_if_stopped, stop_workers, stops_noted
from gaincurate.lab.benchmarks.curriculum.oracle import ARMS as ORACLE_ARMS
from gaincurate.lab.benchmarks.curriculum.run_options import BenchRun
from gaincurate.model import quiet_dependency_noise
from gaincurate.progress import NULL_PROGRESS, Progress

# runs.jsonl's columns: one line per evaluation point of every pair
POINT_KEYS = ("strategy", "seed", "step", "rollouts", "tokens", "prompt_tokens", "trained_tokens", "refresh_tokens",
              "scoring_tokens", "seconds", "accuracy", "zero_variance_fraction", "sampled_accuracy")  # fmt: skip

# A bench's identity: every config field that changes a run or its declared analysis. Arms and seeds may be
# extended by a later call; the name and the smoke size change nothing.
_NOT_IDENTITY = ("name", "strategies", "seeds", "smoke_overrides")
_STOP_CHECK_S = 0.5  # how often the bench, waiting on its workers, checks for a stop Python may have dropped


def pair_name(strategy: str, seed: int) -> str:
    return f"{strategy}-seed{seed}"


def known_strategies() -> tuple[str, ...]:
    """Every strategy the scheduler knows (read from its config, so new ones need no change here), plus the oracle
    arms (oracle, oracle-nonzero, oracle-drawn)."""
    from gaincurate.schedule.config import STRATEGIES

    return (*STRATEGIES, *ORACLE_ARMS)


def run_bench(
    config: BenchConfig | str | Path,
    out_dir: str | Path,
    *,
    progress: Progress = NULL_PROGRESS,
    **run: Any,
) -> dict[str, Any]:
    """Run (or resume) a training-efficiency bench into `out_dir`; returns the summary (also in summary.json).

    `config`: a `BenchConfig`, a bundled name (`BUNDLED` in bundled.py: `cpu-arith`, `cpu-mult`, ...) or a
    JSON/TOML file.
    `run`: `BenchRun`'s fields, by name (its defaults for the rest). `strategies`: arms: names the scheduler
    knows (`gaincurate.schedule.config.STRATEGIES`), `oracle`, or arms the config's `schedule` field defines;
    default the config's. `seeds`: an int count (0..K-1), or text: a range "A-B" or a list "A,B-C" (a number alone
    as text is refused: configs.parse_seeds); default the config's. `smoke`: the config's smoke size. `max_pairs`:
    train at most this many pairs in this call. `workers`: pairs trained at once, each in its own process.
    `progress` hears a stage per pair and `advance` per optimizer step (per finished pair with workers).
    Raises `ConfigError` for an unknown arm, a baseline or primary arm outside the arms, a bad seed spec, or an
    `out_dir` that holds another config's trained pairs. Ctrl-C or SIGTERM stops it within a step (KeyboardInterrupt),
    its workers with it; the finished pairs are kept (`interrupts.py`).
    """
    options = BenchRun(**run)  # an unknown keyword is a TypeError, as for any function
    strategies, seeds, smoke = options.strategies, options.seeds, options.smoke
    max_pairs, workers = options.max_pairs, options.workers
    if not isinstance(config, BenchConfig):
        config = load_config(config)
    if smoke:
        config = config.smoke()
    if workers < 1:
        raise ConfigError(f"--workers must be 1 or more; got {workers}")
    chosen = tuple(strategies or config.strategies)
    known = (*known_strategies(), *config.defined_arms())
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ConfigError(f"unknown arm {unknown[0]!r}; the bench runs {', '.join(known)}")
    _check_compared(config, chosen)
    seed_list = config.seed_list if seeds is None else parse_seeds(seeds)
    out = Path(out_dir)
    with stops_noted():
        claim(out, config)
        assets = prepare_assets(config, out, progress)
        todo = [(s, seed) for seed in seed_list for s in chosen if not _pair_file(out, s, seed).is_file()]
        todo = todo[:max_pairs] if max_pairs is not None else todo
        progress.set_total(len(todo) * config.steps)
        if workers == 1:
            for strategy, seed in todo:
                raise_if_stopped()
                progress.stage(f"{strategy}, seed {seed}")
                train_pair(config, out, strategy, seed, assets=assets, on_step=lambda: progress.advance(1))
                write_outputs(out, read_pairs(out, chosen))
        else:
            _train_in_workers(config, out, todo, workers, chosen, progress)
        raise_if_stopped()
    return finish(out, config, chosen)


def _check_compared(config: BenchConfig, chosen: tuple[str, ...]) -> None:
    """The baseline and the primary arms are among the bench's arms (the config's and this call's), or no
    comparison the analysis declares could be made."""
    arms = tuple(dict.fromkeys((*config.strategies, *chosen)))
    for role, arm in (("baseline", config.baseline), *(("primary arm", arm) for arm in config.primary)):
        if arm not in arms:
            raise ConfigError(
                f"{role} {arm} is not among the bench's arms ({', '.join(arms)}); add it to the strategies, or "
                f"declare one of them as the {role}"
            )


def _train_in_workers(config, out: Path, todo, workers: int, order, progress: Progress) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=start_worker)
    try:
        running = {pool.submit(train_pair, config, out, strategy, seed): (strategy, seed) for strategy, seed in todo}
        progress.stage(f"{len(todo)} pairs on {workers} workers")
        while running:
            done, _ = wait(running, timeout=_STOP_CHECK_S, return_when=FIRST_COMPLETED)
            raise_if_stopped()  # a stop Python dropped is acted on here, within _STOP_CHECK_S
            for future in done:
                strategy, seed = running.pop(future)
                future.result()  # a failed pair stops the bench with its error; finished pairs are kept
                progress.stage(f"finished {strategy}, seed {seed}")
                progress.advance(config.steps)
                write_outputs(out, read_pairs(out, order))
    except KeyboardInterrupt:
        stop_workers(pool)  # no queued pair starts, and no running one trains on
        raise
    finally:
        pool.shutdown(cancel_futures=True)  # a failed pair: the running ones finish and are kept, no other starts


@contextmanager
def _readout_warnings_kept() -> Iterator[None]:
    """The readout's warnings stay in each pair's history and in readouts.jsonl, not on stderr: an arm is there to be
    measured (uniform's wasted groups are the point), and a warning per epoch per pair buried the progress lines."""
    log = logging.getLogger("gaincurate.schedule.run.run")  # where the run object logs each readout warning
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def start_worker() -> None:
    """A worker gets SIGTERM when the bench process dies, even by SIGKILL (Linux), so no pair trains on orphaned; and
    it filters the dependencies' known import noise as the console script does, before its first pair imports trl.
    It ignores SIGINT: a Ctrl-C at the terminal reaches the whole process group, and the bench alone decides, stopping
    its workers (`interrupts.stop_workers`); a worker that caught it would fail its pair and take the next one."""
    import ctypes
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mark_worker()
    quiet_dependency_noise()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def train_pair(config: BenchConfig, out: Path, strategy: str, seed: int, *, assets=None, on_step=None) -> bool:
    """Train one pair and write its file; False when another process holds its lock (it is training it)."""
    name = pair_name(strategy, seed)
    lock = out / "work" / f"{name}.lock"
    if not _lock(lock):
        return False
    try:
        if _pair_file(out, strategy, seed).is_file():
            return True
        from gaincurate.lab.benchmarks.curriculum import bench_probes
        from gaincurate.lab.benchmarks.curriculum.harness import RUN, PairRun  # torch: only where a pair trains

        assets = assets or prepare_assets(config, out)
        work = out / "work" / name
        if work.exists():
            shutil.rmtree(work)  # a pair a killed bench left half-trained starts again from the initial model
        work.mkdir(parents=True)
        live = work / "points.jsonl"

        def note(point: dict[str, Any]) -> None:
            with live.open("a") as handle:
                handle.write(json.dumps(point) + "\n")

        def step() -> None:
            raise_if_stopped()  # a Ctrl-C Python dropped inside a `__del__` stops the pair here
            if on_step is not None:
                on_step()

        with _readout_warnings_kept(), bench_probes.registered():  # an arm may name the bench's own strategies
            record = PairRun(config, assets, strategy, seed, work, on_point=note, on_step=step).run()
        atomic_write_bytes(_pair_file(out, strategy, seed), (json.dumps(record, indent=1) + "\n").encode())
        if (work / RUN).is_dir():  # kept: `gaincurate schedule status --run OUT/runs/NAME` reads it like any run
            kept = out / "runs" / name
            shutil.rmtree(kept, ignore_errors=True)
            kept.parent.mkdir(exist_ok=True)
            shutil.move(str(work / RUN), kept)
        shutil.rmtree(work)
        return True
    finally:
        lock.unlink(missing_ok=True)


def _lock(path: Path) -> bool:
    """Take `path` (O_EXCL), or take it over when the process that holds it is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(path.read_text() or 0)
                os.kill(holder, 0)
                return False  # alive: that process trains the pair
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # stale: its process died
                continue
            except PermissionError:
                return False
        with os.fdopen(handle, "w") as stream:
            stream.write(str(os.getpid()))
        return True
    return False


def finish(out: Path, config: BenchConfig, order: tuple[str, ...] = ()) -> dict[str, Any]:
    """Rebuild runs.jsonl, costs.jsonl, readouts.jsonl, draws.jsonl, summary.json, table.md and curves.png from the
    finished pairs in `out`."""
    from gaincurate.lab.benchmarks.curriculum.diagnosis import arm_diagnosis, diagnosis_lines, diagnosis_markdown
    from gaincurate.lab.benchmarks.curriculum.draws import arm_draws, draw_lines, draws_markdown
    from gaincurate.lab.benchmarks.curriculum.plot import plot_curves
    from gaincurate.lab.benchmarks.curriculum.readout import arm_readouts, readout_markdown
    from gaincurate.lab.benchmarks.curriculum.report import markdown_table, whole_groups_line
    from gaincurate.lab.benchmarks.curriculum.summary import summarize

    pairs = read_pairs(out, order)
    digests = sorted({pair["initial_sha256"] for pair in pairs})
    if len(digests) > 1:
        raise ConfigError(f"{out}: pairs started from different weights ({len(digests)} digests); delete the bench")
    write_outputs(out, pairs)
    points = [p for pair in pairs for p in pair["points"]]
    summary = summarize(points, config, costs={(p["strategy"], p["seed"]): p["costs"] for p in pairs})
    summary["initial_sha256"] = digests[0] if digests else None
    summary["readout"] = arm_readouts(pairs)
    diagnosed = diagnosis_lines(pairs)
    if diagnosed:  # only benches run with `measure_pool`
        summary["diagnosis"] = arm_diagnosis(diagnosed)
    table = (
        markdown_table(summary)
        + whole_groups_line(points, list(summary["strategies"]))
        + readout_markdown(summary["readout"])
    )
    table += diagnosis_markdown(summary.get("diagnosis") or {})
    drawn = draw_lines(out, pairs)
    if drawn:  # pairs whose run directory was kept
        summary["draws"] = arm_draws(drawn)
        table += draws_markdown(summary["draws"])
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write_bytes(out / "table.md", table.encode())
    if points:
        plot_curves(points, out / "curves.png", title=config.name)
    return summary


def read_pairs(out: Path, order: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every finished pair in `out`, by seed, then in `order` (arms not in it after, by name)."""
    pairs = [json.loads(path.read_text()) for path in sorted((out / "pairs").glob("*.json"))]
    rank = {name: i for i, name in enumerate(order)}
    return sorted(pairs, key=lambda p: (p["seed"], rank.get(p["strategy"], len(rank)), p["strategy"]))


def write_outputs(out: Path, pairs: list[dict[str, Any]]) -> None:
    """runs.jsonl (every evaluation point), costs.jsonl (every pair's costs), readouts.jsonl (every epoch's
    savings readout) and draws.jsonl (what each pair trained on): what a report re-derives from."""
    from gaincurate.lab.benchmarks.curriculum.diagnosis import diagnosis_lines
    from gaincurate.lab.benchmarks.curriculum.draws import draw_lines
    from gaincurate.lab.benchmarks.curriculum.readout import readout_lines
    from gaincurate.lab.benchmarks.curriculum.report import DIAGNOSIS, DRAWS

    lines = [json.dumps({key: point[key] for key in POINT_KEYS}) + "\n" for pair in pairs for point in pair["points"]]
    atomic_write_bytes(out / "runs.jsonl", "".join(lines).encode())
    costs = [json.dumps({"strategy": p["strategy"], "seed": p["seed"], "costs": p["costs"]}) + "\n" for p in pairs]
    atomic_write_bytes(out / "costs.jsonl", "".join(costs).encode())
    readouts = [json.dumps(line) + "\n" for line in readout_lines(pairs)]
    atomic_write_bytes(out / "readouts.jsonl", "".join(readouts).encode())
    diagnosed = [json.dumps(line) + "\n" for line in diagnosis_lines(pairs)]
    if diagnosed:
        atomic_write_bytes(out / DIAGNOSIS, "".join(diagnosed).encode())
    drawn = [json.dumps(line) + "\n" for line in draw_lines(out, pairs)]
    if drawn:
        atomic_write_bytes(out / DRAWS, "".join(drawn).encode())


def _pair_file(out: Path, strategy: str, seed: int) -> Path:
    return out / "pairs" / f"{pair_name(strategy, seed)}.json"


def claim(out: Path, config: BenchConfig) -> None:
    """Record the config in `out/bench.json`, or check that the bench already there ran the same one; a bench that
    trained nothing (it stopped on a bad input) is taken over by the new config."""
    identity = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    stored_file = out / "bench.json"
    if stored_file.is_file():
        stored = json.loads(stored_file.read_text())
        # Through from_dict, so a field added since the bench ran reads as its default.
        stored_config = BenchConfig.from_dict(stored["config"]).to_dict()
        stored_identity = {k: v for k, v in stored_config.items() if k not in _NOT_IDENTITY}
        changed = sorted(k for k in identity.keys() | stored_identity.keys()
                         if identity.get(k) != stored_identity.get(k))  # fmt: skip
        if changed and not _trained_nothing(out):
            raise ConfigError(
                f"{out} holds a bench of another config (differs in {', '.join(changed)}); the analysis is declared "
                "before the runs, so pass another --out, or delete it to start again"
            )
        if changed:
            # No pair finished or trains, so no result is declared under the old config: the bench starts again
            # under this one, its assets prepared again (the warm start kept where its settings are the same).
            (out / ASSETS / MARKER).unlink(missing_ok=True)
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stored_file, (json.dumps({"config": config.to_dict()}, indent=2) + "\n").encode())


def _trained_nothing(out: Path) -> bool:
    """No finished pair in `out`, and no live process training one (a run that stopped on a bad input)."""
    if any((out / "pairs").glob("*.json")):
        return False
    for lock in (out / "work").glob("*.lock"):
        try:
            os.kill(int(lock.read_text() or 0), 0)
        except (ValueError, ProcessLookupError, FileNotFoundError):
            continue  # stale
        except PermissionError:
            pass
        return False
    return True
