"""Drive recorded runs (`test_recorded_runs.RUNS`) through some epochs on the SIMD path this process has.

tests/schedule/test_cpu_paths.py starts it in subprocesses, since numpy and torch choose their vector loops once, at
import. Each job is NAME:RUN:FIRST:STOP: `schedule init` and epoch 0 when FIRST is 0, then `schedule step --feedback`
with the recorded runs' feedback of epochs FIRST..STOP-1. It prints the dispatched numpy targets it used, as JSON.

    python tests/schedule/drive_on_path.py SCORES dots:/tmp/run:0:3 mopps:/tmp/other:3:5
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402
from simd_paths import enabled_targets  # noqa: E402
from test_recorded_runs import ROLLOUTS, RUNS, SETTINGS, feedback_rewards, schedule  # noqa: E402

from gaincurate.feedback_lines import append_rollouts  # noqa: E402
from gaincurate.schedule.run import rundir  # noqa: E402


def drive(name: str, run: Path, scores: Path, first: int, stop: int) -> None:
    if first == 0:
        schedule("init", "--scores", scores, "--run", run, *SETTINGS, *RUNS[name])
        schedule("step", "--run", run)
    for epoch in range(first, stop):
        ids = rundir.load_run(run).schedule.subset_ids.tolist()
        feedback = run.parent / f"{run.name}-rollouts-{epoch}.jsonl"
        append_rollouts(
            feedback, np.repeat(ids, ROLLOUTS).tolist(), [r for i in ids for r in feedback_rewards(i, epoch)]
        )
        schedule("step", "--run", run, "--feedback", feedback)


if __name__ == "__main__":
    scores = Path(sys.argv[1])
    for job in sys.argv[2:]:
        name, run, first, stop = job.split(":")
        drive(name, Path(run), scores, int(first), int(stop))
    print(json.dumps({"enabled": enabled_targets()}))
