"""verl's RLHFDataset over gaincurate's epoch files, and the curriculum sampler loaded the ways verl loads it."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.import_utils import load_extern_object
from verl_helpers import SUBSET

from gaincurate.errors import ConfigError


def dataset(path: Path, tokenizer, tmp_path: Path, **data: object) -> RLHFDataset:
    config = OmegaConf.create(
        {"prompt_key": "prompt", "max_prompt_length": 1024, "filter_overlong_prompts": False, "truncation": "error"}
        | {"cache_dir": str(tmp_path / "cache")}
        | data
    )
    return RLHFDataset(data_files=str(path), tokenizer=tokenizer, config=config)


def test_rlhf_dataset_reads_an_epoch_file_in_rank_order(epoch_file, tokenizer, tmp_path):
    data = dataset(epoch_file, tokenizer, tmp_path)
    table = pq.read_table(epoch_file)
    assert len(data) == SUBSET == table.num_rows
    gc_ids = table.column("gc_id").to_pylist()
    for row in range(len(data)):
        item = data[row]
        assert item["gc_id"] == gc_ids[row]  # the export's column, which verl keeps in every row
        assert item["index"] == gc_ids[row]  # verl's `index`, from extra_info.index: the gc_id (no user extra_info)
        assert item["data_source"] == "lighteval/MATH"
        assert item["extra_info"]["dataset"] == "gaincurate/math_sample"
        messages = item.get("raw_prompt", item["prompt"])
        assert [m["role"] for m in messages] == ["system", "user"]
        # The model's own chat template renders the prompt verl will generate from.
        assert 0 < len(prompt_ids(tokenizer, messages)) <= 1024


def prompt_ids(tokenizer, messages) -> list[int]:
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def sampler_config(epoch_file: Path, **more: object):
    return OmegaConf.create({"train_batch_size": 8, "gaincurate": {"run_dir": str(epoch_file.parent)}} | more)


@pytest.mark.parametrize("route", ["pkg", "file"])
def test_the_sampler_loads_by_package_and_by_file_path(route, epoch_file, exported, tokenizer, tmp_path):
    import gaincurate.integrations.verl.sampler as module

    path = "pkg://gaincurate.integrations.verl.sampler" if route == "pkg" else module.__file__
    sampler_class = load_extern_object(path, "GainCurriculumSampler")
    sampler = sampler_class(dataset(exported, tokenizer, tmp_path), sampler_config(epoch_file))
    rows = list(iter(sampler))
    plan = pq.read_table(epoch_file).column("gc_id").to_pylist()
    assert len(rows) == SUBSET
    assert [pq.read_table(exported).column("gc_id")[row].as_py() for row in rows] == plan


def test_filter_overlong_prompts_that_drops_scored_rows_is_refused(epoch_file, exported, tokenizer, tmp_path):
    from gaincurate.integrations.verl.sampler import GainCurriculumSampler

    prompts = pq.read_table(exported).column("prompt").to_pylist()
    lengths = sorted(len(prompt_ids(tokenizer, messages)) for messages in prompts)
    median = lengths[len(lengths) // 2]
    short = dataset(exported, tokenizer, tmp_path, filter_overlong_prompts=True, max_prompt_length=median)
    assert 0 < len(short) < len(prompts)  # verl dropped the longer prompts
    config = sampler_config(epoch_file, filter_overlong_prompts=True)
    with pytest.raises(ConfigError, match="set data.filter_overlong_prompts=False") as caught:
        GainCurriculumSampler(short, config)
    assert "\n" not in str(caught.value)


def test_the_sampler_learns_from_real_dataprotos_and_steps_at_the_epoch_end(scores, exported, tokenizer, tmp_path):
    """verl's fit loop in small: batches of 8 prompts x 2 rollouts as DataProto, update after each step."""
    import torch
    from verl import DataProto
    from verl.utils.dataset.rl_dataset import collate_fn
    from verl_helpers import schedule

    from gaincurate.integrations.verl.sampler import GainCurriculumSampler

    run = tmp_path / "run"
    schedule(
        "init",
        "--strategy",
        "gain",
        "--scores",
        str(scores),
        "--run",
        str(run),
        "--format",
        "verl",
        "--subset-size",
        str(SUBSET),
    )
    data = dataset(exported, tokenizer, tmp_path)
    sampler = GainCurriculumSampler(data, sampler_config(run / "epoch-0000.parquet"))
    try:
        from verl.experimental.dataset.sampler import AbstractCurriculumSampler
    except ImportError:  # verl 0.8+: no sampler hook, so nothing to derive from
        AbstractCurriculumSampler = torch.utils.data.Sampler
    assert isinstance(sampler, AbstractCurriculumSampler)
    rows = list(sampler)
    for start in range(0, len(rows), 8):
        # As verl's fit loop builds it: the dataloader's collate_fn, one DataProto, each prompt rollout.n times.
        batch = DataProto.from_single_dict(collate_fn([data[row] for row in rows[start : start + 8]]))
        batch = batch.repeat(repeat_times=2, interleave=True)
        scores_ = torch.zeros(len(batch), 4)
        scores_[:, -1] = torch.tensor([float(i % 3 == 0) for i in range(len(batch))])
        sampler.update(batch.union(DataProto.from_dict(tensors={"token_level_scores": scores_})))
    second = list(sampler)  # the next epoch: steps the schedule first
    [line] = [json.loads(text) for text in (run / "history.jsonl").read_text().splitlines()]
    assert line["rollouts"] == 2 * SUBSET and line["epoch"] == 0
    assert len(second) == SUBSET and (run / "epoch-0001.parquet").is_file()
