"""LoRA adapters as checkpoints, through the console script: a trainer that saves a `PeftModel` drives `schedule run`
with the answer's likelihood on, `score --model ADAPTER_DIR` scores the base with the adapter, and without peft the
adapter is refused in one line.

The adapters are real (peft's `get_peft_model` on the tests' tiny random Llama, `init_lora_weights=False` so they
move the model); the reference is the same adapter merged into its base (`merge_and_unload`) and saved as a plain
model folder, which loads without peft.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import score_sample_prompts

from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.steps import init_run

BIN = Path(sys.executable).parent
PROMPTS = 40
LORA = {"r": 4, "target_modules": ["q_proj", "v_proj", "up_proj"], "init_lora_weights": False}
# float32 likelihoods of the same weights, merged or applied as an adapter: the sums of a few log-probabilities
LOGP_TOLERANCE = 1e-4

# Each epoch: feedback for every prompt of the epoch file and what {checkpoint} it was handed, then one "training
# step" on the adapter it was handed (before the first, the one peft saved for the test): every LoRA weight moved by a
# seeded draw, saved as `PeftModel.save_pretrained` saves it (config and safetensors) into
# {output_dir}/checkpoint-{epoch + 1}. numpy alone, so that each epoch's process starts in a fraction of a second.
TRAINER = """
import json, pathlib, shutil, sys
import numpy as np
import pyarrow.parquet as pq
from safetensors.numpy import load_file, save_file
data, output_dir, feedback, epoch, checkpoint, start = sys.argv[1:7]
ids = pq.read_table(data, columns=["gc_id"]).column("gc_id").to_pylist()
with open(feedback, "w") as f:
    for gc_id in ids:
        for r in range(4):
            f.write(json.dumps({"gc_id": gc_id, "reward": float(r < gc_id % 5)}) + "\\n")
pathlib.Path(output_dir, f"handed-{epoch}.txt").write_text(checkpoint)
source, target = pathlib.Path(checkpoint or start), pathlib.Path(output_dir, f"checkpoint-{int(epoch) + 1}")
target.mkdir()
shutil.copy(source / "adapter_config.json", target)
rng = np.random.default_rng(int(epoch))
weights = sorted(load_file(source / "adapter_model.safetensors").items())
moved = {name: (value + 0.05 * rng.standard_normal(value.shape)).astype(value.dtype) for name, value in weights}
save_file(moved, target / "adapter_model.safetensors", metadata={"format": "pt"})
"""

# In the console script's process: peft is not importable (`import peft` and `find_spec("peft")` both see None).
NO_PEFT = "import sys\nsys.modules['peft'] = None\n"


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory) -> Path:
    """The bundled sample's first prompts with their answers, scored with the tiny Llama."""
    return score_sample_prompts(tiny_llama, tmp_path_factory.mktemp("lora"), PROMPTS)


def gaincurate(*args: object, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    env |= {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run([str(BIN / "gaincurate"), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def merged_copy(adapter: Path, base: Path, folder: Path) -> Path:
    """The adapter merged into its base, saved as a plain model folder with the base's tokenizer."""
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    model.save_pretrained(folder)
    for file in base.iterdir():  # the tokenizer and its chat template
        if not (folder / file.name).exists():
            shutil.copy(file, folder)
    return folder


def test_a_trainer_that_saves_lora_adapters_runs_three_epochs_and_the_likelihood_comes_from_its_adapters(
    scores, adapter, tiny_llama, tmp_path
):
    from gaincurate.scoring.likelihood import likelihoods

    run = tmp_path / "run"
    init_run(run, scores, ScheduleConfig(strategy="probe", likelihood=True, subset_size=PROMPTS // 2))
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    places = "{epoch_data} {output_dir} {feedback_file} {epoch} {checkpoint}"
    command = f"{shlex.quote(sys.executable)} {script} {places} {adapter}"
    done = gaincurate("schedule", "run", "--run", run, "--epochs", 3, "--trainer-cmd", command)
    assert done.returncode == 0, done.stderr
    assert "not re-scored" not in done.stderr and "no new complete checkpoint" not in done.stderr, done.stderr
    # probe measures the answers' likelihood and re-scores nothing: its stage says which
    assert "measuring the answer's likelihood of" in done.stderr and "re-scoring" not in done.stderr, done.stderr

    trainer = run / "trainer"
    handed = [(trainer / f"handed-{epoch}.txt").read_text() for epoch in range(3)]
    assert handed == ["", str(trainer / "checkpoint-1"), str(trainer / "checkpoint-2")]
    assert not (trainer / "checkpoint-1" / "config.json").exists()  # an adapter alone
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [line["checkpoint"] for line in history] == [str(trainer / f"checkpoint-{e + 1}") for e in range(3)]
    assert all(line["timings"]["rescore_s"] > 0 and "stale" not in line for line in history)
    for line in history:  # what each epoch cost, said after it and kept in `schedule status`'s table
        spent, refresh = line["timings"]["train_s"], line["timings"]["rescore_s"]
        said = f"epoch {line['epoch']} cost: trainer {spent:.1f} s, refresh {refresh:.1f} s ({refresh / spent:.2f}x"
        assert said in done.stderr
    status = gaincurate("schedule", "status", "--run", run).stdout
    seconds = status[status.index("seconds per epoch") :].split("savings readout")[0]
    rows = [[cell.strip() for cell in row.split("│")[1:-1]] for row in seconds.splitlines() if row.startswith("│")]
    assert [row[:3] for row in rows] == [
        [str(line["epoch"]), f"{line['timings']['train_s']:.1f}", f"{line['timings']['rescore_s']:.1f}"]
        for line in history
    ]

    latest = json.loads((run / "state.json").read_text())["memory"]["likelihood"]
    assert set(latest["epochs"]) == {2} and len(latest["gc_ids"]) == PROMPTS  # every prompt, after the last epoch
    merged = merged_copy(trainer / "checkpoint-3", tiny_llama, tmp_path / "merged")
    expected = likelihoods(scores, latest["gc_ids"], checkpoint=merged)
    np.testing.assert_allclose(latest["values"], expected, rtol=0, atol=LOGP_TOLERANCE)
    before = likelihoods(scores, latest["gc_ids"], checkpoint=tiny_llama)
    assert np.abs(np.asarray(latest["values"]) - before).max() > 100 * LOGP_TOLERANCE  # the adapter moved them


@pytest.fixture(scope="module")
def adapter(tiny_llama, tmp_path_factory) -> Path:
    """A LoRA adapter of the tiny Llama, saved as `PeftModel.save_pretrained` leaves it (no tokenizer)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(**LORA)).save_pretrained(folder)
    return folder


def test_score_with_an_adapter_folder_equals_scoring_its_merged_model(adapter, tiny_llama, scores, tmp_path):
    from helpers import score_in_process

    from gaincurate.shards import read_manifest, read_scores

    data = read_manifest(scores)["config"]["dataset"]
    merged = merged_copy(adapter, tiny_llama, tmp_path / "merged")
    score_in_process([data, "--model", merged, "--out", tmp_path / "merged-scores", "--dtype", "float32",
                      "--device", "cpu", "--no-few-shot"])  # fmt: skip
    done = gaincurate("score", data, "--model", adapter, "--out", tmp_path / "adapter-scores",
                      "--dtype", "float32", "--device", "cpu", "--no-few-shot", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr  # what peft says to its dependencies is not for the user
    ours, reference = read_scores(tmp_path / "adapter-scores"), read_scores(tmp_path / "merged-scores")
    np.testing.assert_allclose(ours["gc_score"].to_numpy(), reference["gc_score"].to_numpy(), rtol=1e-5, atol=1e-6)
    model = read_manifest(tmp_path / "adapter-scores")["model"]
    assert (model["kind"], model["base"]) == ("adapter", str(tiny_llama))


def test_without_peft_an_adapter_is_refused_in_one_line_naming_it_and_the_extra(adapter, scores, tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(NO_PEFT)
    data = json.loads((scores / "manifest.json").read_text())["config"]["dataset"]
    out = tmp_path / "out"
    done = gaincurate("score", data, "--model", adapter, "--out", out, pythonpath=tmp_path / "inject")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"gaincurate: error: {adapter} is a LoRA adapter (adapter_config.json); loading it needs peft: "
        "pip install 'gaincurate[peft]'"
    ]
    assert not out.exists()


@pytest.mark.slow
def test_trls_grpo_trainer_with_a_peft_config_measures_with_the_live_adapter_what_its_checkpoint_holds(
    tiny_llama, tmp_path
):
    """GRPOTrainer given a `peft_config` trains and saves adapters. The likelihoods (and the re-scored angles) the
    live adapter gave at the last epoch's end equal those of the adapter checkpoint it saved then."""
    from peft import LoraConfig
    from test_probe_trainers import CONFIG
    from test_trl import epoch_end_checkpoints
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl_helpers import EpochRewards, grpo_settings, score_prompts

    from gaincurate.integrations.trl import GainCurriculum
    from gaincurate.schedule.run.checkpoints import find_checkpoint
    from gaincurate.scoring.likelihood import likelihoods
    from gaincurate.scoring.rescore import rescore

    scores = score_prompts(tiny_llama, tmp_path / "scores")
    curriculum = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "run")
    rewards = EpochRewards()
    rewards.__name__ = "parity"
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_llama), args=GRPOConfig(**grpo_settings(tmp_path / "out")),
        processing_class=AutoTokenizer.from_pretrained(tiny_llama), train_dataset=curriculum.train_dataset(),
        reward_funcs=curriculum.wrap_rewards([rewards]), callbacks=[curriculum.callback],
        peft_config=LoraConfig(**LORA),
    )  # fmt: skip
    curriculum.attach(trainer)
    trainer.train()
    last = epoch_end_checkpoints(tmp_path / "out")[3]
    assert (last / "adapter_config.json").is_file() and not (last / "model.safetensors").exists()
    assert find_checkpoint(tmp_path / "out").model_path == last
    kept = json.loads((tmp_path / "run" / "state.json").read_text())["memory"]["likelihood"]
    assert set(kept["epochs"]) == {2}
    np.testing.assert_allclose(kept["values"], likelihoods(scores, kept["gc_ids"], checkpoint=last), atol=1e-5)
    live = rescore(scores, kept["gc_ids"], model=trainer.model, tokenizer=trainer.processing_class)
    np.testing.assert_allclose(live, rescore(scores, kept["gc_ids"], checkpoint=last), rtol=1e-5, atol=1e-6)


def test_an_adapter_of_another_model_or_of_a_base_not_here_is_refused_in_one_line(tiny_models, scores, tmp_path):
    """Re-scoring a run scored with the tiny Llama from an adapter trained on the tiny Qwen2 (another architecture) is
    refused naming both models and their shapes; `score --model` on an adapter whose base is not here names the field
    to fix."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from gaincurate.errors import ModelError
    from gaincurate.model import resolve_source
    from gaincurate.scoring.likelihood import likelihoods

    qwen = shutil.copytree(tiny_models["qwen2"], tmp_path / "qwen")
    adapter = tmp_path / "qwen-adapter"
    base = AutoModelForCausalLM.from_pretrained(qwen)
    get_peft_model(base, LoraConfig(**LORA)).save_pretrained(adapter)
    with pytest.raises(ModelError) as refused:
        likelihoods(scores, [0, 1], checkpoint=adapter)
    message = str(refused.value)
    assert "\n" not in message and f"{adapter} is a LoRA adapter of {qwen}" in message
    assert "(model_type qwen2, num_hidden_layers 3" in message and "(model_type llama, num_hidden_layers 3" in message

    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/gone/base"}))
    with pytest.raises(ModelError) as unknown:
        resolve_source(str(adapter))
    assert str(unknown.value) == (
        f"{adapter} is a LoRA adapter of '/gone/base', which is not a model here; set base_model_name_or_path in "
        f"{adapter / 'adapter_config.json'} to the base model's folder (absolute, or relative to the adapter's), "
        ".gguf file or Hub id"
    )
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": None}))
    with pytest.raises(ModelError, match="is a LoRA adapter that names no base model; set base_model_name_or_path"):
        resolve_source(str(adapter))


def adapter_of(model: Path, folder: Path, base_named: str | None = None, **lora: object) -> Path:
    """A LoRA adapter of `model` saved to `folder`, its config naming `base_named` where given."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    get_peft_model(AutoModelForCausalLM.from_pretrained(model), LoraConfig(**LORA, **lora)).save_pretrained(folder)
    if base_named is not None:
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base_named}))
    return folder


def test_an_adapter_with_added_tokens_scores_and_measures_as_its_merged_copy(tiny_llama, scores, tmp_path):
    """Tokens added in training, the embeddings resized and saved whole (`modules_to_save`), the tokenizer beside the
    adapter: the base is resized to the saved embeddings before the adapter loads over it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gaincurate.scoring.likelihood import likelihoods
    from gaincurate.scoring.rescore import rescore

    resized = tmp_path / "resized"
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.add_tokens(["<think>", "</think>"], special_tokens=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(resized)
    tokenizer.save_pretrained(resized)
    adapter = adapter_of(resized, tmp_path / "adapter", str(tiny_llama), modules_to_save=["embed_tokens", "lm_head"])
    tokenizer.save_pretrained(adapter)
    merged = merged_copy(adapter, resized, tmp_path / "merged")
    ids = list(range(PROMPTS))
    np.testing.assert_array_equal(rescore(scores, ids, checkpoint=adapter), rescore(scores, ids, checkpoint=merged))
    ours, reference = likelihoods(scores, ids, checkpoint=adapter), likelihoods(scores, ids, checkpoint=merged)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=LOGP_TOLERANCE)


def test_an_adapter_of_a_shallower_model_is_refused_where_the_scored_model_stands_in_for_its_base(
    tiny_llama, scores, tmp_path
):
    """Its base not here, the scored model stands in; peft would apply the adapter's two layers and leave the third
    unadapted with a warning. It is refused in one line, and peft's warning is not shown."""
    import warnings

    from transformers import AutoConfig, AutoModelForCausalLM

    from gaincurate.errors import ModelError
    from gaincurate.scoring.rescore import rescore

    config = AutoConfig.from_pretrained(tiny_llama)
    config.num_hidden_layers = 2
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "shallow")
    adapter = adapter_of(tmp_path / "shallow", tmp_path / "adapter", "/gone/shallow")
    with warnings.catch_warnings(record=True) as said, pytest.raises(ModelError) as refused:
        warnings.simplefilter("always")
        rescore(scores, [0, 1], checkpoint=adapter)
    message = str(refused.value)
    assert "\n" not in message and f"the LoRA adapter {adapter} does not fit {tiny_llama}: " in message
    assert "layers.2." in message and not [w for w in said if "adapter keys" in str(w.message)]


def test_an_adapter_whose_base_is_gone_loads_on_the_scored_model_in_rollout_and_in_two_processes(
    adapter, tiny_llama, scores, tmp_path, monkeypatch
):
    """Re-scoring falls back on the scored model; so do `gaincurate rollout --model ADAPTER` and torchrun's workers,
    which know no scored model (they are handed the adapter with that base named). A base named relative to the
    adapter's folder is found from any directory."""
    import shutil

    from gaincurate.model import resolve_source
    from gaincurate.scoring.rescore import rescore

    config = json.loads((adapter / "adapter_config.json").read_text())
    gone = shutil.copytree(adapter, tmp_path / "gone")
    (gone / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/gone/base"}))
    ids = list(range(8))
    np.testing.assert_array_equal(
        rescore(scores, ids, checkpoint=gone, nproc=2), rescore(scores, ids, checkpoint=adapter)
    )
    out = tmp_path / "rollouts.jsonl"
    done = gaincurate("rollout", scores, "--model", gone, "--out", out, "--reference-size", 2, "--samples", 1,
                      "--max-new-tokens", 2, "--dtype", "float32", "--device", "cpu", "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr

    shutil.copytree(tiny_llama, tmp_path / "models" / "base")
    moved = shutil.copytree(adapter, tmp_path / "models" / "adapter")
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "../base"}))
    monkeypatch.chdir(tmp_path)  # where ../base is no model
    assert resolve_source(str(moved)).base.folder == str(moved / "../base")
