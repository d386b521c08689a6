"""The run directory: epoch files, determinism, resume after a kill, bad input, re-scoring."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from schedule_helpers import FEW_SHOT, SYSTEM_PROMPT, snapshot, without_timings, write_trl_checkpoint

from gaincurate.errors import ConfigError, InputError
from gaincurate.feedback_lines import append_rollouts
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.plot import text_chart, write_plot
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run, read_history
from gaincurate.schedule.run.status import run_status
from gaincurate.schedule.run.steps import init_run

CONFIG = ScheduleConfig(strategy="gain", seed=3, subset_size=8, sigma=6, step_size=5, adj_max=12)


def write_feedback(path: Path, epoch_file: Path, *, rollouts: int = 2) -> Path:
    """Deterministic rollouts: gc_id i, rollout r is correct when (i + r) % 3 == 0."""
    ids = pq.read_table(epoch_file, columns=["gc_id"]).column("gc_id").to_pylist()
    lines = [json.dumps({"gc_id": i, "correct": (i + r) % 3 == 0}) for i in ids for r in range(rollouts)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_epochs(run_dir: Path, scores_dir: Path, epochs: int, config: ScheduleConfig = CONFIG) -> None:
    init_run(run_dir, scores_dir, config)
    step = Run.open(run_dir).step()
    for _ in range(epochs):
        step = Run.open(run_dir).step(feedback=write_feedback(run_dir.parent / f"{run_dir.name}.jsonl", step.path))


def test_first_step_writes_epoch_zero_in_trl_form(tmp_path, scores_dir):
    init_run(tmp_path / "run", scores_dir, CONFIG)
    assert not list((tmp_path / "run").glob("epoch-*"))
    step = Run.open(tmp_path / "run").step()
    assert step.epoch == 0 and step.draw == {"mu": 0.0} and step.path.name == "epoch-0000.parquet"
    table = pq.read_table(step.path)
    assert table.column_names == ["prompt", "problem", "answer", "level", "gc_id"]
    assert table.num_rows == 8
    row = table.slice(0, 1).to_pylist()[0]
    assert row["prompt"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": FEW_SHOT[0]["question"]},
        {"role": "assistant", "content": FEW_SHOT[0]["answer"]},
        {"role": "user", "content": row["problem"]},
    ]
    # Rows are in rank order: their positions in the stored ranking ascend.
    ranking = list(load_run(tmp_path / "run").schedule.ranking)
    positions = [ranking.index(i) for i in table.column("gc_id").to_pylist()]
    assert positions == sorted(positions)


def test_verl_form(tmp_path, scores_dir):
    init_run(tmp_path / "run", scores_dir, ScheduleConfig(strategy="gain", subset_size=5, format="verl"))
    table = pq.read_table(Run.open(tmp_path / "run").step().path)
    assert table.column_names[:5] == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert {"problem", "answer", "level", "gc_id"} <= set(table.column_names)
    row = table.to_pylist()[0]
    # data_source names verl's reward scorer (default lighteval/MATH); the dataset's name goes to extra_info.
    assert row["data_source"] == "lighteval/MATH" and row["ability"] == "math"
    assert row["reward_model"] == {"style": "rule", "ground_truth": row["answer"]}
    # extra_info.gc_id is the row's id; index, split and dataset are there too, as the data had no extra_info.
    gc_id = row["gc_id"]
    assert row["extra_info"] == {"index": gc_id, "split": "train", "dataset": "toy-math", "gc_id": gc_id}


def test_verl_needs_an_answer_column(tmp_path, make_scores):
    scores = make_scores(answer_column=None)
    with pytest.raises(ConfigError, match="--format verl needs a ground truth"):
        init_run(tmp_path / "run", scores, ScheduleConfig(strategy="gain", format="verl"))
    assert not (tmp_path / "run").exists()


@pytest.mark.determinism
def test_same_seed_gives_byte_identical_epoch_files(tmp_path, scores_dir):
    run_epochs(tmp_path / "a", scores_dir, 3)
    run_epochs(tmp_path / "b", scores_dir, 3)
    epochs_a = {k: v for k, v in snapshot(tmp_path / "a").items() if k.startswith("epoch-")}
    epochs_b = {k: v for k, v in snapshot(tmp_path / "b").items() if k.startswith("epoch-")}
    assert len(epochs_a) == 4 and epochs_a == epochs_b
    assert without_timings(read_history(tmp_path / "a")) == without_timings(read_history(tmp_path / "b"))


def test_in_process_driver_writes_the_run_directory_schedule_step_writes(tmp_path, scores_dir):
    """One step function: the in-process driver and `schedule step`, fed the same rollouts, write the same files."""
    cli_run, in_process = tmp_path / "cli", tmp_path / "in-process"
    driver = Run(scores_dir, CONFIG, run_dir=in_process)
    init_run(cli_run, scores_dir, CONFIG)
    step = Run.open(cli_run).step()
    for epoch in range(3):
        assert driver.plan.gc_ids.tolist() == pq.read_table(step.path).column("gc_id").to_pylist()
        gc_ids = [int(i) for i in driver.plan.gc_ids for _ in range(2)]
        rewards = [float((i + epoch + r) % 3 == 0) for r, i in enumerate(gc_ids)]
        driver.record(gc_ids, rewards)
        driver.step()
        append_rollouts(tmp_path / f"feedback-{epoch}.jsonl", gc_ids, rewards)
        step = Run.open(cli_run).step(feedback=tmp_path / f"feedback-{epoch}.jsonl")
    written = snapshot(cli_run)
    assert set(written) == set(snapshot(in_process)) and len(written) == 2 + 4 + 3  # state, history, epochs, feedback
    assert {k: v for k, v in written.items() if k != "history.jsonl"} == {
        k: v for k, v in snapshot(in_process).items() if k != "history.jsonl"
    }
    assert without_timings(read_history(cli_run)) == without_timings(read_history(in_process))


def test_another_seed_gives_other_epochs(tmp_path, scores_dir):
    run_epochs(tmp_path / "a", scores_dir, 1)
    run_epochs(tmp_path / "b", scores_dir, 1, ScheduleConfig(**{**CONFIG.to_dict(), "seed": 4}))
    assert snapshot(tmp_path / "a")["epoch-0001.parquet"] != snapshot(tmp_path / "b")["epoch-0001.parquet"]


def test_history_records_the_update(tmp_path, scores_dir):
    run_epochs(tmp_path / "run", scores_dir, 2)
    history = read_history(tmp_path / "run")
    assert [line["epoch"] for line in history] == [0, 1]
    first = history[0]
    assert first["mu"] == 0.0 and first["mu_next"] == history[1]["mu"]
    assert len(first["subset_ids"]) == 8 and first["rollouts"] == 16
    expected = sum((i + r) % 3 == 0 for i in first["subset_ids"] for r in range(2)) / 16
    assert first["accuracy"] == pytest.approx(expected)
    state = load_run(tmp_path / "run")
    assert state.schedule.epoch == 2 and state.schedule.memory["mu"] == history[1]["mu_next"]


@pytest.mark.determinism
def test_killed_step_resumes_without_repeating_or_skipping(tmp_path, scores_dir, monkeypatch):
    run_epochs(tmp_path / "straight", scores_dir, 2)

    run_dir = tmp_path / "killed"
    init_run(run_dir, scores_dir, CONFIG)
    step = Run.open(run_dir).step()
    step = Run.open(run_dir).step(feedback=write_feedback(tmp_path / "killed.jsonl", step.path))
    feedback = write_feedback(tmp_path / "killed.jsonl", step.path)
    real_save = rundir.save_run

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the epoch file and history, before state.json

    monkeypatch.setattr(rundir, "save_run", killed)
    with pytest.raises(KeyboardInterrupt):
        Run.open(run_dir).step(feedback=feedback)
    assert load_run(run_dir).schedule.epoch == 1
    monkeypatch.setattr(rundir, "save_run", real_save)
    Run.open(run_dir).step(feedback=feedback)

    straight, resumed = snapshot(tmp_path / "straight"), snapshot(run_dir)
    assert {k: v for k, v in resumed.items() if k.startswith(("epoch-", "feedback-"))} == {
        k: v for k, v in straight.items() if k.startswith(("epoch-", "feedback-"))
    }
    assert without_timings(read_history(run_dir)) == without_timings(read_history(tmp_path / "straight"))


def test_bad_feedback_is_one_line_and_changes_nothing(tmp_path, scores_dir):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    step = Run.open(run_dir).step()
    good = write_feedback(tmp_path / "good.jsonl", step.path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"gc_id": 10000, "correct": true}\n')
    before = snapshot(run_dir)
    with pytest.raises(InputError, match="line 17: gc_id 10000 is not in the prompt set") as error:
        Run.open(run_dir).step(feedback=bad)
    assert "\n" not in str(error.value)
    assert snapshot(run_dir) == before


def test_step_checks_the_order_of_calls(tmp_path, scores_dir):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    with pytest.raises(InputError, match="no epoch has been written yet"):
        Run.open(run_dir).step(feedback=tmp_path / "whatever.jsonl")
    Run.open(run_dir).step()
    with pytest.raises(InputError, match="epoch 0 is waiting for its feedback; pass --feedback"):
        Run.open(run_dir).step()


def test_init_refuses_to_overwrite(tmp_path, scores_dir):
    init_run(tmp_path / "run", scores_dir, CONFIG)
    before = snapshot(tmp_path / "run")
    with pytest.raises(ConfigError, match="already holds a schedule"):
        init_run(tmp_path / "run", scores_dir, CONFIG)
    assert snapshot(tmp_path / "run") == before
    with pytest.raises(ConfigError, match="subset_size=41 is more than the 40 prompts"):
        init_run(tmp_path / "other", scores_dir, ScheduleConfig(strategy="gain", subset_size=41))
    assert not (tmp_path / "other").exists()


def test_nan_scores_rank_last(tmp_path, make_scores):
    scores = make_scores(nan_ids=(0, 5))
    init_run(tmp_path / "run", scores, CONFIG)
    assert list(load_run(tmp_path / "run").schedule.ranking[-2:]) == [0, 5]


def test_changed_scores_are_refused(tmp_path, make_scores):
    init_run(tmp_path / "run", make_scores("a", n_prompts=40), CONFIG)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    state["scores_dir"] = str(make_scores("b", n_prompts=41))
    (tmp_path / "run" / "state.json").write_text(json.dumps(state))
    with pytest.raises(InputError, match="hold 41 rows, the run started with 40"):
        Run.open(tmp_path / "run").step()


@pytest.mark.parametrize("mode", ["subset", "window", "full"])
def test_rescoring_feeds_ang_and_full_reranks(tmp_path, scores_dir, fake_rescore, mode):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": mode}))
    step = Run.open(run_dir).step()
    checkpoint = write_trl_checkpoint(tmp_path / "trainer", 10)
    subset = pq.read_table(step.path, columns=["gc_id"]).column("gc_id").to_pylist()
    state = load_run(run_dir).schedule
    step = Run.open(run_dir).step(
        feedback=write_feedback(tmp_path / "f.jsonl", step.path), checkpoint=tmp_path / "trainer"
    )
    record = step.record
    assert record["ang_source"] == "rescored" and record["checkpoint"] == str(checkpoint)
    assert record["ang"] == pytest.approx(np.mean(3.0 - np.asarray(subset) / 100))
    (asked,) = fake_rescore
    if mode == "subset":
        assert asked == sorted(subset)
    if mode == "window":  # mu = 0, sigma = 6: positions 0..18, plus the subset
        window = {int(i) for i in state.ranking[:19]} | set(subset)
        assert asked == sorted(window)
    after = load_run(run_dir).schedule
    if mode == "full":
        assert asked == list(range(40)) and record["reranked"]
        np.testing.assert_array_equal(after.ranking, np.arange(40))  # fresh score 3 - i/100 falls with i
    else:
        np.testing.assert_array_equal(after.ranking, state.ranking)


def test_rescore_every_k(tmp_path, scores_dir, fake_rescore):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset", "rescore_every": 2}))
    write_trl_checkpoint(tmp_path / "trainer", 10)
    step = Run.open(run_dir).step()
    sources = []
    for _ in range(4):
        step = Run.open(run_dir).step(
            feedback=write_feedback(tmp_path / "f.jsonl", step.path), checkpoint=tmp_path / "trainer"
        )
        sources.append(step.record["ang_source"])
    assert sources == ["stored", "rescored", "stored", "rescored"]


def test_rescore_without_checkpoint_falls_back_with_a_notice(tmp_path, scores_dir, fake_rescore):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset"}))
    step = Run.open(run_dir).step()
    step = Run.open(run_dir).step(feedback=write_feedback(tmp_path / "f.jsonl", step.path))
    assert step.record["ang_source"] == "stored" and not fake_rescore
    assert any("not re-scored" in notice for notice in step.notices)
    (tmp_path / "empty").mkdir()  # an output folder the trainer has not saved into yet: wait
    with pytest.raises(InputError, match="holds no complete checkpoint yet; wait"):
        Run.open(run_dir).step(feedback=write_feedback(tmp_path / "f.jsonl", step.path), checkpoint=tmp_path / "empty")
    with pytest.raises(InputError, match="missing does not exist; pass a folder the trainer saved"):
        Run.open(run_dir).step(
            feedback=write_feedback(tmp_path / "f.jsonl", step.path), checkpoint=tmp_path / "missing"
        )


def test_a_megatron_checkpoint_without_hf_weights_falls_back_naming_verls_merger(tmp_path, scores_dir, fake_rescore):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset"}))
    step_dir = tmp_path / "ckpt" / "global_step_4"
    (step_dir / "actor" / "dist_ckpt").mkdir(parents=True)  # Megatron shards only (verl before 0.9)
    (step_dir.parent / "latest_checkpointed_iteration.txt").write_text("4")
    step = Run.open(run_dir).step()
    step = Run.open(run_dir).step(feedback=write_feedback(tmp_path / "f.jsonl", step.path), checkpoint=step_dir.parent)
    assert step.record["ang_source"] == "stored" and not fake_rescore
    (notice,) = [notice for notice in step.notices if "not re-scored" in notice]
    assert "is a Megatron checkpoint without Hugging Face weights" in notice
    assert f"python -m verl.model_merger merge --backend megatron --local_dir {step_dir / 'actor'}" in notice


def test_status_and_plots(tmp_path, scores_dir):
    run_epochs(tmp_path / "run", scores_dir, 2)
    status = run_status(tmp_path / "run")
    assert {"epoch", "mu", "history"} <= set(status)
    assert status["epoch"] == 2 and [line["epoch"] for line in status["history"]] == [0, 1]
    json.dumps(status)  # JSON-ready
    chart = text_chart(status)
    lines = chart.splitlines()
    assert len(lines) == 14 and lines[12] == "epoch   0  1  2"
    assert lines[10].startswith(" 0.0 | m ")  # epoch 0 is drawn at mu = 0
    text = write_plot(tmp_path / "run", status, png=False)
    assert text.name == "status.txt" and text.read_text() == chart
    pytest.importorskip("matplotlib")
    png = write_plot(tmp_path / "run", status, png=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_feedback_file_is_not_consumed_twice(tmp_path, scores_dir):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    step = Run.open(run_dir).step()
    feedback = write_feedback(tmp_path / "f.jsonl", step.path)
    Run.open(run_dir).step(feedback=feedback)
    assert read_history(run_dir)[0]["feedback_sha256"] == hashlib.sha256(feedback.read_bytes()).hexdigest()
    before = snapshot(run_dir)
    with pytest.raises(InputError, match="f.jsonl is the feedback epoch 0 already consumed") as error:
        Run.open(run_dir).step(feedback=feedback)
    assert "\n" not in str(error.value) and "epoch-0001.parquet" in str(error.value)
    assert snapshot(run_dir) == before


def test_an_earlier_epoch_s_bytes_written_after_the_draw_are_this_epoch_s_own(tmp_path, scores_dir):
    """Over a subset that is the whole pool, a policy that answers every prompt as before writes (sorted by gc_id)
    the bytes of the epoch before: written after this epoch was drawn, they are its own, not a file handed twice."""
    from gaincurate.schedule.run.inputs import load_scores

    run_dir, pool = tmp_path / "run", len(load_scores(scores_dir).prompts.gc_ids)
    init_run(run_dir, scores_dir, ScheduleConfig(strategy="uniform", seed=3, subset_size=pool))
    step = Run.open(run_dir).step()
    lines = sorted(pq.read_table(step.path, columns=["gc_id"]).column("gc_id").to_pylist())
    text = "".join(json.dumps({"gc_id": i, "reward": 0.0}) + "\n" for i in lines)
    (tmp_path / "f0.jsonl").write_text(text)
    step = Run.open(run_dir).step(feedback=tmp_path / "f0.jsonl")
    drawn = step.path.stat().st_mtime_ns
    (tmp_path / "f1.jsonl").write_text(text)
    os.utime(tmp_path / "f1.jsonl", ns=(drawn + 10**9, drawn + 10**9))  # written a second after the draw
    assert Run.open(run_dir).step(feedback=tmp_path / "f1.jsonl").record["epoch"] == 1  # epoch 1 consumed
    os.utime(tmp_path / "f0.jsonl", ns=(drawn - 10**9, drawn - 10**9))  # epoch 1's file handed over again for 2
    with pytest.raises(InputError, match="f0.jsonl is the feedback epoch 0 already consumed"):
        Run.open(run_dir).step(feedback=tmp_path / "f0.jsonl")


def test_feedback_for_an_earlier_epoch_is_refused(tmp_path, scores_dir):
    """Epoch 0's rollouts handed over for epoch 1 (the epochs overlap): refused, not partly counted."""
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    first = Run.open(run_dir).step().path
    Run.open(run_dir).step(feedback=write_feedback(tmp_path / "f0.jsonl", first))
    stale = write_feedback(tmp_path / "stale.jsonl", first, rollouts=3)  # other bytes, same prompts
    current = set(load_run(run_dir).schedule.subset_ids.tolist())
    overlap = set(pq.read_table(first, columns=["gc_id"]).column("gc_id").to_pylist())
    assert overlap & current and overlap - current  # a partial overlap: today's note-only case
    before = snapshot(run_dir)
    with pytest.raises(
        InputError, match="stale.jsonl holds the rollouts of epoch 0: all its 8 prompts are in"
    ) as error:
        Run.open(run_dir).step(feedback=stale)
    assert "\n" not in str(error.value) and "epoch-0001.parquet" in str(error.value)
    assert snapshot(run_dir) == before


def two_epochs(tmp_path: Path, scores_dir: Path) -> tuple[Path, Path, set[int], list[int]]:
    """A run two epochs in (epoch 0 fed back): its folder, epoch 1's file, epoch 1's gc_ids and epoch 0's others."""
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    first = Run.open(run_dir).step().path
    second = Run.open(run_dir).step(feedback=write_feedback(tmp_path / "f0.jsonl", first)).path
    current = set(pq.read_table(second, columns=["gc_id"]).column("gc_id").to_pylist())
    only_first = [i for i in pq.read_table(first, columns=["gc_id"]).column("gc_id").to_pylist() if i not in current]
    return run_dir, second, current, only_first


def test_an_earlier_epochs_feedback_without_one_prompt_of_this_epoch_is_named_as_such(tmp_path, scores_dir):
    """Stale rollouts are named as that epoch's when none is of the current epoch (disjoint epochs) too, not
    only when the epochs overlap: refused in one line, nothing written."""
    run_dir, second, current, only_first = two_epochs(tmp_path, scores_dir)
    stale = tmp_path / "stale.jsonl"
    append_rollouts(stale, [i for i in only_first for _ in range(3)], [1.0] * (3 * len(only_first)))
    before = snapshot(run_dir)
    with pytest.raises(InputError) as error:
        Run.open(run_dir).step(feedback=stale)
    assert str(error.value) == (
        f"{stale} holds the rollouts of epoch 0: all its {len(only_first)} prompts are in epoch-0000.parquet, all of "
        "its rollouts are outside epoch 1; pass the rollouts written while training on epoch-0001.parquet"
    )
    assert snapshot(run_dir) == before


def test_stale_rollouts_beside_this_epochs_are_left_out_and_named(tmp_path, scores_dir):
    """A file that also holds an earlier epoch's rollouts (one a trainer appends to every epoch) keeps this epoch's;
    the note names the others as that epoch's stale rollouts."""
    run_dir, second, current, only_first = two_epochs(tmp_path, scores_dir)
    both = write_feedback(tmp_path / "both.jsonl", second)
    append_rollouts(both, only_first, [0.0] * len(only_first))
    step = Run.open(run_dir).step(feedback=both)
    assert step.record["outside_epoch"] == len(only_first) and step.record["rollouts"] == 2 * len(current)
    assert (
        f"{len(only_first)} rollout(s) of prompts outside epoch 1 were left out: stale rollouts of epoch 0, whose "
        f"file epoch-0000.parquet holds all their {len(only_first)} prompts; write each epoch's rollouts to a file of "
        "its own"
    ) in step.notices


def test_checkpoint_given_relative_is_recorded_absolute(tmp_path, scores_dir, fake_rescore, monkeypatch):
    monkeypatch.chdir(tmp_path)
    init_run(Path("run"), scores_dir, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset"}))
    step = Run.open(Path("run")).step()
    write_trl_checkpoint(tmp_path / "trainer", 10)
    step = Run.open(Path("run")).step(
        feedback=write_feedback(tmp_path / "f.jsonl", step.path), checkpoint=Path("trainer")
    )
    assert step.record["checkpoint"] == str(tmp_path / "trainer" / "checkpoint-10")


def test_a_step_reads_its_feedback_file_once_and_no_history_to_check_it(tmp_path, scores_dir, monkeypatch):
    """The bytes are read once, then hashed, parsed and archived; staleness is told from the archived feedback and
    the epoch files, never by reading history.jsonl (issue 50)."""
    import builtins
    import io

    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    first = Run.open(run_dir).step().path
    Run.open(run_dir).step(feedback=write_feedback(tmp_path / "f0.jsonl", first))
    feedback = write_feedback(tmp_path / "f1.jsonl", rundir.epoch_path(run_dir, 1))
    opened: list[str] = []

    def counting(original):
        def wrapper(target, *args, **kwargs):
            opened.append(Path(target).name)
            return original(target, *args, **kwargs)

        return wrapper

    for owner in (builtins, io):  # every read of a file goes through io.open (pathlib's read_bytes and open too)
        monkeypatch.setattr(owner, "open", counting(owner.open))
    from gaincurate.schedule.run.steps import check_feedback

    check_feedback(run_dir, feedback, unseen=True)
    assert opened.count("f1.jsonl") == 1 and "history.jsonl" not in opened
    opened.clear()
    Run.open(run_dir).step(feedback=feedback)
    assert opened.count("f1.jsonl") == 1
    assert rundir.feedback_path(run_dir, 1).read_bytes() == feedback.read_bytes()  # archived from the one read


def test_a_feedback_folder_or_an_overflowing_reward_is_one_line_through_the_console_script(tmp_path, scores_dir):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    step = Run.open(run_dir).step()
    gc_id = pq.read_table(step.path, columns=["gc_id"]).column("gc_id")[0].as_py()
    (tmp_path / "huge.jsonl").write_text(f'{{"gc_id": {gc_id}, "reward": 1{"0" * 400}}}\n')
    before = snapshot(run_dir)
    script = str(Path(sys.executable).with_name("gaincurate"))
    refused = [(tmp_path, "is a folder; pass the file"), (tmp_path / "huge.jsonl", "is not a finite number")]
    for feedback, words in refused:
        done = subprocess.run([script, "schedule", "step", "--run", str(run_dir), "--feedback", str(feedback)],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        [line] = done.stderr.strip().splitlines()
        assert done.returncode == 1 and line.startswith("gaincurate: error: ") and words in line, done.stderr
    assert snapshot(run_dir) == before
