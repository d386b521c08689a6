"""Checkpoint discovery returns the newest complete checkpoint and never a half-written one."""

from __future__ import annotations

import json

from schedule_helpers import write_hf_model, write_safetensors, write_trl_checkpoint

from gaincurate.schedule.run.checkpoints import find_checkpoint, is_complete_model


def test_empty_or_missing_directory_has_none(tmp_path):
    assert find_checkpoint(tmp_path / "absent") is None
    assert find_checkpoint(tmp_path) is None


def test_trl_newest_complete_wins(tmp_path):
    write_trl_checkpoint(tmp_path, 10)
    write_trl_checkpoint(tmp_path, 20)
    write_trl_checkpoint(tmp_path, 9)
    found = find_checkpoint(tmp_path)
    assert (found.kind, found.step, found.path, found.model_path) == ("trl", 20, tmp_path / "checkpoint-20", found.path)


def test_trl_half_written_checkpoints_are_skipped(tmp_path):
    write_trl_checkpoint(tmp_path, 10)
    write_trl_checkpoint(tmp_path, 20, state=False)  # trainer_state.json not written yet
    write_trl_checkpoint(tmp_path, 30, truncate=4)  # weights cut off
    (write_trl_checkpoint(tmp_path, 40) / "trainer_state.json").write_text('{"global_st')  # state half written
    assert find_checkpoint(tmp_path).step == 10
    # A half-written checkpoint asked for by name is not returned either.
    assert find_checkpoint(tmp_path / "checkpoint-30") is None
    assert find_checkpoint(tmp_path / "checkpoint-10").step == 10


def test_sharded_weights_need_every_shard(tmp_path):
    folder = tmp_path / "checkpoint-5"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "trainer_state.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    write_safetensors(folder / "model-00001-of-00002.safetensors")
    assert find_checkpoint(tmp_path) is None
    write_safetensors(folder / "model-00002-of-00002.safetensors")
    assert find_checkpoint(tmp_path).step == 5


def test_verl_uses_the_tracker(tmp_path):
    write_hf_model(tmp_path / "global_step_2" / "actor" / "huggingface")
    write_hf_model(tmp_path / "global_step_4" / "actor" / "huggingface")  # saved, but not declared done
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("2\n")
    found = find_checkpoint(tmp_path)
    assert (found.kind, found.step, found.path) == ("verl", 2, tmp_path / "global_step_2")
    assert found.model_path == tmp_path / "global_step_2" / "actor" / "huggingface"
    assert find_checkpoint(tmp_path / "global_step_4") is None


def test_verl_without_hf_weights_is_resumable_but_not_loadable(tmp_path):
    (tmp_path / "global_step_3" / "actor").mkdir(parents=True)
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("3")
    found = find_checkpoint(tmp_path)
    assert found.step == 3 and found.model_path is None


def test_no_tracker_means_no_verl_checkpoint(tmp_path):
    write_hf_model(tmp_path / "global_step_2" / "actor" / "huggingface")
    assert find_checkpoint(tmp_path) is None


def test_plain_hf_folder(tmp_path):
    write_hf_model(tmp_path / "model")
    found = find_checkpoint(tmp_path / "model")
    assert (found.kind, found.path, found.model_path) == ("hf", tmp_path / "model", tmp_path / "model")
    write_hf_model(tmp_path / "cut", truncate=1)
    assert not is_complete_model(tmp_path / "cut")
    assert find_checkpoint(tmp_path / "cut") is None


def test_trainer_output_prefers_step_checkpoints_over_its_final_save(tmp_path):
    write_hf_model(tmp_path)
    write_trl_checkpoint(tmp_path, 7)
    assert find_checkpoint(tmp_path).path == tmp_path / "checkpoint-7"


def test_peft_adapter_checkpoint_resumes_but_has_no_model(tmp_path):
    folder = tmp_path / "checkpoint-3"
    write_safetensors(folder / "adapter_model.safetensors")
    (folder / "trainer_state.json").write_text("{}")
    found = find_checkpoint(tmp_path)
    assert found.step == 3 and found.model_path is None
