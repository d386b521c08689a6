"""The in-process curriculum on two processes (`torchrun`, gloo on CPU): a resumed epoch equals an unbroken one.

Each process takes its own rollouts; a checkpoint holds those of every process, and a run resumed from it (mid-epoch,
or at the epoch's last step before the epoch's end was stepped) feeds the scheduler exactly what the unbroken run
fed it. The worker (`trl_processes_worker.py`) trains; this file compares what the three runs wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from trl_helpers import score_prompts

from gaincurate.schedule.run.rundir import read_history

HERE = Path(__file__).resolve().parent
WORKER = HERE / "trl_processes_worker.py"


def saved_records(checkpoint: Path) -> list[dict]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]
    return state["GainCurriculumCallback"]["attributes"]["gaincurate_state"]["records"]


def test_two_processes_resumed_mid_epoch_feed_back_what_the_unbroken_run_fed(tiny_llama, tmp_path):
    scores = score_prompts(tiny_llama, tmp_path / "scores")
    paths = os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(WORKER),
              str(scores), str(tiny_llama), str(tmp_path)]  # fmt: skip
    done = subprocess.run(launch, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": paths},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]

    # The mid-epoch checkpoint holds the first step's rollouts of both processes: two prompts, two rollouts each.
    first_step = saved_records(tmp_path / "straight" / "out" / "checkpoint-1")
    assert len(first_step) == 4 and len({gc_id for gc_id, _ in first_step}) == 2

    def untimed(name: str) -> list[dict]:
        history = read_history(tmp_path / name / "run")
        return [{k: v for k, v in line.items() if k not in ("timings", "checkpoint")} for line in history]

    straight = untimed("straight")
    assert len(straight) == 1 and straight[0]["rollouts"] == 8
    for resumed in ("mid", "last"):
        assert untimed(resumed) == straight, resumed
        for name in ("feedback-0000.jsonl", "epoch-0001.parquet"):
            ours, theirs = (tmp_path / run / "run" / name for run in (resumed, "straight"))
            assert ours.read_bytes() == theirs.read_bytes(), f"{resumed}: {name}"
    weights = "checkpoint-2/model.safetensors"
    assert (tmp_path / "mid" / "out" / weights).read_bytes() == (tmp_path / "straight" / "out" / weights).read_bytes()
