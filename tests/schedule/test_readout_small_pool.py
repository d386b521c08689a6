"""The savings readout on a small pilot and on enough groups, as a user sees it through the console script.

A small pool (40 prompts, 7 an epoch) cannot tell an epoch's zero-variance share from chance: `schedule init` says so
and what it would take, every epoch line of `schedule run` carries the readout in one line with what it rests on,
r says what it waits for, and a share far above uniform's estimate raises no warning there but says it rests on too
few groups. On 40 groups an epoch the same share does warn. `schedule status` names its fields in plain words.

The trainer is a stand-in script: every prompt whose gc_id is not a multiple of 4 gets rollouts that all agree (all
wrong or all right), so about three groups in four have zero variance, while the probe's estimates from random
embeddings sit near 0.5, where uniform's estimated share is low.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fake_scores import score_columns, write_scores_dir
from schedule_helpers import console_ok as gaincurate

from gaincurate.schedule.readout import CORRELATION_MIN_PROMPTS, ENOUGH_GROUPS, FAR_ABOVE, Thresholds
from gaincurate.schedule.readout import warnings as readout_warnings

ROLLOUTS = 4
TRAINER = """
import json, sys
import pyarrow.parquet as pq
data, feedback = sys.argv[1:3]
with open(feedback, "w") as out:
    for i in pq.read_table(data).column("gc_id").to_pylist():
        for r in range(ROLLOUTS):
            reward = float(r % 2) if i % 4 == 0 else float(i % 4 == 1)
            out.write(json.dumps({"gc_id": i, "reward": reward}) + "\\n")
""".replace("ROLLOUTS", str(ROLLOUTS))


def write_pool(directory: Path, prompts: int) -> Path:
    """`prompts` rows with random embeddings and no answer column (so no strategy can read an answer likelihood)."""
    ids = np.arange(prompts)
    rng = np.random.default_rng(3)
    columns = score_columns(rng.uniform(0.5, 2.0, prompts), 5 + ids % 40)
    embeddings = rng.normal(size=(prompts, 8)).astype(np.float16)
    columns["gc_embedding"] = pa.array(list(embeddings), pa.list_(pa.float16()))
    inputs = pa.table({"problem": [f"question {i}" for i in ids]})
    fingerprint = {"name": "toy", "fingerprint": f"toy-{prompts}"}
    return write_scores_dir(directory, inputs, columns, dataset=fingerprint, answer_column=None)


def run_probe(tmp_path: Path, prompts: int, subset: int, epochs: int, *init_options: str) -> tuple[str, str, list]:
    """`schedule init` then `schedule run` of the probe: init's stdout, run's stderr (its epoch lines), history."""
    scores, run = write_pool(tmp_path / "scores", prompts), tmp_path / "run"
    init = gaincurate("schedule", "init", "--scores", scores, "--run", run, "--strategy", "probe",
                      "--subset-size", subset, "--seed", 1, *init_options)  # fmt: skip
    (tmp_path / "trainer.py").write_text(TRAINER)
    trainer = shlex.quote(str(tmp_path / "trainer.py"))
    command = f"{shlex.quote(sys.executable)} {trainer} {{epoch_data}} {{feedback_file}}"
    done = gaincurate("schedule", "run", "--run", run, "--epochs", epochs, "--trainer-cmd", command)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return init.stdout, done.stderr, history


def epoch_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.match(r"epoch \d+ done; ", line)]


def far_above(readout: dict) -> bool:
    uniform = readout["uniform_zero_variance_estimate"]
    return uniform is not None and readout["zero_variance"] - uniform >= FAR_ABOVE


def test_a_small_pilots_readout_says_what_it_rests_on_and_what_it_lacks(tmp_path):
    init, stderr, history = run_probe(tmp_path, 40, 7, 3, "--band", "0.2,0.8")
    # init: an epoch of 7 is too small to tell, and r needs ceil(30 / 7) = 5 epochs drawn with estimates.
    assert (
        f"readout: 7 prompts an epoch are too few for an epoch's zero-variance share to tell from chance (it takes "
        f"{ENOUGH_GROUPS}: --subset-size {ENOUGH_GROUPS} or more); r shows after 5 epochs drawn with estimates"
    ) in init
    lines = epoch_lines(stderr)
    assert len(lines) == len(history) == 3
    # Each epoch line: the readout in one line, on how many groups, prompts and rollouts, and r waiting (probe draws
    # epoch 0 with no estimate, so r counts the prompts measured from epoch 1 on).
    for line, record, so_far in zip(lines, history, (0, 7, 14), strict=True):
        readout = record["readout"]
        assert f"readout on 7 rollout groups (7 prompts, {7 * ROLLOUTS} rollouts): " in line
        assert f"zero variance {readout['zero_variance']:.0%} ({readout['all_wrong']:.0%} all wrong" in line
        assert f"r: after {CORRELATION_MIN_PROMPTS} prompts measured with an estimate ({so_far} so far)" in line
        assert f"7 groups are too few to tell the share from chance (it takes {ENOUGH_GROUPS}); " in line
        assert "against uniform" in line and "a saving" not in line
        assert readout["groups"] == 7 and readout["correlated_prompts"] == so_far
    # The share is far above uniform's estimate in some epoch, and still nothing warns: 7 groups cannot tell.
    assert any(far_above(record["readout"]) for record in history)
    assert "far above" not in stderr and not any("far above" in w for r in history for w in r["readout"]["warnings"])

    status = gaincurate("schedule", "status", "--run", tmp_path / "run").stdout
    assert "latest, epoch 2: readout on 7 rollout groups" in status and "too few to tell" in status
    rows = [[cell.strip() for cell in row.split("│")[1:-1]] for row in status.splitlines() if row.count("│") == 9]
    assert [(row[0], row[1], row[-1]) for row in rows] == [
        ("0", "7", "after 30 (0 so far)"), ("1", "7", "after 30 (7 so far)"), ("2", "7", "after 30 (14 so far)")
    ]  # fmt: skip
    # Every field named in words: the probe's fit and the band's counts as they declare them, booleans as yes or no.
    assert "fit penalty" in status and "penalty at its range's limit" in status
    assert "picks in band" in status and "pool in band" in status and "band kept" not in status
    assert "strength" not in status and " true" not in status and " false" not in status


def test_a_share_far_above_uniforms_on_enough_groups_warns(tmp_path):
    init, stderr, history = run_probe(tmp_path, 160, 40, 3)
    assert "readout:" not in init  # 40 prompts an epoch are enough
    lines = epoch_lines(stderr)
    assert len(lines) == 3 and not any("too few" in line for line in lines)
    assert all(f"readout on 40 rollout groups (40 prompts, {40 * ROLLOUTS} rollouts)" in line for line in lines)
    for line, record in zip(lines[1:], history[1:], strict=True):  # epoch 1 on: 40 measured prompts and more
        assert f"r {record['readout']['correlation']:+.2f} over {record['readout']['correlated_prompts']} " in line
    warned = [any("far above the ~" in w for w in r["readout"]["warnings"]) for r in history]
    assert warned == [far_above(record["readout"]) for record in history] and any(warned)
    for record in history:
        if far_above(record["readout"]):
            readout = record["readout"]
            assert (
                f"warning: {readout['zero_variance']:.0%} of 40 rollout groups had zero reward variance, far above the "
                f"~{readout['uniform_zero_variance_estimate']:.0%} that the strategy's own estimates expect"
            ) in stderr
    shown = json.loads(gaincurate("schedule", "status", "--run", tmp_path / "run", "--json").stdout)
    assert shown["warnings"] == history[-1]["readout"]["warnings"]


@pytest.mark.parametrize(
    ("share", "uniform", "groups", "spread", "warns"),
    [
        (0.57, 0.17, 7, 0.5, False),  # a pilot's 7 groups: 40 points may be chance
        (0.57, 0.17, ENOUGH_GROUPS - 1, 0.5, False),
        (0.57, 0.17, ENOUGH_GROUPS, 0.5, True),
        (0.17 + FAR_ABOVE, 0.17, 500, 0.5, True),
        (0.16 + FAR_ABOVE, 0.17, 500, 0.5, False),  # just short of far above
        (0.57, 0.17, 500, 0.0, False),  # estimates all equal: uniform's estimate describes no pool
        (0.57, None, 500, None, False),  # no estimate to compare with
    ],
)
def test_far_above_uniform_needs_both_the_gap_and_the_groups(share, uniform, groups, spread, warns):
    readout = {"zero_variance": share, "all_wrong": share, "all_right": 0.0, "groups": groups,
               "uniform_zero_variance_estimate": uniform, "estimate_spread": spread}  # fmt: skip
    found = [w for w in readout_warnings(readout, None, Thresholds()) if "far above" in w]
    assert bool(found) == warns
