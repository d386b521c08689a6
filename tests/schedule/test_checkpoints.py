"""Checkpoint discovery returns the newest complete checkpoint and never a half-written one."""

from __future__ import annotations

import json
import os

from schedule_helpers import write_hf_model, write_safetensors, write_trl_checkpoint

from gaincurate.schedule.run.checkpoints import find_checkpoint, is_complete_model, missing_model


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


def test_a_lora_adapter_is_a_checkpoint_with_a_model_in_every_layout_and_a_cut_off_one_is_none(tmp_path):
    """TRL with peft_config (trainer state + adapter), a script's `PeftModel.save_pretrained` (adapter alone), verl's
    `actor/lora_adapter/`: each is complete, and the adapter is the model to re-score from."""
    trl, script = tmp_path / "trl" / "checkpoint-3", tmp_path / "script" / "checkpoint-4"
    for folder in (trl, script):
        write_safetensors(folder / "adapter_model.safetensors")
        (folder / "adapter_config.json").write_text('{"base_model_name_or_path": "base"}')
    (trl / "trainer_state.json").write_text("{}")
    assert [(f.kind, f.step, f.model_path) for f in (find_checkpoint(trl.parent), find_checkpoint(script.parent))] == [
        ("trl", 3, trl),
        ("hf", 4, script),
    ]
    verl = tmp_path / "verl"
    adapter = verl / "global_step_5" / "actor" / "lora_adapter"
    write_safetensors(adapter / "adapter_model.safetensors")
    (adapter / "adapter_config.json").write_text("{}")
    (verl / "latest_checkpointed_iteration.txt").write_text("5")
    assert find_checkpoint(verl).model_path == adapter

    cut = tmp_path / "cut" / "checkpoint-6"
    write_safetensors(cut / "adapter_model.safetensors", truncate=4)
    (cut / "adapter_config.json").write_text("{}")
    assert find_checkpoint(cut.parent) is None
    assert missing_model(cut.parent) == (
        f"{cut} holds a LoRA adapter with a cut-off adapter_config.json or weights "
        "(adapter_model.safetensors or adapter_model.bin)"
    )


def test_a_scripts_save_pretrained_checkpoint_is_one_and_a_trainers_without_its_state_is_not(tmp_path):
    """`model.save_pretrained(f"{output_dir}/checkpoint-{step}")` writes no trainer_state.json: complete once its
    weights are whole. A Trainer's checkpoint is recognised by its own files and still needs its state (issue 58)."""
    write_trl_checkpoint(tmp_path, 10)
    write_hf_model(tmp_path / "checkpoint-20")  # a script's save: config and weights only
    found = find_checkpoint(tmp_path)
    assert (found.kind, found.step, found.path, found.model_path) == ("hf", 20, found.path, found.path)
    write_trl_checkpoint(tmp_path, 30, state=False)  # the Trainer is still writing it: skipped
    write_hf_model(tmp_path / "checkpoint-40", truncate=4)  # a script's save cut off: skipped
    assert find_checkpoint(tmp_path).step == 20
    assert find_checkpoint(tmp_path / "checkpoint-30") is None


def test_a_model_saved_over_the_same_folder_is_a_new_checkpoint(tmp_path):
    """A trainer that saves into {output_dir} itself every epoch: same path, newer files, another stamp."""
    write_hf_model(tmp_path)
    before = find_checkpoint(tmp_path).stamp()
    assert find_checkpoint(tmp_path).stamp() == before
    weights = tmp_path / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert find_checkpoint(tmp_path).stamp() != before and find_checkpoint(tmp_path).path == tmp_path


def test_what_an_output_folder_lacks_is_said_in_words(tmp_path):
    assert missing_model(tmp_path / "absent") == f"the trainer wrote nothing to {tmp_path / 'absent'}"
    bare = tmp_path / "checkpoint-1"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    assert missing_model(tmp_path) == f"{bare} has no weights (model.safetensors or pytorch_model.bin)"
    (bare / "config.json").unlink()
    assert missing_model(tmp_path) == f"{bare} has no config.json"
    write_trl_checkpoint(tmp_path, 2, state=False)
    assert "a Trainer checkpoint without its trainer_state.json" in missing_model(tmp_path)
    write_trl_checkpoint(tmp_path, 3, truncate=4)
    assert missing_model(tmp_path).endswith("checkpoint-3 has cut-off weights (a file shorter than its header says, "
                                            "or a missing shard)")  # fmt: skip
    write_hf_model(tmp_path / "checkpoint-4")
    assert missing_model(tmp_path) == (
        "the newest model there, checkpoint-4, is the one the epoch started from: nothing new was saved"
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("")
    assert missing_model(other) == f"{other} holds no checkpoint-N/ folder and no model (notes.txt): has no config.json"
