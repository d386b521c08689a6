"""What the verl integration writes and reads, without verl: rows verl scores, reward ranges, the bundled reward,
the Megatron refusal and the tracker wait. tests/verl/test_real_verl.py checks the same against a real verl.
"""

import importlib.util
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import run_cli
from schedule_helpers import write_scores

from gaincurate.errors import ConfigError, InputError
from gaincurate.integrations.verl import checkpoint as verl_checkpoint
from gaincurate.integrations.verl import reward as verl_reward
from gaincurate.schedule.run.run import Run


def init(tmp_path, monkeypatch, capsys, *options: str) -> tuple[int, str, Path]:
    scores = write_scores(tmp_path / "scores")
    run = tmp_path / "run"
    args = [
        "schedule",
        "init",
        "--strategy",
        "gain",
        "--scores",
        str(scores),
        "--run",
        str(run),
        "--subset-size",
        "8",
        *options,
    ]
    code, out, err = run_cli(args, monkeypatch, capsys)
    return code, out + err, run


def test_verl_rows_default_to_a_data_source_verl_scores_and_keep_the_dataset_name(tmp_path, monkeypatch, capsys):
    code, output, run = init(tmp_path, monkeypatch, capsys, "--format", "verl")
    assert code == 0, output
    Run.open(run).step()
    table = pq.read_table(run / "epoch-0000.parquet")
    assert set(table.column("data_source").to_pylist()) == {"lighteval/MATH"}
    info = table.column("extra_info").to_pylist()
    gc_id = table.column("gc_id")[0].as_py()
    assert info[0] == {"index": gc_id, "split": "train", "dataset": "toy-math", "gc_id": gc_id}


def test_data_source_is_chosen_at_init_and_only_for_verl_rows(tmp_path, monkeypatch, capsys):
    code, output, run = init(tmp_path, monkeypatch, capsys, "--format", "verl", "--data-source", "openai/gsm8k")
    assert code == 0, output
    Run.open(run).step()
    assert set(pq.read_table(run / "epoch-0000.parquet").column("data_source").to_pylist()) == {"openai/gsm8k"}
    code, output, _ = init(tmp_path / "trl", monkeypatch, capsys, "--data-source", "openai/gsm8k")
    assert code != 0 and "--data-source names verl's reward scorer; pass --format verl" in output


def feedback_for(run: Path, rewards) -> Path:
    gc_ids = pq.read_table(run / "epoch-0000.parquet").column("gc_id").to_pylist()
    path = run.parent / "feedback.jsonl"
    path.write_text("".join(json.dumps({"gc_id": g, "reward": r}) + "\n" for g, r in zip(gc_ids, rewards, strict=True)))
    return path


def test_reward_range_maps_verls_minus_one_plus_one(tmp_path, monkeypatch, capsys):
    code, output, run = init(tmp_path, monkeypatch, capsys, "--format", "verl", "--reward-range", "-1,1")
    assert code == 0, output
    Run.open(run).step()
    step = Run.open(run).step(feedback=feedback_for(run, [1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, -1.0]))
    assert step.record["accuracy"] == pytest.approx(0.25)


def test_without_a_range_a_minus_one_is_rejected_naming_the_option(tmp_path, monkeypatch, capsys):
    code, output, run = init(tmp_path, monkeypatch, capsys, "--format", "verl")
    Run.open(run).step()
    with pytest.raises(InputError, match="--reward-range LO,HI"):
        Run.open(run).step(feedback=feedback_for(run, [1.0, -1.0] * 4))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--reward-range", "1,-1"], "needs LO (a wrong answer) below HI"),
        (["--reward-range", "one"], "two numbers LO,HI"),
        (["--reward-range", "-1,1", "--reward-max", "2"], "disagree"),
    ],
)
def test_bad_reward_ranges_are_refused(options, message, tmp_path, monkeypatch, capsys):
    code, output, _ = init(tmp_path, monkeypatch, capsys, *options)
    assert code != 0 and message in output


def test_the_bundled_reward_checks_boxed_answers_and_writes_feedback(tmp_path, monkeypatch, caplog):
    path = tmp_path / "feedback.jsonl"
    info = {"index": 7, "split": "train"}
    assert verl_reward.compute_score("lighteval/MATH", "so \\boxed{\\frac{3}{4}}", "0.75", info, str(path)) == 1.0
    assert verl_reward.compute_score("anything", "\\boxed{5}", "4", extra_info=info, feedback_file=str(path)) == 0.0
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"gc_id": 7, "reward": 1.0},
        {"gc_id": 7, "reward": 0.0},
    ]
    monkeypatch.delenv(verl_reward.FEEDBACK_ENV, raising=False)
    verl_reward._warn_no_target.cache_clear()
    with caplog.at_level(logging.WARNING):
        assert verl_reward.compute_score("x", "\\boxed{4}", "4", info) == 1.0
    assert "no feedback file" in caplog.text


def test_the_bundled_reward_scores_in_a_worker_thread_as_verls_reward_managers_call_it():
    """verl 0.9.1's reward managers call `compute_score` in an executor thread, where math-verify's alarms raise."""
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(verl_reward.compute_score, "openai/gsm8k", "so \\boxed{18}", "18").result() == 1.0
        assert pool.submit(verl_reward.compute_score, "x", "so \\boxed{0.00001}", 1e-05).result() == 1.0


def test_megatron_checkpoints_without_hf_weights_are_refused_with_the_merger_command(tmp_path):
    step = tmp_path / "global_step_4"
    (step / "actor" / "dist_ckpt").mkdir(parents=True)  # verl before 0.9
    with pytest.raises(ConfigError, match=r"python -m verl.model_merger merge --backend megatron --local_dir"):
        verl_checkpoint.refuse_megatron(step)
    verl_checkpoint.refuse_megatron(tmp_path / "global_step_9")  # not Megatron: nothing to refuse
    assert verl_checkpoint.model_merger_command(tmp_path / "global_step_9") is None


def test_the_tracker_wait_ends_at_its_timeout(tmp_path):
    started = time.monotonic()
    assert not verl_checkpoint.wait_for_tracker(tmp_path / "global_step_3", 3, timeout=0.3, poll=0.05)
    assert 0.3 <= time.monotonic() - started < 2
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("3")
    assert verl_checkpoint.wait_for_tracker(tmp_path / "global_step_3", 3, timeout=0)


def test_the_sampler_module_loads_from_its_file_path_as_verls_loader_does():
    """verl runs the file under a name outside sys.modules; @dataclass must not need to resolve string annotations."""
    import gaincurate.integrations.verl.sampler as module

    spec = importlib.util.spec_from_file_location("custom_module_gaincurate", module.__file__)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    settings = loaded.SamplerSettings.from_data_config({"gaincurate": {"run_dir": "run/", "shuffle": True}})
    assert (settings.run_dir, settings.shuffle) == ("run/", True)
