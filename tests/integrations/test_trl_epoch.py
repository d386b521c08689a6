"""`gaincurate schedule run` driving the shipped TRL script (`gaincurate example trl-epoch`), one epoch per process.

The scheduler is killed with SIGKILL right after the trainer finished epoch 0, and again after epoch 1 (before
it could note so), and a first attempt fails with a real error of the script; re-running the same command
continues, and every epoch is trained on its own subset exactly once in the result. The script keeps two
checkpoints (`save_total_limit=2`): the retried epoch 1 resumes from the second newest. Two epochs are enough for
both retries; that only the two newest checkpoints are left after more epochs is checked on the quickstart's
three (tests/integrations/test_quickstart.py).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytest.importorskip("trl")


from trl_helpers import NUM_GENERATIONS, PROMPTS_PER_STEP, SCHEDULE, SUBSET, score_prompts


def gaincurate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "gaincurate", *args], cwd=cwd, env=environment, capture_output=True, text=True
    )


def trainer_command(model: Path, *, generations: int, then: str = "") -> str:
    command = (
        f"{shlex.quote(sys.executable)} -m gaincurate example trl-epoch --model {shlex.quote(str(model))} "
        f"--data {{epoch_data}} --checkpoint {{checkpoint}} --output-dir {{output_dir}} "
        f"--feedback-file {{feedback_file}} --epoch {{epoch}} --total-epochs {EPOCHS} --reward parity "
        f"--learning-rate 0.01 --num-generations {generations} --prompts-per-step {PROMPTS_PER_STEP}"
    )
    return f"{command}; code=$?; {then} exit $code" if then else command


EPOCHS = 2  # epoch 0 retried from the base model, epoch 1 from the second newest checkpoint


def gc_ids(path: Path) -> list[int]:
    return pq.read_table(path, columns=["gc_id"]).column("gc_id").to_pylist()


@pytest.mark.slow
def test_schedule_run_with_the_trl_script_survives_failure_and_kill(tiny_llama, tmp_path):
    scores = score_prompts(tiny_llama, tmp_path / "scores")
    run = tmp_path / "run"
    options = [f"--{key.replace('_', '-')}={value}" for key, value in SCHEDULE.items()]
    init = gaincurate(
        "schedule", "init", "--strategy", "gain", "--scores", str(scores), "--run", str(run), *options, cwd=tmp_path
    )
    assert init.returncode == 0, init.stderr

    # 1. A real failure: the script rejects its arguments. The loop stops with the command's exit code and log tail.
    failed = gaincurate(
        "schedule", "run", "--run", str(run), "--epochs", str(EPOCHS),
        "--trainer-cmd", trainer_command(tiny_llama, generations=1), cwd=tmp_path,
    )  # fmt: skip
    assert failed.returncode == 2
    assert "exit code 2 on epoch 0" in failed.stderr
    assert "--num-generations must be at least 2" in failed.stderr
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 0 and not state["trained"]

    # 2. Fixed. The scheduler is SIGKILLed as soon as the trainer has finished epoch 0, and later epoch 1, before
    # it noted so: once per epoch (a marker file each).
    marker = shlex.quote(str(tmp_path / "killed-after-epoch-"))
    kill = f"if [ {{epoch}} -le 1 ] && [ ! -e {marker}{{epoch}} ]; then touch {marker}{{epoch}}; kill -9 $PPID; fi;"
    command = trainer_command(tiny_llama, generations=NUM_GENERATIONS, then=kill)
    schedule_run = ["schedule", "run", "--run", str(run), "--epochs", str(EPOCHS), "--trainer-cmd", command]
    killed = gaincurate(*schedule_run, cwd=tmp_path)
    assert killed.returncode == -9
    assert (run / "trainer" / "checkpoint-2").is_dir()
    assert json.loads((run / "state.json").read_text())["epoch"] == 0

    # 3. The same command again: epoch 0 is retried from the base model (its stale checkpoint is skipped), then
    # epoch 1 trains and the scheduler is killed again.
    killed = gaincurate(*schedule_run, cwd=tmp_path)
    assert killed.returncode == -9
    assert json.loads((run / "state.json").read_text())["epoch"] == 1

    # 4. Again: epoch 1 is retried from the second newest checkpoint (the end of epoch 0), and the run ends.
    resumed = gaincurate(*schedule_run, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    steps_per_epoch = SUBSET // PROMPTS_PER_STEP
    assert (
        f"resuming from {run / 'trainer' / f'checkpoint-{steps_per_epoch}'}"
        in (run / "logs" / "epoch-0001.log").read_text()
    )
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in history] == list(range(EPOCHS))
    for line in history:
        epoch = line["epoch"]
        subset = gc_ids(run / f"epoch-{epoch:04d}.parquet")
        assert line["subset_ids"] == subset and len(subset) == SUBSET
        # The rollouts the script wrote are exactly this epoch's prompts, num_generations each.
        rollouts = [json.loads(x) for x in (run / f"feedback-{epoch:04d}.jsonl").read_text().splitlines()]
        assert Counter(r["gc_id"] for r in rollouts) == {g: NUM_GENERATIONS for g in subset}
        assert line["accuracy"] == pytest.approx(sum(r["reward"] for r in rollouts) / len(rollouts))
        assert line["ang_source"] == "rescored"
        assert line["checkpoint"].endswith(f"checkpoint-{steps_per_epoch * (epoch + 1)}")
    # The trainer's own count: two epochs of two steps each, the second resumed from the end of the first.
    final = json.loads((run / "trainer" / f"checkpoint-{EPOCHS * steps_per_epoch}" / "trainer_state.json").read_text())
    assert final["global_step"] == EPOCHS * steps_per_epoch and final["epoch"] == float(EPOCHS)
    # Disk: the two checkpoints that end the epochs, the retried epoch's written again over the stale one.
    kept = sorted(p.name for p in (run / "trainer").iterdir() if p.name.startswith("checkpoint-"))
    assert kept == [f"checkpoint-{steps_per_epoch * e}" for e in (EPOCHS - 1, EPOCHS)]
