"""The on-save hook and checkpoint discovery against verl's `global_step_N` layout.

The FSDP checkpoints are written by verl's own FSDPCheckpointManager (it runs on CPU in one gloo process).
Megatron's manager needs GPUs and megatron-core, so its layout is written as verl 0.9.1's source documents it
(`MegatronCheckpointManager.save_checkpoint`).
"""

import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from verl_helpers import SUBSET, schedule, verl_version

from gaincurate.errors import ConfigError
from gaincurate.integrations.verl.checkpoint import StepScheduleOnSave, model_merger_command
from gaincurate.schedule.run.checkpoints import VERL_TRACKER, find_checkpoint

STEPS = 8  # steps per epoch: SUBSET rows in batches of 8
needs_hook = pytest.mark.skipif(verl_version() < (0, 9, 1), reason="trainer.checkpoint_callback_class is verl >= 0.9.1")


@pytest.fixture()
def run(scores, tmp_path, monkeypatch) -> SimpleNamespace:
    """A run with epoch 0 written, and the feedback the bundled reward would have written for it.

    Re-scoring itself (loading the checkpoint's model) is replaced by a stub that records what it was given.
    """
    from gaincurate import scoring

    rescored: list[Path] = []

    def fake_rescore(scores_dir, ids, *, checkpoint=None, **options):
        rescored.append(Path(checkpoint))
        return np.full(len(ids), 1.5)

    monkeypatch.setattr(scoring, "rescore", fake_rescore)

    def make(rescore: str = "subset") -> SimpleNamespace:
        run_dir = tmp_path / f"run-{rescore}"
        schedule("init", "--strategy", "gain", "--scores", str(scores), "--run", str(run_dir), "--format", "verl",
                 "--subset-size", str(SUBSET), "--rescore", rescore)  # fmt: skip
        schedule("step", "--run", str(run_dir))
        feedback = tmp_path / "rollouts.jsonl"
        gc_ids = pq.read_table(run_dir / "epoch-0000.parquet").column("gc_id").to_pylist()
        feedback.write_text("".join(json.dumps({"gc_id": g, "reward": float(g % 2)}) + "\n" for g in gc_ids))
        config = {"gaincurate": {"run_dir": str(run_dir), "feedback_file": str(feedback), "tracker_timeout": 5}}
        return SimpleNamespace(dir=run_dir, feedback=feedback, config=config, ckpt=tmp_path / "ckpt", rescored=rescored)

    return make


@pytest.fixture(scope="session")
def fsdp_manager(tokenizer, tmp_path_factory):
    """verl's own FSDPCheckpointManager over a tiny FSDP-wrapped Llama: one CPU process, gloo, no GPU."""
    import torch
    import torch.distributed as dist
    from omegaconf import OmegaConf
    from torch.distributed.fsdp import FullyShardedDataParallel
    from transformers import LlamaConfig, LlamaForCausalLM
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager

    rendezvous = tmp_path_factory.mktemp("gloo") / "init"
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=0, world_size=1)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, architectures=["LlamaForCausalLM"])  # fmt: skip
    model = FullyShardedDataParallel(LlamaForCausalLM(config), device_id=torch.device("cpu"), use_orig_params=True)
    contents = {"save_contents": ["model", "optimizer", "extra", "hf_model"], "load_contents": ["model"]}
    yield FSDPCheckpointManager(
        model,
        torch.optim.AdamW(model.parameters()),
        processing_class=tokenizer,
        checkpoint_config=OmegaConf.create(contents | {"async_save": False}),
    )
    dist.destroy_process_group()


@pytest.fixture()
def save(fsdp_manager):
    """A trainer's save of step N: the actor through verl's manager, then data.pt, then (unless async) the tracker."""

    def save_step(ckpt: Path, step: int, *, tracker: bool = True) -> Path:
        folder = ckpt / f"global_step_{step}"
        fsdp_manager.save_checkpoint(str(folder / "actor"), global_step=step)
        (folder / "data.pt").write_bytes(b"")  # the trainer's dataloader state; not read by gaincurate
        if tracker:
            (ckpt / VERL_TRACKER).write_text(str(step))
        return folder

    return save_step


def trainer(*, one_prompt_batches: bool = False) -> SimpleNamespace:
    """verl's trainer as the hook sees it. Its asynchronous modes fetch one prompt per batch (`gen_batch_size` 1)
    and keep the epoch's training steps as `steps_per_epoch`."""
    if one_prompt_batches:
        return SimpleNamespace(train_dataloader=[None] * SUBSET, steps_per_epoch=STEPS)
    return SimpleNamespace(train_dataloader=[None] * STEPS)


def history(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


@needs_hook
def test_verls_builder_makes_the_hook_from_the_documented_config(verl_config, tmp_path):
    from verl.trainer.ppo.checkpoint_callback import CheckpointCallback, build_checkpoint_callback

    config = verl_config(
        [
            "trainer.checkpoint_callback_class=gaincurate.integrations.verl.checkpoint.StepScheduleOnSave",
            f"+gaincurate.run_dir={tmp_path / 'run'}",
            f"+reward.custom_reward_function.reward_kwargs.feedback_file={tmp_path / 'rollouts.jsonl'}",
        ]
    )
    hook = build_checkpoint_callback(config)
    assert isinstance(hook, CheckpointCallback) and isinstance(hook, StepScheduleOnSave)
    assert hook.feedback_file == tmp_path / "rollouts.jsonl"


@pytest.mark.parametrize("one_prompt_batches", [False, True], ids=["sync", "async-one-prompt-batches"])
def test_an_epoch_end_save_steps_the_schedule_and_a_mid_epoch_one_does_not(run, save, one_prompt_batches):
    r = run()
    hook = StepScheduleOnSave(r.config)
    mid = save(r.ckpt, STEPS // 2)
    hook.on_save(trainer(one_prompt_batches=one_prompt_batches), STEPS // 2, str(mid))
    assert not (r.dir / "epoch-0001.parquet").exists()
    end = save(r.ckpt, STEPS)
    hook.on_save(trainer(one_prompt_batches=one_prompt_batches), STEPS, str(end))
    assert (r.dir / "epoch-0001.parquet").is_file()
    [line] = history(r.dir)
    assert (line["checkpoint"], line["ang_source"]) == (str(end), "rescored")
    assert r.rescored == [end / "actor" / "huggingface"]


def test_an_async_save_waits_for_verls_tracker(run, save):
    r = run()
    folder = save(r.ckpt, STEPS, tracker=False)
    late = threading.Timer(0.5, lambda: (r.ckpt / VERL_TRACKER).write_text(str(STEPS)))
    late.start()
    StepScheduleOnSave(r.config).on_save(trainer(), STEPS, str(folder), async_save=True)
    late.join()
    assert history(r.dir)[0]["checkpoint"] == str(folder)
    assert r.rescored == [folder / "actor" / "huggingface"]


def test_an_async_save_that_never_completes_times_out_with_a_clear_message(run, caplog, save):
    r = run()
    r.config["gaincurate"]["tracker_timeout"] = 0.2
    folder = save(r.ckpt, STEPS, tracker=False)
    with caplog.at_level(logging.WARNING):
        StepScheduleOnSave(r.config).on_save(trainer(), STEPS, str(folder), async_save=True)
    assert "wrote no latest_checkpointed_iteration.txt within 0.2 s" in caplog.text
    [line] = history(r.dir)
    assert (line["checkpoint"], line["ang_source"], r.rescored) == (None, "stored", [])
    assert (r.dir / "epoch-0001.parquet").is_file()


def test_without_rescoring_an_async_save_is_not_waited_for(run, save):
    r = run(rescore="none")
    folder = save(r.ckpt, STEPS, tracker=False)
    StepScheduleOnSave(r.config).on_save(trainer(), STEPS, str(folder), async_save=True)
    assert (r.dir / "epoch-0001.parquet").is_file() and r.rescored == []


def test_a_megatron_checkpoint_without_hf_weights_is_refused_with_the_merger_command(run):
    r = run()
    folder = r.ckpt / f"global_step_{STEPS}"
    (folder / "actor" / "model" / "dist_ckpt").mkdir(parents=True)
    (r.ckpt / VERL_TRACKER).write_text(str(STEPS))
    command = model_merger_command(folder)
    assert command == (
        f"python -m verl.model_merger merge --backend megatron --local_dir {folder / 'actor'} "
        f"--target_dir {folder / 'actor' / 'huggingface'}"
    )
    with pytest.raises(ConfigError, match="verl.model_merger merge --backend megatron"):
        StepScheduleOnSave(r.config).on_save(trainer(), STEPS, str(folder))
    assert not (r.dir / "epoch-0001.parquet").exists()


def test_megatron_hf_weights_from_a_bridge_are_found(tmp_path, save):
    folder = save(tmp_path, STEPS)
    (folder / "actor" / "model").mkdir()
    (folder / "actor" / "huggingface").rename(folder / "actor" / "model" / "huggingface")
    assert find_checkpoint(tmp_path).model_path == folder / "actor" / "model" / "huggingface"
