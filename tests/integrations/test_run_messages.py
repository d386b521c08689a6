"""What a run says about itself (issue #28): a wrong --checkpoint path, and a run whose trainer has finished.

Through the installed console script in a subprocess (what a user sees), and through verl's on-save hook as verl
calls it. The trainer of `schedule run` is a stand-in script that starts fast (tests/integrations/test_command.py).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from schedule_helpers import write_scores, write_trl_checkpoint
from test_command import TRAINER

from gaincurate.errors import InputError
from gaincurate.integrations.verl.checkpoint import StepScheduleOnSave

CONSOLE_SCRIPT = Path(sys.executable).parent / "gaincurate"
INIT = ["--strategy", "gain", "--subset-size", "6", "--seed", "5", "--rescore", "subset"]


def console(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("GAINCURATE_DEBUG", None)
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("gaincurate: error: "), result.stderr
    return lines[0]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def epoch_0(tmp_path) -> Path:
    """A run at epoch 0 (uniform, re-scoring its subset) and that epoch's feedback in tmp_path/rewards.jsonl."""
    write_scores(tmp_path / "scores")
    assert console("schedule", "init", "--scores", "scores", "--run", "run", *INIT, cwd=tmp_path).returncode == 0
    assert console("schedule", "step", "--run", "run", cwd=tmp_path).returncode == 0
    ids = json.loads((tmp_path / "run" / "state.json").read_text())["positions"]
    ranking = json.loads((tmp_path / "run" / "state.json").read_text())["ranking"]
    lines = [json.dumps({"gc_id": ranking[p], "reward": float(p % 2)}) for p in ids]
    (tmp_path / "rewards.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "run"


def test_a_missing_checkpoint_is_refused_naming_the_newest_one_and_nothing_changes(epoch_0, tmp_path):
    write_trl_checkpoint(tmp_path / "out", 50)
    before = files(epoch_0)
    typo = console(
        "schedule", "step", "--run", "run", "--feedback", "rewards.jsonl", "--checkpoint", "out/checkpoint-100",
        cwd=tmp_path,
    )  # fmt: skip
    line = one_error_line(typo)
    assert "checkpoint out/checkpoint-100 does not exist; pass a folder the trainer saved" in line
    assert "the newest complete checkpoint in out is out/checkpoint-50" in line and "wait" not in line
    weights = console(
        "schedule", "step", "--run", "run", "--feedback", "rewards.jsonl",
        "--checkpoint", "out/checkpoint-50/model.safetensors", cwd=tmp_path,
    )  # fmt: skip
    assert "model.safetensors is a file, not a folder; pass a folder the trainer saved" in one_error_line(weights)
    assert files(epoch_0) == before


def test_verls_on_save_hook_refuses_a_missing_checkpoint_the_same_way(epoch_0, tmp_path):
    settings = {"run_dir": str(epoch_0), "feedback_file": str(tmp_path / "rewards.jsonl")}
    hook = StepScheduleOnSave({"gaincurate": settings})
    before = files(epoch_0)
    with pytest.raises(InputError, match=r"global_step_4 does not exist; pass a folder the trainer saved"):
        hook.on_save(trainer=None, global_step=4, checkpoint_dir=str(tmp_path / "ckpt" / "global_step_4"))
    assert files(epoch_0) == before


def test_status_says_a_run_is_finished_once_its_trainer_ended_and_not_while_it_trains_on(tmp_path):
    write_scores(tmp_path / "scores")
    init = ["--strategy", "uniform", "--subset-size", "6", "--seed", "5"]
    assert console("schedule", "init", "--scores", "scores", "--run", "run", *init, cwd=tmp_path).returncode == 0
    (tmp_path / "trainer.py").write_text(TRAINER)
    # The stand-in trainer also asks for the status while it trains (the third epoch, in the second call).
    status_now = f"{shlex.quote(str(CONSOLE_SCRIPT))} schedule status --run {{run_dir}} --json > during.json"
    trainer = (
        f"{shlex.quote(sys.executable)} trainer.py {{epoch_data}} {{checkpoint}} {{output_dir}} {{feedback_file}} "
        f"{{epoch}} && if [ {{epoch}} = 2 ]; then {status_now}; fi"
    )
    done = console("schedule", "run", "--run", "run", "--epochs", "2", "--trainer-cmd", trainer, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    status = console("schedule", "status", "--run", "run", cwd=tmp_path)
    assert status.returncode == 0 and "waiting for training" not in status.stdout
    assert "finished: the trainer ended after 2 epochs" in status.stdout
    assert "run: finished after 2 epochs" in status.stdout
    assert "drawn, not trained: finished" in status.stdout
    assert json.loads(console("schedule", "status", "--run", "run", "--json", cwd=tmp_path).stdout)["finished"]

    more = console("schedule", "run", "--run", "run", "--epochs", "3", "--trainer-cmd", trainer, cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    during = json.loads((tmp_path / "during.json").read_text())
    assert (during["epoch"], during["finished"]) == (2, False)  # training on: not finished
    status = console("schedule", "status", "--run", "run", cwd=tmp_path)
    assert "finished: the trainer ended after 3 epochs" in status.stdout


def test_the_trainer_runs_with_the_users_environment_not_the_one_that_quiets_our_libraries(tmp_path, monkeypatch):
    """`schedule run` turns other libraries' bars and warnings off for itself (off a terminal, or --quiet); the
    trainer it starts keeps its own bars in its log, and a variable the user set keeps the user's value."""
    quieting = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "TORCH_LOGS", "TRANSFORMERS_VERBOSITY")
    for name in quieting:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    write_scores(tmp_path / "scores")
    init = ["--strategy", "uniform", "--subset-size", "6", "--seed", "5"]
    assert console("schedule", "init", "--scores", "scores", "--run", "run", *init, cwd=tmp_path).returncode == 0
    (tmp_path / "trainer.py").write_text(TRAINER)
    seen = f"env | grep -E '^({'|'.join(quieting)})=' > seen.txt"
    arguments = "{epoch_data} {checkpoint} {output_dir} {feedback_file} {epoch}"
    trainer = f"{shlex.quote(sys.executable)} trainer.py {arguments} && {seen}"
    done = console(
        "schedule", "run", "--run", "run", "--epochs", "1", "--quiet", "--trainer-cmd", trainer, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "seen.txt").read_text() == "TRANSFORMERS_VERBOSITY=info\n"
