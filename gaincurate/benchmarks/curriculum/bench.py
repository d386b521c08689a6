"""`run_bench`: every (strategy, seed) pair of a bench, resumable, then the summary, the table and the plot.

    OUT/bench.json          the config the bench runs (a resume with another config is refused)
    OUT/assets/             the data split, the initial model and the pool's scores (shared by every pair)
    OUT/pairs/NAME.json     one finished pair: its evaluation points, costs and initial-weights digest
    OUT/work/NAME/          the pair in progress (its points so far); removed when it finishes
    OUT/runs.jsonl          the evaluation points of every finished pair (rebuilt after each pair)
    OUT/summary.json, OUT/table.md, OUT/curves.png

Pairs run seed by seed (every strategy of seed 0, then seed 1, ...), so a partial bench already holds
paired comparisons. A pair's file is written atomically when it finishes; a killed bench therefore resumes
at the first pair without one, trains it from the start, and never reruns a finished pair.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gaincurate.benchmarks.curriculum.assets import prepare_assets
from gaincurate.benchmarks.curriculum.configs import BenchConfig, load_config
from gaincurate.benchmarks.curriculum.harness import POINT_KEYS, run_pair
from gaincurate.benchmarks.curriculum.oracle import NAME as ORACLE
from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.progress import NULL_PROGRESS, Progress

# A bench's identity: every config field that changes a run. Strategies and seeds may be extended by a later call;
# the summary's reading (headline, target, smoothing) and the name change no run.
_NOT_IDENTITY = ("name", "strategies", "seeds", "headline", "target", "target_fraction", "smooth", "smoke_overrides")


def pair_name(strategy: str, seed: int) -> str:
    return f"{strategy}-seed{seed}"


def known_strategies() -> tuple[str, ...]:
    """Every strategy the scheduler knows (read from its config, so new ones need no change here), plus oracle."""
    from gaincurate.schedule.config import STRATEGIES

    return (*STRATEGIES, ORACLE)


def run_bench(
    config: BenchConfig | str | Path,
    out_dir: str | Path,
    *,
    strategies: list[str] | tuple[str, ...] | None = None,
    seeds: int | None = None,
    smoke: bool = False,
    max_pairs: int | None = None,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, Any]:
    """Run (or resume) a training-efficiency bench into `out_dir`; returns the summary (also in summary.json).

    `config`: a `BenchConfig`, a bundled name (`cpu-arith`, `cpu-smollm2-math`, `gpu-math`) or a JSON/TOML file.
    `strategies`: names the scheduler knows (`gaincurate.schedule.config.STRATEGIES`) or `oracle`; default the
    config's. `seeds`: how many seeds (0..seeds-1); default the config's. `smoke`: the config's smoke size (one
    seed, a few steps). `max_pairs`: train at most this many pairs in this call, then summarize what is done (one
    pair per call keeps each call of a time-limited machine short; call again to go on). `progress` hears a stage
    per pair and one `advance(1)` per optimizer step.
    Raises `ConfigError` for an unknown strategy, or an `out_dir` that holds a bench of another config.
    """
    if not isinstance(config, BenchConfig):
        config = load_config(config)
    if smoke:
        config = config.smoke()
    chosen = tuple(strategies or config.strategies)
    known = known_strategies()
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ConfigError(f"unknown strategy {unknown[0]!r}; the bench runs {', '.join(known)}")
    seed_count = config.seeds if seeds is None else int(seeds)
    if seed_count < 1:
        raise ConfigError(f"--seeds must be 1 or more; got {seed_count}")
    out = Path(out_dir)
    _claim(out, config)
    assets = prepare_assets(config, out, progress)
    todo = [(s, seed) for seed in range(seed_count) for s in chosen if not _pair_file(out, s, seed).is_file()]
    todo = todo[:max_pairs] if max_pairs is not None else todo
    progress.set_total(len(todo) * config.steps)
    for strategy, seed in todo:
        progress.stage(f"{strategy}, seed {seed}")
        work = out / "work" / pair_name(strategy, seed)
        if work.exists():
            shutil.rmtree(work)  # a pair a killed bench left half-trained starts again from the initial model
        work.mkdir(parents=True)
        live = work / "points.jsonl"

        def note(point: dict[str, Any], live: Path = live) -> None:
            with live.open("a") as handle:
                handle.write(json.dumps(point) + "\n")

        record = run_pair(config, assets, strategy, seed, work, on_point=note, on_step=lambda: progress.advance(1))
        atomic_write_bytes(_pair_file(out, strategy, seed), (json.dumps(record, indent=1) + "\n").encode())
        shutil.rmtree(work)
        write_runs(out, read_pairs(out, chosen))
    return finish(out, config, chosen)


def finish(out: Path, config: BenchConfig, order: tuple[str, ...] = ()) -> dict[str, Any]:
    """Rebuild runs.jsonl, summary.json, table.md and curves.png from the finished pairs in `out`."""
    from gaincurate.benchmarks.curriculum.plot import plot_curves
    from gaincurate.benchmarks.curriculum.summary import markdown_table, summarize

    pairs = read_pairs(out, order)
    write_runs(out, pairs)
    points = [p for pair in pairs for p in pair["points"]]
    summary = summarize(points, config, costs={(p["strategy"], p["seed"]): p["costs"] for p in pairs})
    atomic_write_bytes(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    atomic_write_bytes(out / "table.md", markdown_table(summary).encode())
    if points:
        plot_curves(points, out / "curves.png", title=config.name)
    return summary


def read_pairs(out: Path, order: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every finished pair in `out`, by seed, then in `order` (strategies not in it after, by name)."""
    pairs = [json.loads(path.read_text()) for path in sorted((out / "pairs").glob("*.json"))]
    rank = {name: i for i, name in enumerate(order)}
    return sorted(pairs, key=lambda p: (p["seed"], rank.get(p["strategy"], len(rank)), p["strategy"]))


def write_runs(out: Path, pairs: list[dict[str, Any]]) -> None:
    lines = [json.dumps({key: point[key] for key in POINT_KEYS}) + "\n" for pair in pairs for point in pair["points"]]
    atomic_write_bytes(out / "runs.jsonl", "".join(lines).encode())


def _pair_file(out: Path, strategy: str, seed: int) -> Path:
    return out / "pairs" / f"{pair_name(strategy, seed)}.json"


def _claim(out: Path, config: BenchConfig) -> None:
    """Record the config in `out/bench.json`, or check that the bench already there ran the same one."""
    identity = {k: v for k, v in config.to_dict().items() if k not in _NOT_IDENTITY}
    stored_file = out / "bench.json"
    if stored_file.is_file():
        stored = json.loads(stored_file.read_text())
        stored_identity = {k: v for k, v in stored["config"].items() if k not in _NOT_IDENTITY}
        if stored_identity != identity:
            changed = sorted(k for k in identity.keys() | stored_identity.keys()
                             if identity.get(k) != stored_identity.get(k))  # fmt: skip
            raise ConfigError(
                f"{out} holds a bench of another config (differs in {', '.join(changed)}); "
                "pass another --out, or delete it to start again"
            )
    (out / "pairs").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(stored_file, (json.dumps({"config": config.to_dict()}, indent=2) + "\n").encode())
