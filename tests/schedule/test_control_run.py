"""The run's own control, as a user sees it through the console script (`schedule init`, `schedule run`, `status`).

* Coin-flip rewards (every rollout right with probability 0.5, whatever the prompt): 200 prompts, 5 epochs of the
  default strategy. Nothing can be saved, and nothing anywhere (epoch lines, history, status) claims a saving.
* An improving simulated policy whose pass rates follow the first embedding column: the probe learns them and its
  aimed groups are truly more often informative than its uniform slice's. The run claims the saving from the first
  epoch whose interval (recomputed here from the history's counts, at that look's level) lies above 0, and in no
  epoch before.
* Coin flips for 14 epochs: the aim saves nothing, so the run pauses aiming and draws uniformly; status's header,
  its readout table and every epoch line say which epochs were drawn so.
* A slice of the whole epoch (`--uniform-share 1.0`): no aimed group, so no look and no arm's share to print.
* Every reward wrong for 8 epochs: the estimates are all equal and the run pauses; its charts draw no number where
  the status table shows none and mark the epochs drawn paused, and status piped folds its cells, cutting none.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fake_scores import score_columns, write_scores_dir
from schedule_helpers import console_ok as gaincurate

from gaincurate.schedule.control import SAVING, Arm, difference_interval, look_z
from gaincurate.schedule.readout_words import epoch_words
from gaincurate.schedule.strategies.contract import NO_ESTIMATE

ROLLOUTS = 4
# The pass rate of prompt i in the epoch file named `data`: COIN, or a logistic of its difficulty that rises by
# epoch. Each rollout's reward is a seeded draw from its name, so a rerun writes the same lines.
TRAINER = """
import json, math, random, sys
import pyarrow.parquet as pq
data, feedback, mode = sys.argv[1:4]
epoch = int(data.rsplit("epoch-", 1)[1].split(".")[0])
with open(feedback, "w") as out:
    for i in pq.read_table(data).column("gc_id").to_pylist():
        difficulty = ((i * 7919) % 400) / 400 * 8 - 4
        p = {"coin": 0.5, "wrong": 0.0}.get(mode, 1 / (1 + math.exp(-(2 * difficulty + 0.5 * epoch))))
        for r in range(ROLLOUTS):
            reward = float(random.Random(f"{epoch}-{i}-{r}").random() < p)
            out.write(json.dumps({"gc_id": i, "reward": reward}) + "\\n")
""".replace("ROLLOUTS", str(ROLLOUTS))


def run(tmp_path: Path, mode: str, prompts: int, subset: int, epochs: int, *init: object) -> tuple[str, str, list]:
    """The default strategy (with `init`'s further options) over a pool whose first embedding column is each prompt's
    difficulty: run's stderr, status's stdout, history."""
    ids = np.arange(prompts)
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(prompts, 8))
    embeddings[:, 0] = ((ids * 7919) % 400) / 400 * 8 - 4
    columns = score_columns(rng.uniform(0.5, 2.0, prompts), 5 + ids % 40)
    columns["gc_embedding"] = pa.array(list(embeddings.astype(np.float16)), pa.list_(pa.float16()))
    inputs = pa.table({"problem": [f"question {i}" for i in ids]})
    scores = write_scores_dir(tmp_path / "scores", inputs, columns, dataset={"name": "toy", "fingerprint": mode},
                              answer_column=None)  # fmt: skip
    directory = tmp_path / "run"
    gaincurate("schedule", "init", "--scores", scores, "--run", directory, "--subset-size", subset, "--seed", 3, *init)
    (tmp_path / "trainer.py").write_text(TRAINER)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(tmp_path / 'trainer.py'))} {{epoch_data}} "
    command += f"{{feedback_file}} {mode}"
    done = gaincurate("schedule", "run", "--run", directory, "--epochs", epochs, "--trainer-cmd", command)
    history = [json.loads(line) for line in (directory / "history.jsonl").read_text().splitlines()]
    status = gaincurate("schedule", "status", "--run", directory).stdout
    return done.stderr, status, history


def test_coin_flip_rewards_claim_no_saving_anywhere(tmp_path):
    stderr, status, history = run(tmp_path, "coin", 200, 60, 5)
    assert len(history) == 5
    readouts = [line["readout"] for line in history]
    assert all(readout["verdict"] != SAVING for readout in readouts)
    assert any(readout.get("control_groups") for readout in readouts)  # the default keeps a control
    for text in (stderr, status):
        assert "a saving" not in text and "would have spent" not in text
        assert "against uniform" in text
    assert "not yet distinguishable" in status or "a loss" in status


def test_an_aim_that_is_truly_better_is_claimed_once_the_interval_allows(tmp_path):
    stderr, status, history = run(tmp_path, "improving", 400, 100, 6)
    aimed, control, claimed, looks = Arm(), Arm(), [], 0
    for line in history:
        readout = line["readout"]
        if readout.get("control_groups"):
            looks += 1
            assert len(line["control_ids"]) == readout["control_groups"]  # the slice's prompts, listed
            assert set(line["control_ids"]) <= set(line["subset_ids"])
            aimed += Arm(readout["aimed_groups"], round(readout["aimed_informative"] * readout["aimed_groups"]), 0)
            control += Arm(
                readout["control_groups"], round(readout["control_informative"] * readout["control_groups"]), 0
            )
        allows = bool(control.groups) and difference_interval(aimed, control, look_z(looks))[0] > 0
        assert (readout["verdict"] == SAVING) == allows, (line["epoch"], readout)
        claimed.append(allows)
    assert claimed[-1] and not claimed[0], claimed  # claimed by the end, never before the interval allows
    lines = [line for line in stderr.splitlines() if "readout on" in line]
    assert len(lines) == len(history)
    assert [("a saving" in line) for line in lines] == claimed
    assert "against uniform, measured: a saving in informative groups" in status
    assert "aim now: aiming\n" in status  # the header says the run aims, as it does
    assert all("aim_change" not in line["readout"] for line in history)  # a true saving is never paused


def epoch_lines(stderr: str) -> list[str]:
    """`schedule run`'s line per epoch, with its readout."""
    return [line for line in stderr.splitlines() if "readout on" in line]


def test_epoch_zero_says_the_slice_starts_at_epoch_one(tmp_path):
    stderr, _, history = run(tmp_path, "coin", 200, 60, 2)
    first, second = epoch_lines(stderr)
    assert "against uniform: no control yet (epoch 0 is drawn wholly uniformly; the uniform slice, where the " in first
    assert "keeps no uniform slice" not in stderr
    assert history[1]["readout"]["control_groups"]  # the slice, from epoch 1 on
    assert "in the uniform slice" in second
    # A strategy that keeps no estimate (uniform, gain) draws no slice and no aim: its epoch 0 says no control.
    keeps_none = history[0] | {"readout": history[0]["readout"] | {"estimate": NO_ESTIMATE}}
    assert "against uniform: no control (the draw keeps no uniform slice" in epoch_words(keeps_none)


def test_status_after_epoch_zero_says_the_control_is_yet_to_come(tmp_path):
    _, status, _ = run(tmp_path, "coin", 200, 60, 1)
    assert "of 240; against uniform: no control yet (epoch 0" in status and "keeps no uniform slice" not in status
    assert "r: after 30 prompts measured with an estimate (0 so far)" in status  # epoch 0's had none


def test_a_paused_run_says_so_in_status_and_in_every_epoch_line_drawn_uniformly(tmp_path):
    stderr, status, history = run(tmp_path, "coin", 200, 60, 14)
    # Epoch k is drawn uniformly exactly when the run was paused after epoch k - 1.
    paused = [k for k in range(1, len(history)) if history[k - 1]["readout"].get("aim") == "paused"]
    assert paused and paused == list(range(paused[0], len(history))), paused  # coin flips never resume it
    for line in history:
        assert ("control_ids" in line) == (line["epoch"] not in paused and line["epoch"] > 0)  # uniform: no slice
    lines = epoch_lines(stderr)
    assert len(lines) == len(history)
    for epoch, line in enumerate(lines):
        assert ("drawn uniformly (aiming paused)" in line) == (epoch in paused), line
        assert ("aimed at" in line) == (epoch not in paused and epoch > 0), line
        if "not yet distinguishable" in line:  # a paused draw adds no group to the comparison: no count to wait for
            assert ("more groups would tell" in line) == (epoch not in paused), line
            assert ("the comparison waits while aiming is paused" in line) == (epoch in paused), line
    assert f"aim now: paused since epoch {paused[0]}: epochs are drawn uniformly" in status
    rows = {int(row.split("│")[1]): row for row in status.splitlines() if row.count("│") == 9}
    readout_rows = {epoch: row for epoch, row in rows.items() if "%" in row}
    assert sorted(readout_rows) == list(range(len(history)))
    for epoch, row in readout_rows.items():
        assert ("uniform (paused)" in row) == (epoch in paused), row
        assert ("in band" in row) == (epoch not in paused and epoch > 0), row
    assert f"latest, epoch {len(history) - 1}: " in status and "drawn uniformly (aiming paused)" in status


def test_a_slice_of_the_whole_epoch_makes_no_look_and_prints_no_aimed_share(tmp_path):
    stderr, status, history = run(tmp_path, "coin", 200, 60, 3, "--uniform-share", 1.0)
    readouts = [line["readout"] for line in history[1:]]
    assert all(r["aimed_groups"] == 0 and r["aimed_informative"] is None and r["control_groups"] for r in readouts)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["tally"]["looks"] == 0  # nothing was compared, so no later interval widens for it
    for readout in readouts:
        cell = f"- / {readout['control_informative']:.0%}"
        assert cell in status, status
    for line in epoch_lines(stderr)[1:]:
        assert "this epoch the uniform slice is the whole epoch" in line, line
        assert "aimed at" not in line and "aimed groups" not in line and "nothing to compare" in line, line
    assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def never_varies(tmp_path_factory) -> tuple[Path, list, list[int]]:
    """8 epochs with every reward wrong: the run directory, its history and the epochs drawn while aiming was paused
    (epoch k exactly when the run was paused after epoch k - 1)."""
    root = tmp_path_factory.mktemp("wrong")
    _, _, history = run(root, "wrong", 200, 60, 8)
    paused = [k for k in range(1, len(history)) if history[k - 1]["readout"].get("aim") == "paused"]
    return root / "run", history, paused


def test_the_charts_draw_no_number_the_status_table_withholds_and_mark_the_paused_epochs(never_varies, tmp_path):
    """All-equal estimates: the table says "no estimate" of uniform's share, so neither chart draws one (the text
    chart's `u` coincided with the measured 100% as a `*`); paused epochs: the table says "uniform (paused)", so the
    PNG draws no aimed-at estimate for them and shades them, and the text chart puts a `p` under each."""
    directory, history, paused = never_varies
    assert paused and all(line["readout"]["estimate_spread"] == 0.0 for line in history[1:])
    gaincurate("schedule", "status", "--run", directory, "--plot", tmp_path / "chart.txt")
    chart = (tmp_path / "chart.txt").read_text().splitlines()
    assert chart[0] == " 1.0 |" + " z " * len(history) + "   ", chart  # zero variance 100%, nothing else
    assert chart[12] == "paused" + "".join(" p " if k in paused else "   " for k in range(len(history) + 1)), chart
    assert chart[-1].endswith(", p = drawn uniformly: aiming paused (probe)"), chart
    pytest.importorskip("matplotlib")
    from gaincurate.schedule.run.plot import figure

    status = json.loads(gaincurate("schedule", "status", "--run", directory, "--json").stdout)
    readout = figure(status).axes[1]
    drawn = {line.get_label(): list(line.get_xdata()) for line in readout.get_lines()}
    assert "uniform's zero-variance by the strategy's model" not in drawn, drawn
    assert drawn["estimated pass rate of the picks"] == [k for k in range(1, len(history)) if k not in paused]
    shaded = [patch for patch in readout.patches if patch.get_label() == "drawn uniformly: aiming paused"]
    assert len(shaded) == 1 and len(readout.patches) == len(paused)


@pytest.mark.parametrize("columns", ["80", None])  # None: piped with no COLUMNS, where rich draws 80
def test_status_piped_or_at_80_columns_cuts_no_readout_cell(never_varies, columns):
    """Cut, the cells that say an epoch had no estimate or was drawn paused read "no estima…", "uniform (pause…";
    folded, "estimat/e". A table whose words do not fit prints a line per row instead, every cell whole. (Below 60
    columns every table does: tests/cli/test_output.py.)"""
    directory, history, paused = never_varies
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "GAINCURATE_DEBUG")}
    env |= {"OMP_NUM_THREADS": "1"} | ({"COLUMNS": columns} if columns else {})
    command = [str(Path(sys.executable).with_name("gaincurate")), "schedule", "status", "--run", str(directory)]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and "…" not in shown.stdout, shown.stdout
    rows = {int(line.split(";")[0].removeprefix("epoch: ")): line for line in shown.stdout.splitlines()
            if line.startswith("epoch: ") and "; groups: " in line}  # fmt: skip
    assert sorted(rows) == list(range(len(history))), shown.stdout
    for k in paused:
        assert "; aimed at: uniform (paused);" in rows[k] and "; uniform (model): no estimate;" in rows[k], rows[k]
