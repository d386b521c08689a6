"""What every (strategy, seed) pair of a bench shares, prepared once and cached in `OUT/assets/`.

* the data split: the training pool (`pool.jsonl`) and the held-out split (`eval.jsonl`), disjoint and seeded;
* the initial model: for `arith`, built and warm-started here (`model/`); for `math`, the configured model;
* the pool's scores (`scores/`, a `gaincurate score` output with embeddings, so `dots` can run), scored with
  the initial model, and the seconds and tokens that scoring took: every strategy but the baseline is charged them.
  The seconds are a long run's, the libraries already imported; the first import is timed apart (`warm.py`).

`assets.json` is written last; a bench killed before it prepares the assets again.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import ConfigError, MissingColumnError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.lab.benchmarks.curriculum import chain
from gaincurate.lab.benchmarks.curriculum import task as arith
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.warm import SCORING_FIRST_IMPORT, WARM_UP, scoring_first_import
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.shards import read_manifest

ASSETS = "assets"
LOCAL_TASKS = ("arith", "chain")  # a character vocabulary and a small Llama, warm-started in the bench
MARKER = "assets.json"


@dataclass(frozen=True)
class Assets:
    """The shared inputs of every pair; `messages`, `check` and `reward` depend on the task."""

    folder: Path
    model: str  # a local folder (arith, chain) or the configured model spec (math; None is the embedded model)
    scores_dir: Path
    pool: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    scoring_seconds: float
    scoring_first_import_seconds: float | None  # charged to no arm; None: not timed apart, in scoring_seconds
    scoring_tokens: int  # what the scoring engine put through the model (its manifest's count)
    warm_start: dict[str, Any] | None
    task: str

    def messages(self, question: str) -> list[dict[str, str]]:
        """The conversation of one question, built exactly as scoring (and so TRL's training prompt) builds it."""
        if self.task in LOCAL_TASKS:
            return [{"role": "user", "content": question}]
        from gaincurate.prompts import DEFAULT_FEW_SHOT, DEFAULT_SYSTEM_PROMPT, build_messages

        return build_messages(question, system_prompt=DEFAULT_SYSTEM_PROMPT, few_shot=DEFAULT_FEW_SHOT)

    @property
    def check(self) -> Callable[[str, Any], bool]:
        if self.task == "arith":
            return arith.is_correct
        if self.task == "chain":
            return chain.is_correct
        from gaincurate.rollout.answers import check_answer

        return check_answer

    @property
    def reward(self) -> Callable[..., list[float]]:
        return {"arith": arith.arithmetic_reward, "chain": chain_reward}.get(self.task, math_reward)


def chain_reward(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """TRL reward: 1.0 when the text after the completion's last `=` is the answer, the steps before it unread."""
    return [float(chain.is_correct(arith.completion_text(c), a)) for c, a in zip(completions, answer, strict=True)]


def math_reward(completions: list[Any], answer: list[Any], **kwargs: Any) -> list[float]:
    """TRL reward: 1.0 when the last `\\boxed{}` of the completion matches the answer (math-verify)."""
    from gaincurate.rollout.answers import check_answer

    return [float(check_answer(arith.completion_text(c), a)) for c, a in zip(completions, answer, strict=True)]


def prepare_assets(config: BenchConfig, out_dir: Path, progress: Progress = NULL_PROGRESS) -> Assets:
    """The bench's shared inputs, from `OUT/assets/` when complete, else built now (and cached there)."""
    folder = Path(out_dir) / ASSETS
    marker = folder / MARKER
    if not marker.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        info = _build(config, folder, progress)
        atomic_write_bytes(marker, (json.dumps(info, indent=2) + "\n").encode())
    info = json.loads(marker.read_text())
    return Assets(
        folder=folder,
        model=str(folder / "model") if config.task in LOCAL_TASKS else info["model"],
        scores_dir=folder / "scores",
        pool=_read_jsonl(folder / "pool.jsonl"),
        eval=_read_jsonl(folder / "eval.jsonl"),
        scoring_seconds=float(info["scoring_seconds"]),
        scoring_first_import_seconds=info.get(SCORING_FIRST_IMPORT),
        scoring_tokens=int(read_manifest(folder / "scores")["timings"]["tokens"]),
        warm_start=info.get("warm_start"),
        task=config.task,
    )


def _build(config: BenchConfig, folder: Path, progress: Progress) -> dict[str, Any]:
    progress.stage("preparing the data split")
    pool, held_out = split_rows(config)
    _write_jsonl(folder / "pool.jsonl", pool)
    _write_jsonl(folder / "eval.jsonl", held_out)
    warm_start = None
    model = config.model
    if config.task in LOCAL_TASKS:
        warm_start = _warm_start(config, folder / "model", progress)
        model = str(folder / "model")
    progress.stage("scoring the pool with the initial model")
    if (folder / "scores").exists():
        shutil.rmtree(folder / "scores")  # scored by a killed bench, perhaps half-way, and timed by nobody

    def score(rows: Path, out: Path) -> float:
        return score_pool(config, rows, model, out)

    first_import = scoring_first_import(score, folder / "pool.jsonl", folder / WARM_UP)
    seconds = score(folder / "pool.jsonl", folder / "scores")
    return {"model": model, "scoring_seconds": seconds, SCORING_FIRST_IMPORT: first_import, "warm_start": warm_start,
            "pool": len(pool), "eval": len(held_out)}  # fmt: skip


def warm_start_settings(config: BenchConfig) -> dict[str, Any]:
    return {"digits": list(config.warm_start_digits), "steps": config.warm_start_steps,
            "batch_size": config.warm_start_batch, "learning_rate": config.warm_start_lr,
            "shape": dict(config.model_shape), "seed": config.warm_start_seed,
            "noise": [[int(d), float(r)] for d, r in config.warm_start_noise],
            **({} if config.operator == "+" else {"operator": config.operator}),
            **({} if config.task == "arith" else {"task": config.task})}  # fmt: skip


def _warm_start(config: BenchConfig, folder: Path, progress: Progress) -> dict[str, Any]:
    """The warm-started model in `folder`: kept when a finished one with the same settings is there."""
    import torch

    settings = warm_start_settings(config)
    done = folder / arith.WARM_START_FILE
    if done.is_file() and json.loads(done.read_text()).get("settings") == settings:
        return json.loads(done.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return arith.warm_start(
            folder, digits=settings["digits"], steps=settings["steps"], batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"], shape=settings["shape"], seed=settings["seed"],
            noise=settings["noise"], operator=config.operator, task=config.task, progress=progress,
        )  # fmt: skip
    finally:
        torch.set_num_threads(previous)


def split_rows(config: BenchConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The training pool and the held-out split: disjoint, the same for every strategy and seed."""
    if config.task == "arith":
        pool = arith.problems(config.pool, seed=config.data_seed, operator=config.operator)
        held_out = arith.problems(config.eval, seed=config.data_seed + 1, exclude={r["problem"] for r in pool},
                                  operator=config.operator)  # fmt: skip
        return pool, held_out
    if config.task == "chain":
        pool = chain.problems(config.pool, seed=config.data_seed)
        held_out = chain.problems(config.eval, seed=config.data_seed + 1, exclude={r["problem"] for r in pool})
        return pool, held_out
    from gaincurate.data import load_rows
    from gaincurate.rollout.answers import gold_text

    # The bench has no column flags: its dataset names its columns `problem` and `answer`, as the bundled sample does.
    columns = "a bench config's dataset needs a 'problem' column (the question) and an 'answer' column; rename its"
    try:
        rows = load_rows(config.dataset, split=None, prompt_column="problem", limit=None).rows
    except MissingColumnError as missing:
        raise ConfigError(f"{columns} columns (dataset {config.dataset} has {', '.join(missing.available)})") from None
    if "answer" not in rows.column_names:
        raise ConfigError(f"{columns} columns (dataset {config.dataset} has {', '.join(rows.column_names)})")
    usable = [i for i, answer in enumerate(rows["answer"]) if answer not in (None, "")]
    order = np.random.default_rng(config.data_seed).permutation(len(usable))
    need = config.pool_rows + config.eval_rows
    if need > len(usable):
        raise ConfigError(
            f"dataset {config.dataset} has {len(usable)} rows with an answer; the bench config needs pool_rows + "
            f"eval_rows = {need}: lower them, or use a larger dataset"
        )
    chosen = [usable[i] for i in order[:need]]
    keep = [{"problem": rows[i]["problem"], "answer": gold_text(rows[i]["answer"])} for i in chosen]
    return keep[: config.pool_rows], keep[config.pool_rows :]


def score_pool(config: BenchConfig, pool_file: Path, model: str | None, out: Path) -> float:
    """Score the pool as a user would (`gaincurate score --embed`); returns the seconds it took."""
    import torch

    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    arith_format = {"system_prompt": None, "few_shot": ()} if config.task in LOCAL_TASKS else {}
    score_config = ScoreConfig(
        dataset=str(pool_file), prompt_column="problem", answer_column="answer", model=model, dtype="float32",
        device=config.device, embed=True, **arith_format,
    )  # fmt: skip
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    try:
        score(score_config, RunOptions(out=str(out), quiet=True))
    finally:
        torch.set_num_threads(previous)
    return time.perf_counter() - started


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
