"""One run object for every trainer path (issue 50): `gaincurate.schedule.run.run.Run`.

TRL in process, verl's sampler and its one launch, verl's on-save hook and the `--trainer-cmd` loop each hold a
`Run` and get the epoch's rows, the map gc_id -> row and the reward recorder from it; and a run stepped in process
writes the same run directory as one stepped from feedback files.
"""

from __future__ import annotations

import ast
import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from schedule_helpers import fixed_screener, without_timings, write_scores

from gaincurate.errors import ConfigError
from gaincurate.feedback_lines import format_line
from gaincurate.lab.strategies.screening import spent
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.recorder import FeedbackFile
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run

PACKAGE = Path(__file__).resolve().parents[2] / "gaincurate"
CONFIG = ScheduleConfig(strategy="gain", seed=5, subset_size=6, sigma=6, step_size=5, adj_max=12, rescore="none")
SPIED = ("step", "take_feedback", "record", "rows", "row_map", "recorder")


@pytest.fixture()
def used(monkeypatch) -> list[tuple[str, Run]]:
    """Every call of the run object's trainer-facing methods, as (method, the Run it was called on)."""
    seen: list[tuple[str, Run]] = []
    for name in SPIED:

        def spy(self, *args, _original=getattr(Run, name), _name=name, **kwargs):
            seen.append((_name, self))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Run, name, spy)
    return seen


def reward(gc_id: int, epoch: int) -> float:
    return float((gc_id * 7 + epoch) % 3 == 0)


def test_no_trainer_path_orders_rows_reads_feedback_or_builds_a_scheduler_itself():
    """The adapters call the run's methods; the pieces under it (`epoch_rows`, `check_feedback`, `take_step`,
    `Scheduler`) are named by no module of `gaincurate/integrations/`."""
    pieces = {"epoch_rows", "check_feedback", "take_step", "Scheduler", "CurriculumDriver", "archive_feedback"}
    named = {}
    for path in sorted((PACKAGE / "integrations").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "id", None) or getattr(node, "attr", None)
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name in pieces:
                        named[str(path.relative_to(PACKAGE))] = alias.name
            elif name in pieces:
                named[str(path.relative_to(PACKAGE))] = name
    assert named == {}


def test_trl_in_process_holds_a_run_and_takes_its_rows_map_and_recorder_from_it(tmp_path, used):
    pytest.importorskip("trl")
    from gaincurate.integrations.trl.curriculum import GainCurriculum

    curriculum = GainCurriculum(write_scores(tmp_path / "scores"), CONFIG, run_dir=tmp_path / "run", shuffle=True)
    run = curriculum.run
    assert isinstance(run, Run)
    (wrapped,) = curriculum.wrap_rewards([lambda completions, **kwargs: [1.0] * len(completions)])
    assert wrapped.sink == run.record and curriculum.records_feedback([wrapped])
    curriculum.trainer = SimpleNamespace(
        args=SimpleNamespace(generation_batch_size=6, steps_per_generation=1), num_generations=2, num_iterations=1
    )
    sampler = curriculum.sampler(curriculum.train_dataset())
    rows = sampler.current_rows()
    assert rows == run.rows(sampler.row_of, shuffle=True) != run.rows(sampler.row_of)  # the run's seeded shuffle
    assert {name for name, owner in used if owner is run} == {"recorder", "row_map", "rows"}


def verl_setup(tmp_path: Path) -> tuple[SimpleNamespace, dict]:
    from gaincurate.integrations.verl.sampler import export_prompts

    scores = write_scores(tmp_path / "scores")
    init_run(tmp_path / "run", scores, ScheduleConfig(**{**CONFIG.to_dict(), "format": "verl"}))
    frame = datasets.Dataset(
        pq.read_table(export_prompts(scores, tmp_path / "all.parquet")).replace_schema_metadata(None)
    )
    frame = frame.select(np.random.default_rng(1).permutation(len(frame)).tolist())
    return SimpleNamespace(dataframe=frame), {"train_batch_size": 2, "gaincurate": {"run_dir": str(tmp_path / "run")}}


def test_verls_sampler_holds_a_run_and_takes_its_rows_map_and_rewards_through_it(tmp_path, used):
    from gaincurate.integrations.verl.sampler import GainCurriculumSampler

    source, data_config = verl_setup(tmp_path)
    sampler = GainCurriculumSampler(source, data_config)
    run = sampler.run
    assert isinstance(run, Run)
    rows = list(sampler)
    gc_ids = [source.dataframe[row]["gc_id"] for row in rows]
    assert gc_ids == [int(gc_id) for gc_id in run.plan.gc_ids] and rows == run.rows(sampler.row_of)
    sampler.update({"gc_id": np.array(gc_ids, dtype=object), "token_level_scores": np.ones(len(gc_ids))})
    assert run.records == [{"gc_id": gc_id, "reward": 1.0} for gc_id in gc_ids]
    assert {name for name, owner in used if owner is run} == {"row_map", "rows", "record"}


def test_verls_one_launch_dataset_hands_out_the_runs_rows(tmp_path, used):
    from gaincurate.integrations.verl.one_launch import GainCurriculumDataset

    source, _ = verl_setup(tmp_path)
    run = Run(run_dir=tmp_path / "run")
    dataset = GainCurriculumDataset.__new__(GainCurriculumDataset)  # verl's RLHFDataset is not installed here
    dataset.run, dataset._rows = run, None
    dataset.row_of = run.row_map([int(g) for g in source.dataframe["gc_id"]], fix="export", every_prompt=False)
    assert dataset.current_rows() == run.rows(dataset.row_of) and len(dataset) == run.subset_size
    assert [name for name, owner in used if owner is run] == ["row_map", "rows", "rows"]


def test_verls_on_save_hook_steps_one_run_with_its_feedback_file(tmp_path, used):
    from gaincurate.integrations.verl.checkpoint import StepScheduleOnSave

    run_dir = tmp_path / "run"
    init_run(run_dir, write_scores(tmp_path / "scores"), CONFIG)
    epoch_0 = Run.open(run_dir).step()
    feedback = tmp_path / "rewards.jsonl"
    feedback.write_text("".join(format_line(int(g), reward(int(g), 0)) for g in epoch_0.step.plan.gc_ids))
    hook = StepScheduleOnSave({"gaincurate": {"run_dir": str(run_dir), "feedback_file": str(feedback)}})
    result = hook.step(None)
    assert result.epoch == 1 and rundir.feedback_path(run_dir, 0).read_bytes() == feedback.read_bytes()
    assert [name for name, _ in used] == ["step", "step"]  # `schedule step`'s step, then the hook's
    assert all(isinstance(owner, Run) for _, owner in used)


TRAINER = """
import json, os, sys
import pyarrow.parquet as pq
gc_ids = pq.read_table(sys.argv[1]).column("gc_id").to_pylist()
with open(os.environ["GAINCURATE_FEEDBACK_FILE"], "w") as out:
    for gc_id in gc_ids:
        out.write(json.dumps({"gc_id": gc_id, "reward": float((gc_id * 7 + int(sys.argv[2])) % 3 == 0)}) + "\\n")
"""


def test_the_trainer_command_loop_holds_one_run_that_takes_each_feedback_file_once(tmp_path, used, monkeypatch):
    import builtins
    import io

    from gaincurate.integrations.command import run_loop

    run_dir = tmp_path / "run"
    init_run(run_dir, write_scores(tmp_path / "scores"), CONFIG)
    (tmp_path / "trainer.py").write_text(TRAINER)
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(tmp_path / 'trainer.py'))} {{epoch_data}} {{epoch}}"
    opened: list[str] = []
    for owner in (builtins, io):  # every read in this process goes through io.open; the trainer's own do not count

        def counting(target, *args, _original=owner.open, **kwargs):
            opened.append(Path(str(target)).name)
            return _original(target, *args, **kwargs)

        monkeypatch.setattr(owner, "open", counting)
    assert run_loop(run_dir, epochs=2, trainer_cmd=command).trained == [0, 1]
    assert opened.count("feedback-0000.jsonl") == opened.count("feedback-0001.jsonl") == 1  # checked, then stepped
    assert [name for name, _ in used] == ["step", "take_feedback", "step", "take_feedback", "step"]
    assert len({id(owner) for _, owner in used}) == 1  # one object for the whole loop


def test_the_recorder_is_the_runs_own_record_in_process_and_the_feedback_file_out_of_it(tmp_path, monkeypatch):
    scores = write_scores(tmp_path / "scores")
    in_process = Run(scores, CONFIG)
    assert in_process.recorder() == in_process.record
    init_run(tmp_path / "run", scores, CONFIG)
    from_files = Run.open(tmp_path / "run")
    assert from_files.recorder() is None  # no path, no $GAINCURATE_FEEDBACK_FILE
    monkeypatch.setenv("GAINCURATE_FEEDBACK_FILE", str(tmp_path / "env.jsonl"))
    recorder = from_files.recorder()
    assert isinstance(recorder, FeedbackFile) and recorder.path == tmp_path / "env.jsonl"
    assert from_files.recorder(tmp_path / "given.jsonl").path == tmp_path / "given.jsonl"
    assert in_process.recorder(tmp_path / "given.jsonl").path == tmp_path / "given.jsonl"


def test_a_run_resumed_from_a_trainer_checkpoint_keeps_the_screener_and_its_cost(tmp_path):
    # The policy lives with the scheduler (`Scheduler.hand_policy`); a resume rebuilds the scheduler from the saved
    # state, after the trainer handed the screener over, and must keep measuring with it.
    scores = write_scores(tmp_path / "scores")
    run = Run(scores, ScheduleConfig(strategy="screen", seed=5, subset_size=4))
    rates, calls = {int(i): 0.5 for i in run.scores.prompts.gc_ids}, []
    run.hand_policy(given=fixed_screener(rates, calls))
    assert len(run.plan.gc_ids) == 4  # epoch 0, screened
    saved = run.state_dict()
    run.record(run.plan.gc_ids, [1.0] * len(run.plan.gc_ids))
    run.load_state_dict(saved)
    run.record(run.plan.gc_ids, [1.0] * len(run.plan.gc_ids))
    run.step()  # epoch 1 is screened with the same screener
    assert [epoch for _, epoch, _ in calls] == [0, 1] and spent(run).rollouts == 2 * 2 * 4 * 4


def test_a_trainer_checkpoint_of_another_state_version_is_refused_in_one_line(tmp_path):
    """0.1.0 reads only its own trainer-checkpoint state (gaincurate 0.x wrote version 1); the run is left as it was."""
    run = Run(write_scores(tmp_path / "scores"), ScheduleConfig(strategy="uniform", seed=5, subset_size=4))
    before = run.state_dict()
    with pytest.raises(ConfigError, match=r"has version 1; this gaincurate reads 2 only") as caught:
        run.load_state_dict({**before, "version": 1})
    assert "\n" not in str(caught.value) and run.state_dict() == before


def run_files(run_dir: Path) -> tuple[dict[str, bytes], list[dict], dict]:
    """A run directory's epoch files and archived feedback (bytes), its history without timings, and its state."""
    kept = {path.name: path.read_bytes() for path in sorted(run_dir.glob("*-*")) if path.is_file()}
    state = json.loads((run_dir / "state.json").read_text())
    return kept, without_timings(rundir.read_history(run_dir)), state


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        ScheduleConfig(strategy="uniform", seed=5, subset_size=6),
        ScheduleConfig(strategy="greso", seed=5, subset_size=6),
        ScheduleConfig(strategy="mopps", seed=5, subset_size=6),
        ScheduleConfig(strategy="gain", seed=5, subset_size=6, skip_zero_variance=True),
    ],
    ids=lambda config: config.strategy + ("-skip" if config.to_dict().get("skip_zero_variance") else ""),
)
def test_in_process_and_from_feedback_files_write_the_same_run_directory(tmp_path, config):
    """The same config and rewards, stepped in process (`record` + `step`) and from files (`step(feedback=...)`)."""
    scores = write_scores(tmp_path / "scores")
    in_process = Run(scores, config, run_dir=tmp_path / "in_process")
    init_run(tmp_path / "files", scores, config)
    from_files = Run.open(tmp_path / "files")
    from_files.step()
    for epoch in range(3):
        gc_ids = [int(g) for g in in_process.plan.gc_ids]
        assert gc_ids == [int(g) for g in from_files.plan.gc_ids]
        in_process.record(gc_ids, [reward(g, epoch) for g in gc_ids])
        in_process.step()
        feedback = tmp_path / f"feedback-{epoch}.jsonl"
        feedback.write_text("".join(format_line(g, reward(g, epoch)) for g in gc_ids))
        from_files.step(feedback=feedback)
    kept, history, state = run_files(tmp_path / "files")
    assert (kept, history, state) == run_files(tmp_path / "in_process")
    assert len(kept) == 7 and len(history) == 3 and state["epoch"] == 3  # epochs 0-3, feedback 0-2


def test_a_run_steps_through_one_verb_whichever_source_its_rewards_come_from(tmp_path):
    """`step` is the one stepping verb: in process it takes what `record` collected, from files the feedback file;
    handed the other source's input, it refuses in one line naming the verb that fits."""
    assert not hasattr(Run, "advance")
    scores = write_scores(tmp_path / "scores")
    in_process = Run(scores, CONFIG)
    in_process.record(in_process.plan.gc_ids, [1.0] * len(in_process.plan.gc_ids))
    with pytest.raises(ConfigError, match=r"Run.open\(RUN\).step\(feedback=FILE\)"):
        in_process.step(feedback=tmp_path / "feedback.jsonl")
    assert in_process.step().record["epoch"] == 0 and in_process.epoch == 1
    init_run(tmp_path / "files", scores, CONFIG)
    from_files = Run.open(tmp_path / "files")
    assert from_files.step().epoch == 0
    with pytest.raises(ConfigError, match=r"measures its own re-scoring"):
        from_files.step(rescored=object())


def test_a_reward_handed_in_process_is_checked_once_with_the_message_a_feedback_file_gets(tmp_path, monkeypatch):
    import gaincurate.feedback_lines
    import gaincurate.schedule.run.run
    from gaincurate.errors import InputError
    from gaincurate.feedback_lines import read_rollouts

    run = Run(write_scores(tmp_path / "scores"), CONFIG)
    with pytest.raises(ConfigError) as in_process:
        run.record([5], [-1.0])
    (tmp_path / "f.jsonl").write_text(format_line(5, -1.0))
    with pytest.raises(InputError) as from_file:
        list(read_rollouts(tmp_path / "f.jsonl", known_ids=[5], reward_max=1.0))
    problem = str(in_process.value).removeprefix("gc_id 5: ")
    assert problem.startswith("reward -1 is outside [0, reward_max=1]") and problem in str(from_file.value)
    checked = []

    def counting(reward, *args, _original=gaincurate.feedback_lines.check_reward):
        checked.append(reward)
        return _original(reward, *args)

    for module in (gaincurate.feedback_lines, gaincurate.schedule.run.run):
        monkeypatch.setattr(module, "check_reward", counting)
    gc_ids = [int(g) for g in run.plan.gc_ids]
    run.record(gc_ids, [reward(g, 0) for g in gc_ids])
    assert run.step().record["epoch"] == 0 and len(checked) == len(gc_ids)  # at record, not again at the step


def test_a_trainer_s_nan_of_any_type_is_not_applicable_and_a_bad_reward_is_one_line(tmp_path):
    """A reward function's NaN comes as Python's float, numpy's or a one-element tensor: each is skipped alike."""
    import torch

    run = Run(write_scores(tmp_path / "scores"), ScheduleConfig(strategy="uniform", seed=5, subset_size=4))
    ids = [int(run.plan.gc_ids[0])] * 5
    rewards = [float("nan"), np.float32("nan"), np.array(np.nan), torch.tensor(float("nan")), torch.tensor(0.5)]
    assert run.record(ids, rewards) == 1 and run.records == [{"gc_id": ids[0], "reward": 0.5}]
    for bad, shown in [
        (10**400, r"reward 1000000000\S*\.\.\. is"),
        ("x", "reward 'x' is"),
        ([1.0, 2.0], r"reward \[1.0, 2.0\] is"),
    ]:
        with pytest.raises(ConfigError, match=f"gc_id {ids[0]}: {shown}") as caught:
            run.record(ids[:1], [bad])
        assert "\n" not in str(caught.value)
    assert len(run.records) == 1
