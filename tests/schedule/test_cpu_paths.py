"""A run started on the CPU's widest SIMD path and resumed on its narrowest is the run that never stopped (#40).

numpy and torch choose their vector loops per process, at import, and some of those loops round differently in
the last bit (numpy's AVX-512 `np.power(0.4, [2.0])` is 0.16, its baseline loop's 0.16000000000000003). So each
path is its own subprocess (`drive_on_path.py`): the widest this machine has, and the narrowest
(`simd_paths.narrowest_environment`: numpy's baseline loops, torch's default kernels). For every strategy whose
state holds floats, the recorded runs' inputs and feedback (`test_recorded_runs`) drive three runs: wide throughout,
wide for epochs 0-2 then resumed narrow for 3-4, and narrow throughout. All three write the same epoch files, the
same state.json and the same history (wall-clock timings aside), byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from schedule_helpers import snapshot, without_timings
from simd_paths import enabled_targets, narrowest_environment
from test_recorded_runs import EPOCHS, write_recorded_scores

from gaincurate.schedule.run.rundir import read_history

pytestmark = pytest.mark.determinism

DRIVER = Path(__file__).parent / "drive_on_path.py"
# mu, pass rates, posteriors, fitted estimates
FLOAT_STATE = ("gain", "dots", "dots-band", "mopps", "greso", "variance", "predict", "probe")
SWITCH = 3  # the resumed run's first epoch drawn on the narrow path


def drive(scores: Path, jobs: list[str], environment: dict[str, str]) -> list[str]:
    """Run `drive_on_path.py` in a process with `environment` added; the numpy targets it had enabled."""
    env = {**os.environ, **environment}
    if not environment:  # the widest path: nothing switched off, whatever the calling process was given
        env = {k: v for k, v in env.items() if k not in ("NPY_DISABLE_CPU_FEATURES", "ATEN_CPU_CAPABILITY")}
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(scores), *jobs], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["enabled"]


def test_a_run_resumed_on_the_narrowest_path_is_the_uninterrupted_run(tmp_path):
    scores = write_recorded_scores(tmp_path / "scores")
    runs = {name: {kind: tmp_path / kind / name for kind in ("wide", "resumed", "narrow")} for name in FLOAT_STATE}
    wide = [f"{name}:{runs[name]['wide']}:0:{EPOCHS - 1}" for name in FLOAT_STATE]
    wide += [f"{name}:{runs[name]['resumed']}:0:{SWITCH - 1}" for name in FLOAT_STATE]
    narrow = [f"{name}:{runs[name]['resumed']}:{SWITCH - 1}:{EPOCHS - 1}" for name in FLOAT_STATE]
    narrow += [f"{name}:{runs[name]['narrow']}:0:{EPOCHS - 1}" for name in FLOAT_STATE]

    widest = drive(scores, wide, {})
    narrowest = drive(scores, narrow, narrowest_environment())
    assert set(widest) >= set(enabled_targets()), "the wide process had fewer numpy loops than this one"
    assert narrowest == [], f"the narrow process still used numpy's {narrowest} loops"

    for name, run in runs.items():
        files = {kind: snapshot(folder) for kind, folder in run.items()}
        assert f"epoch-{EPOCHS - 1:04d}.parquet" in files["wide"]
        for kind in ("resumed", "narrow"):
            assert {k: v for k, v in files[kind].items() if k != "history.jsonl"} == {
                k: v for k, v in files["wide"].items() if k != "history.jsonl"
            }, f"{name}: the {kind} run's epoch files or state.json differ from the run on the widest path"
            history = without_timings(read_history(run[kind]))
            assert history == without_timings(read_history(run["wide"])), f"{name}: the {kind} run's history"
