"""`--strategy pilot` on disk through the console script: `schedule step` pilots with a real model's rollouts.

A tiny random Llama scores the helper problems (test_screen_rollout's fixture); epoch 0 pilots with that model (in
process, through the driver the console script calls), and each later epoch with the checkpoint given (in process too;
the refusal without one is the console script's), when the epoch before it has its feedback: `gaincurate rollout` writes
RUN/screen-NNNN.ids and .jsonl, as for screen, and what they measured is kept in state.json.
"""

from __future__ import annotations

import torch
from schedule_helpers import snapshot
from test_screen_rollout import console, epoch_ids, screened, tiny_scores, write_feedback  # noqa: F401 - a fixture

from gaincurate.cli import main
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.run import Run

SUBSET, FACTOR, ROLLOUTS = 2, 2, 2  # m, k, r
PILOTED = FACTOR * SUBSET


def test_the_console_script_pilots_each_epoch_and_keeps_what_it_measured(tiny_scores, tiny_llama, tmp_path, capsys):  # noqa: F811
    run_dir = tmp_path / "run"
    result = console(
        "schedule", "init", "--scores", tiny_scores, "--run", run_dir, "--subset-size", SUBSET,
        "--strategy", "pilot", "--pilot-factor", FACTOR, "--pilot-rollouts", ROLLOUTS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Epoch 0 in this process, through the driver `schedule step` calls (a console step costs a fresh torch import):
    # the console script's own step is epoch 1's, below.
    assert Run.open(run_dir).step().strategy == "pilot"
    ids, rewards = screened(run_dir, 0)  # epoch 0: piloted with the model the prompts were scored with
    assert len(ids) == PILOTED and sum(len(r) for r in rewards.values()) == PILOTED * ROLLOUTS
    assert set(epoch_ids(run_dir, 0)) <= set(ids)

    feedback = write_feedback(tmp_path / "feedback-0.jsonl", epoch_ids(run_dir, 0))
    before = snapshot(run_dir)
    result = console("schedule", "step", "--run", run_dir, "--feedback", feedback)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(errors) == 1, result.stderr  # one line, naming the fix
    assert "--strategy pilot measures epoch 1's candidates" in errors[0] and "--checkpoint" in errors[0]
    assert snapshot(run_dir) == before

    # Epoch 1's step with the checkpoint through the command in this process: a console `schedule step --checkpoint`
    # that measures with a model is test_screen_rollout's (screen and pilot measure through the same screener).
    threads = torch.get_num_threads()
    try:
        main(["schedule", "step", "--run", str(run_dir), "--feedback", str(feedback), "--checkpoint", str(tiny_llama)])
    finally:
        torch.set_num_threads(threads)
    assert "epoch 1: 2 prompts by pilot" in capsys.readouterr().out
    ids, rewards = screened(run_dir, 1)  # piloted with the checkpoint, after epoch 0's feedback
    assert len(ids) == PILOTED and set(epoch_ids(run_dir, 1)) <= set(ids)
    memory = rundir.load_run(run_dir).schedule.memory
    assert memory["pilot"]["epoch"] == 1 and memory["pilot"]["gc_ids"] == ids
    assert memory["pilot"]["sums"] == [sum(rewards[g]) for g in ids]
    assert set(ids) <= set(memory["posterior"]["gc_ids"])  # every candidate measured, committed or not
    [line] = rundir.read_history(run_dir)
    assert line["selection"]["pilot_rollouts"] == PILOTED * ROLLOUTS


def test_a_bad_pilot_option_is_one_line_through_the_console_script(tiny_scores, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    result = console("schedule", "init", "--scores", tiny_scores, "--run", run_dir, "--strategy", "pilot",
                     "--pilot-factor", "0.5")  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("gaincurate: error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr  # a bad option value: a usage error
    assert "--pilot-factor must be a number 1 or more" in errors[0] and not run_dir.exists()
    shown = console("schedule", "init", "--help").stdout
    assert "kept for comparison (the lab's)" in shown and "--pilot-rollouts" in shown  # the lab's one panel
