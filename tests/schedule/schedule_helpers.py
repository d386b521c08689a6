"""Builders for the scheduler tests: tiny scores directories and checkpoint folders, written directly, and
a run driven for some epochs, its files hashed and its history without the wall-clock timings, and the check
that a step killed before state.json resumes to the same run.

No model is involved: a scores directory is written by `fake_scores.write_scores_dir` from made-up scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fake_scores import score_columns, write_scores_dir

from gaincurate.lab.strategies.screening import Screening
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run
from gaincurate.schedule.strategies.contract import PromptSet

SYSTEM_PROMPT = "Solve it."
FEW_SHOT = [{"question": "1 + 1?", "answer": "2"}]


def write_scores(
    directory: Path,
    n_prompts: int = 40,
    *,
    seed: int = 0,
    nan_ids: tuple[int, ...] = (),
    answer_column: str | None = "answer",
    debias: dict | None = None,
    shard_rows: int = 16,
) -> Path:
    """A complete scores directory of `n_prompts` rows with random but fixed scores and lengths."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.5, 2.0, n_prompts)
    scores[list(nan_ids)] = np.nan
    tokens = rng.integers(5, 60, n_prompts)
    inputs = pa.table(
        {
            "problem": [f"question {i}" for i in range(n_prompts)],
            "answer": [str(i % 7) for i in range(n_prompts)],
            "level": pa.array(rng.integers(1, 6, n_prompts), pa.int64()),
        }
    )
    return write_scores_dir(
        directory,
        inputs,
        score_columns(scores, tokens),
        dataset={"name": "toy-math", "fingerprint": f"toy-{n_prompts}-{seed}"},
        shard_rows=shard_rows,
        system_prompt=SYSTEM_PROMPT,
        few_shot=FEW_SHOT,
        answer_column=answer_column,
        debias=debias,
    )


def write_safetensors(path: Path, *, truncate: int = 0) -> None:
    """A one-tensor safetensors file; `truncate` cuts bytes off the end like a killed writer."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    header += b" " * (-len(header) % 8)
    data = len(header).to_bytes(8, "little") + header + bytes(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) - truncate] if truncate else data)


def write_hf_model(folder: Path, *, truncate: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    write_safetensors(folder / "model.safetensors", truncate=truncate)
    return folder


def write_trl_checkpoint(output_dir: Path, step: int, *, state: bool = True, truncate: int = 0) -> Path:
    """A Trainer's checkpoint-N: the model, training_args.bin (written before the state), then trainer_state.json."""
    folder = write_hf_model(output_dir / f"checkpoint-{step}", truncate=truncate)
    (folder / "training_args.bin").write_bytes(b"args")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def drive_epochs(
    run_dir: Path,
    scores_dir: Path,
    epochs: int,
    config: ScheduleConfig,
    feedback: Callable[[Path, Sequence[int], int], Path],
) -> None:
    """Init a run, write epoch 0, then take `epochs` steps on `feedback(path, the epoch's gc_ids, epoch)`."""
    init_run(run_dir, scores_dir, config)
    Run.open(run_dir).step()
    for epoch in range(epochs):
        ids = rundir.load_run(run_dir).schedule.subset_ids
        Run.open(run_dir).step(feedback=feedback(run_dir.parent / f"{run_dir.name}-{epoch}.jsonl", ids, epoch))


def snapshot(directory: Path) -> dict[str, str]:
    """The SHA-256 of every file directly in `directory`, by name."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def without_timings(lines: list[dict]) -> list[dict]:
    """History lines without `timings`, the one part of a run that is not deterministic."""
    return [{key: value for key, value in line.items() if key != "timings"} for line in lines]


def check_killed_step_resumes(
    tmp_path: Path,
    scores_dir: Path,
    config: ScheduleConfig,
    feedback: Callable[[Path, Sequence[int], int], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> list[dict]:
    """Three steps straight, and three with the last killed before state.json and then taken again: the same
    files and history. Returns the resumed run's history, without timings."""
    straight, run_dir = tmp_path / "straight", tmp_path / "killed"
    drive_epochs(straight, scores_dir, 3, config, feedback)
    drive_epochs(run_dir, scores_dir, 2, config, feedback)
    path = feedback(tmp_path / "killed-2.jsonl", rundir.load_run(run_dir).schedule.subset_ids, 2)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after the epoch file and the history line, before state.json

    with monkeypatch.context() as patch:
        patch.setattr(rundir, "save_run", killed)
        with pytest.raises(KeyboardInterrupt):
            Run.open(run_dir).step(feedback=path)
    assert rundir.load_run(run_dir).schedule.epoch == 2
    Run.open(run_dir).step(feedback=path)
    resumed, whole = snapshot(run_dir), snapshot(straight)
    assert {k: v for k, v in resumed.items() if k != "history.jsonl"} == {
        k: v for k, v in whole.items() if k != "history.jsonl"
    }
    history = without_timings(rundir.read_history(run_dir))
    assert history == without_timings(rundir.read_history(straight))
    return history


def prompt_set(count: int) -> PromptSet:
    """`count` prompts with equal scores and gc_ids that are not positions."""
    ids = np.arange(count, dtype=np.int64) * 3 + 5
    return PromptSet(ids, np.zeros(count), np.zeros(count), np.ones(count, dtype=np.int64))


def fixed_screener(rates_by_id: dict[int, float], calls: list) -> Callable:
    """A screener whose r rollouts give each gc_id exactly its rate in `rates_by_id`; every call is kept in `calls`."""

    def screen(gc_ids, epoch, rollouts):
        calls.append((np.asarray(gc_ids).copy(), epoch, rollouts))
        sums = np.array([rates_by_id[int(i)] * rollouts for i in gc_ids])
        return Screening(sums, np.full(len(gc_ids), rollouts), 3 * len(gc_ids))

    return screen


def console_ok(*args: object) -> subprocess.CompletedProcess:
    """The real console script with `args` (one torch thread, a wide terminal), asserted to succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
    env.pop("GAINCURATE_DEBUG", None)
    script = Path(sys.executable).with_name("gaincurate")
    done = subprocess.run([str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a refused command prints, after checking there is no other line and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("gaincurate: error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, a file with the SHA-256 of its bytes."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(folder.rglob("*"))}  # fmt: skip
