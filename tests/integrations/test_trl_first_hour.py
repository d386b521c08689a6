"""A TRL user's first hour (issue #28): their prompts trained as plain TRL trains them, mistakes refused first.

Every case goes through a real entry point: `trainer.train()` of a GRPOTrainer set up the way docs/trl.md
teaches (tiny random Llama, CPU), or the installed `gaincurate` console script. Where training is refused, the
test asserts that no optimizer step ran and that no run directory was left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from helpers import run_cli, score_in_process, write_jsonl
from trl_helpers import grpo_settings, parity_reward

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl import GainCurriculum
from gaincurate.schedule import ScheduleConfig
from gaincurate.schedule.run.rundir import load_run
from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig

N_ROWS = 8
CONSOLE_SCRIPT = Path(sys.executable).parent / "gaincurate"


def user_rows(kind: str, offset: int = 0) -> list[dict]:
    """A user's own GRPO data: TRL's `prompt` column, as text or as chat messages, and an answer."""
    rows = []
    for i in range(offset, offset + N_ROWS):
        question = f"What is {i} + {2 * i + 3}?"
        prompt = question if kind == "text" else [{"role": "user", "content": question}]
        rows.append({"prompt": prompt, "answer": str(3 * i + 3)})
    return rows


def score_rows(rows: list[dict], model_dir: Path, root: Path) -> Path:
    data = write_jsonl(root / "data.jsonl", rows)
    config = ScoreConfig(
        dataset=str(data), prompt_column="prompt", model=str(model_dir), dtype="float32", device="cpu", backend="torch"
    )
    score(config, RunOptions(out=str(root / "scores"), quiet=True))
    return root / "scores"


class SeenPrompts:
    """The prompt token ids the trainer generated from, by prompt (wraps the trainer's own tokenization)."""

    def __init__(self, trainer) -> None:
        self.ids: dict[str, list[int]] = {}
        tokenize = trainer._tokenize_prompts

        def recording(prompts):
            prompt_ids, *rest = tokenize(prompts)
            for prompt, ids in zip(prompts, prompt_ids, strict=True):
                self.ids[json.dumps(prompt, sort_keys=True)] = [int(i) for i in ids]
            return (prompt_ids, *rest)

        trainer._tokenize_prompts = recording


class CountingReward:
    """parity_reward that counts its calls, so a test can tell that no rollout was ever scored."""

    __name__ = "parity"

    def __init__(self, value=None) -> None:
        self.calls = 0
        self.value = value

    def __call__(self, completion_ids, **kwargs):
        self.calls += 1
        if self.value is not None:
            return [self.value(i) for i in range(len(completion_ids))]
        return parity_reward(completion_ids)


def grpo(model_dir: Path, out: Path, dataset, reward_funcs, callbacks=(), **overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    settings = grpo_settings(out, num_train_epochs=1, max_completion_length=4, **overrides)
    return GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=GRPOConfig(**settings),
        train_dataset=dataset,
        reward_funcs=reward_funcs,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=list(callbacks),
    )


def five_lines(scores: Path, model_dir: Path, root: Path, *, config=None, attach=True, dataset=None, reward=None):
    """docs/trl.md's five lines around a GRPOTrainer; returns (curriculum, trainer, reward)."""
    curriculum = GainCurriculum(
        scores_dir=scores,
        config=config or ScheduleConfig(strategy="gain", subset_size=4, rescore="none"),
        run_dir=root / "run",
    )
    reward = reward or CountingReward()
    trainer = grpo(
        model_dir,
        root / "out",
        dataset if dataset is not None else curriculum.train_dataset(),
        curriculum.wrap_rewards([reward]),
        callbacks=[curriculum.callback],
        remove_unused_columns=False,
    )
    if attach:
        curriculum.attach(trainer)
    return curriculum, trainer, reward


# -- prompts belong to the user ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "messages"])
def test_the_trainer_sees_plain_trls_prompts_and_scoring_rendered_the_same_tokens(kind, tiny_llama, tmp_path):
    import datasets
    from transformers import AutoTokenizer

    from gaincurate.prompts import PromptEncoder, PromptFormat, for_column

    rows = user_rows(kind)
    scores = score_rows(rows, tiny_llama, tmp_path)
    curriculum, trainer, _ = five_lines(scores, tiny_llama, tmp_path)
    seen = SeenPrompts(trainer)
    trainer.train()

    plain = grpo(tiny_llama, tmp_path / "plain", datasets.Dataset.from_list(rows), [parity_reward])
    plain_seen = SeenPrompts(plain)
    plain.train()

    # The curriculum trained its subset, each prompt exactly as the user wrote it and as plain TRL tokenizes it.
    subset = curriculum.history[0]["subset_ids"]
    expected = {json.dumps(rows[g]["prompt"], sort_keys=True) for g in subset}
    assert set(seen.ids) == expected
    assert all(seen.ids[key] == plain_seen.ids[key] for key in seen.ids)
    assert len(plain_seen.ids) == N_ROWS

    # Scoring rendered those very tokens (nothing added: no system prompt, no few-shot turns).
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    encoder = PromptEncoder(tokenizer, for_column(PromptFormat(), "prompt"), None)
    for row, encoded in zip(rows, encoder.encode([row["prompt"] for row in rows]), strict=True):
        assert encoded.input_ids.tolist() == plain_seen.ids[json.dumps(row["prompt"], sort_keys=True)]
    assert json.loads((scores / "manifest.json").read_text())["prompt_format"] == "as_is"


def test_a_raw_question_column_gets_the_scoring_format_and_the_manifest_says_so(tiny_llama, tmp_path):
    rows = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(N_ROWS)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    config = ScoreConfig(dataset=str(data), model=str(tiny_llama), dtype="float32", device="cpu", backend="torch")
    score(config, RunOptions(out=str(tmp_path / "scores"), quiet=True))
    prompts = GainCurriculum(tmp_path / "scores", ScheduleConfig(strategy="gain", subset_size=4)).train_dataset()[
        "prompt"
    ]
    assert [m["role"] for m in prompts[0]] == ["system", "user", "assistant", "user"]
    assert prompts[3][-1] == {"role": "user", "content": "What is 3 + 1?"}
    assert json.loads((tmp_path / "scores" / "manifest.json").read_text())["prompt_format"] == "question"


def test_a_question_column_scored_without_a_chat_template_trains_the_very_text_scored(tiny_llama, tmp_path):
    """`--no-chat-template` scores plain 'Question:/Answer:' text: the trainer gets that text, and its tokens."""
    from gaincurate.prompts import PromptEncoder, PromptFormat

    rows = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(N_ROWS)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    config = ScoreConfig(dataset=str(data), model=str(tiny_llama), dtype="float32", device="cpu", backend="torch",
                         chat_template=False, few_shot=())  # fmt: skip
    score(config, RunOptions(out=str(tmp_path / "scores"), quiet=True))
    curriculum, trainer, _ = five_lines(tmp_path / "scores", tiny_llama, tmp_path)
    seen = SeenPrompts(trainer)
    trainer.train()

    encoder = PromptEncoder(trainer.processing_class, PromptFormat(chat_template=False, few_shot=()), None)
    for gc_id in curriculum.history[0]["subset_ids"]:
        text = f"{config.system_prompt}\n\nQuestion: {rows[gc_id]['problem']}\nAnswer:"
        assert seen.ids[json.dumps(text)] == encoder.encode([rows[gc_id]["problem"]])[0].input_ids.tolist()


# -- fail before work ----------------------------------------------------------------------------------


def test_a_forgotten_attach_fails_before_the_first_step(tiny_llama, tmp_path):
    scores = score_rows(user_rows("messages"), tiny_llama, tmp_path)
    _, trainer, reward = five_lines(scores, tiny_llama, tmp_path, attach=False)
    with pytest.raises(ConfigError, match=r"call curriculum.attach\(trainer\) before trainer.train\(\)"):
        trainer.train()
    assert trainer.state.global_step == 0 and reward.calls == 0


def test_a_forgotten_attach_and_callback_fails_at_the_first_reward(tiny_llama, tmp_path):
    scores = score_rows(user_rows("messages"), tiny_llama, tmp_path)
    curriculum = GainCurriculum(scores, ScheduleConfig(strategy="gain", subset_size=4, rescore="none"))
    reward = CountingReward()
    trainer = grpo(
        tiny_llama, tmp_path / "out", curriculum.train_dataset(), curriculum.wrap_rewards([reward]),
        remove_unused_columns=False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"curriculum.attach\(trainer\)"):
        trainer.train()
    assert trainer.state.global_step == 0 and reward.calls == 0


def test_a_refused_attach_writes_no_run_directory_and_an_untrained_one_starts_again(tiny_llama, tmp_path):
    scores = score_rows(user_rows("messages"), tiny_llama, tmp_path)
    with pytest.raises(ConfigError, match="subset_size 7 is not a multiple of the 2 prompts.*subset_size=6 or 8"):
        five_lines(scores, tiny_llama, tmp_path, config=ScheduleConfig(strategy="gain", subset_size=7, rescore="none"))
    assert not (tmp_path / "run").exists()

    five_lines(scores, tiny_llama, tmp_path, config=ScheduleConfig(strategy="gain", subset_size=4, rescore="none"))
    assert load_run(tmp_path / "run").config.subset_size == 4
    # Never trained on: another config starts it again instead of asking for `rm -rf`.
    curriculum, trainer, _ = five_lines(
        scores, tiny_llama, tmp_path, config=ScheduleConfig(strategy="gain", subset_size=6)
    )
    assert load_run(tmp_path / "run").config.subset_size == 6
    trainer.train()
    assert len(curriculum.history) == 1
    # train() returned: the run is finished, not "waiting for training".
    status = console("schedule", "status", "--run", tmp_path / "run", cwd=tmp_path)
    assert "finished: the trainer ended after 1 epochs" in status.stdout and "waiting for training" not in status.stdout
    # Trained on now: a different config is refused in one short line that names the setting.
    with pytest.raises(ConfigError, match=r"started and trained with subset_size=6, not subset_size=4; drop config="):
        GainCurriculum(scores, ScheduleConfig(strategy="gain", subset_size=4), run_dir=tmp_path / "run")


def test_plus_minus_one_rewards_are_refused_naming_reward_min(tiny_llama, tmp_path):
    scores = score_rows(user_rows("messages"), tiny_llama, tmp_path)
    reward = CountingReward(value=lambda i: 1.0 if i % 2 else -1.0)
    _, trainer, _ = five_lines(scores, tiny_llama, tmp_path, reward=reward)
    with pytest.raises(
        ConfigError, match=r"reward -1 .*wrong answer, start a run with reward_min=-1 .*ScheduleConfig\(reward_min=-1\)"
    ):
        trainer.train()
    assert trainer.state.global_step == 0


# -- the same data, checked ----------------------------------------------------------------------------


def test_rows_of_another_dataset_of_the_same_size_are_refused_at_attach(tiny_llama, tmp_path):
    import datasets

    scores = score_rows(user_rows("messages"), tiny_llama, tmp_path)
    other = datasets.Dataset.from_list(user_rows("messages", offset=100)).add_column("gc_id", list(range(N_ROWS)))
    with pytest.raises(ConfigError, match=r"training row 0 \(gc_id 0\) has the prompt .*What is 100 \+ 203"):
        five_lines(scores, tiny_llama, tmp_path, dataset=other)
    assert not (tmp_path / "run").exists()


def test_scores_without_hash_columns_still_train_and_say_once_they_are_unchecked(tmp_path, caplog):
    import numpy as np
    import pyarrow as pa
    from fake_scores import score_columns, write_scores_dir

    from gaincurate.integrations.trl.sampler import TRAIN_DATASET, check_same_prompts, dataset_gc_ids

    rows = pa.Table.from_pylist([{"problem": f"q{i}", "answer": str(i)} for i in range(N_ROWS)])
    columns = score_columns(np.arange(N_ROWS, dtype=float), [3] * N_ROWS)
    scores = write_scores_dir(tmp_path / "old", rows, columns, dataset={"name": "old"}, hashes=False)

    curriculum = GainCurriculum(scores, ScheduleConfig(strategy="gain", subset_size=4))
    dataset = curriculum.train_dataset()
    row_of = curriculum.run.row_map(dataset_gc_ids(dataset), fix=TRAIN_DATASET)
    with caplog.at_level("WARNING"):
        check_same_prompts(dataset, curriculum.run.scores, row_of)
        check_same_prompts(dataset, curriculum.run.scores, row_of)
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "predates prompt hashes" in caplog.records[0].getMessage()


# -- the console script --------------------------------------------------------------------------------


def console(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("GAINCURATE_DEBUG", None)
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gaincurate: error: "), result.stderr
    return lines[0]


def test_score_refuses_missing_answers_unless_allowed_and_counts_them(tiny_llama, tmp_path):
    rows = [{"problem": f"What is {i} + 1?", **({"answer": str(i + 1)} if i % 3 else {})} for i in range(N_ROWS)]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    common = ["--model", tiny_llama, "--device", "cpu", "--dtype", "float32", "--quiet"]
    refused = console("score", data, "--out", "scores", *common, cwd=tmp_path)
    assert refused.returncode == 1
    line = one_error_line(refused)
    assert "3 of 8 rows" in line and "'answer'" in line and "row 0" in line and "--allow-missing-answers" in line
    assert not (tmp_path / "scores").exists()

    named = console("score", data, "--out", "scores", "--answer-column", "solution", *common, cwd=tmp_path)
    assert named.returncode == 1 and "no answer column 'solution'" in one_error_line(named)

    # Allowed, the count is in the manifest (in this process: what the user sees of it is checked below).
    score_in_process([data, "--out", tmp_path / "scores", "--allow-missing-answers", *common])
    manifest = json.loads((tmp_path / "scores" / "manifest.json").read_text())
    assert manifest["answers"] == {"column": "answer", "present": True, "missing": 3}

    # No answer column at all (the default `answer`, which the rewards would read): refused the same way.
    bare = write_jsonl(tmp_path / "bare.jsonl", [{"problem": row["problem"]} for row in rows])
    refused = console("score", bare, "--out", "bare", *common, cwd=tmp_path)
    line = one_error_line(refused)
    assert refused.returncode == 1 and "has no answer column 'answer' (the default)" in line
    assert "--answer-column" in line and "--allow-missing-answers" in line and not (tmp_path / "bare").exists()
    counted = console("score", bare, "--out", "bare", "--allow-missing-answers", *common[:-1], cwd=tmp_path)
    assert counted.returncode == 0, counted.stderr
    assert "No 'answer' column: 8 row(s) scored without an answer (--allow-missing-answers)" in counted.stdout
    answers = json.loads((tmp_path / "bare" / "manifest.json").read_text())["answers"]
    assert answers == {"column": "answer", "present": False, "missing": 8}


def test_version_and_the_shipped_examples_work_from_an_empty_directory(tmp_path):
    version = console("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("gaincurate ")
    listed = console("example", cwd=tmp_path)
    assert listed.returncode == 0 and "trl-epoch" in listed.stdout
    path = console("example", "--path", "trl-epoch", cwd=tmp_path)
    assert path.returncode == 0 and Path(path.stdout.strip()).is_file()
    usage = console("example", "trl-epoch", "--epoch", "0", cwd=tmp_path)  # no --data: the script's own refusal
    assert usage.returncode == 2 and "--data" in usage.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_example_help_is_ours_and_the_scripts_help_shows_their_defaults(tmp_path):
    """`example --help` exited 1 ("no example '--help'"); the scripts' help showed no defaults."""
    ours = console("example", "--help", cwd=tmp_path)
    assert ours.returncode == 0 and "trl-epoch or trl-inprocess" in ours.stdout and "Traceback" not in ours.stderr
    for name, shown in [
        ("trl-epoch", ["--num-generations", "(default: 2)", "--max-completion-length", "(default: 8)"]),
        ("trl-inprocess", ["--epochs", "(default: 3)", "--prompts", "(default: 32)"]),
    ]:
        script = console("example", name, "--help", cwd=tmp_path)
        text = " ".join(script.stdout.split())
        assert script.returncode == 0 and all(words in text for words in shown), script.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_examples_reward_an_answer_as_rollout_and_verl_do():
    """The last `\\boxed{}` under math-verify: a box holding the gold among other digits is wrong, the gold in
    another notation right, a cut-off box wrong, and a number gold is read as its number."""
    from gaincurate.examples import trl_epoch, trl_inprocess

    completions = ["So \\boxed{12}.", "So \\boxed{\\frac{3}{4}}.", "So \\boxed{18}.", "\\boxed{5"]
    answers = ["2", "3/4", 18.0, "5"]
    assert trl_epoch.answer_reward(completions, answers) == [0.0, 1.0, 1.0, 0.0]
    chats = [[{"role": "assistant", "content": text}] for text in completions]
    assert trl_inprocess.answer_reward(chats, answers) == [0.0, 1.0, 1.0, 0.0]


def test_the_example_says_first_that_its_defaults_show_the_mechanics_only(tmp_path, monkeypatch, capsys):
    """2 rollouts of 8 tokens learn nothing; the quickstart's run said nothing of it (issue #41)."""
    common = ["example", "trl-epoch", "--data", "absent.parquet", "--output-dir", "o", "--feedback-file", "f"]
    small = console(*common, "--epoch", "0", cwd=tmp_path)
    lines = small.stderr.splitlines()
    assert lines[0].startswith("note: this run shows the mechanics only: 2 rollouts of at most 8 tokens"), lines
    assert "--num-generations 8 --max-completion-length 512" in lines[0] and "zero reward variance" in lines[0]
    # A missing epoch file is one line, not a traceback.
    missing = (
        "epoch file absent.parquet does not exist; pass {epoch_data}, the RUN/epoch-NNNN.parquet file `gaincurate "
        "schedule` wrote"
    )
    assert small.returncode == 1 and lines[1:] == [f"gaincurate: error: {missing}"]
    # Larger settings, no note: checked in this process, the same `main` as above.
    monkeypatch.chdir(tmp_path)
    large = run_cli([*common, "--epoch", "0", "--num-generations", "8", "--max-completion-length", "512"],
                    monkeypatch, capsys)  # fmt: skip
    assert "mechanics only" not in large[2] and large[0] == 1 and "absent.parquet does not exist" in large[2]
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_no_epoch_file_is_one_line_before_the_model_loads(tmp_path):
    """A JSON lines file, or a Parquet file of one's own prompts, where the epoch file belongs: before, pyarrow's
    traceback, or TRL's KeyError after the model had loaded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "mine.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    pq.write_table(pa.table({"question": ["1+1?"], "answer": ["2"]}), tmp_path / "own.parquet")
    for name, said in [("mine.jsonl", "is not a Parquet epoch file ("), ("own.parquet", "it has no gc_id or prompt")]:
        done = console("example", "trl-epoch", "--data", name, "--output-dir", "o", "--feedback-file", "f",
                       "--epoch", "0", cwd=tmp_path)  # fmt: skip
        lines = done.stderr.splitlines()
        assert done.returncode == 1 and len(lines) == 2 and lines[1].startswith(f"gaincurate: error: {name}"), lines
        assert said in lines[1] and lines[1].endswith("pass {epoch_data}, the RUN/epoch-NNNN.parquet file `gaincurate "
                                                      "schedule` wrote")  # fmt: skip


def test_the_example_says_before_training_which_prompts_its_steps_leave_out(tmp_path):
    """An epoch of 7 prompts in steps of 2: TRL drops the last one; the pilot learned it only after the epoch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    common = ["example", "trl-epoch", "--output-dir", "o", "--feedback-file", "f", "--epoch", "1", "--reward",
              "parity"]  # fmt: skip
    for rows, noted in ((7, True), (8, False)):
        epoch = pa.table({"gc_id": list(range(rows)), "prompt": [f"q{i}" for i in range(rows)]})
        pq.write_table(epoch, tmp_path / f"e{rows}.parquet")
        run = console(*common, "--data", f"e{rows}.parquet", cwd=tmp_path)
        lines = run.stderr.splitlines()
        assert run.returncode == 1 and lines[-1].startswith("gaincurate: error: epoch 1 needs the checkpoint"), lines
        expected = [
            "note: 1 of this epoch's 7 prompts will get no rollout: TRL trains whole steps of --prompts-per-step 2 "
            "only. To train them all, pass a --prompts-per-step that divides 7, or start the run with `schedule init "
            "--subset-multiple 2`."
        ]
        assert lines[:-1] == (expected if noted else []), lines


def test_importing_the_integration_and_trl_prints_nothing(tmp_path):
    code = "import gaincurate.integrations.trl\nfrom trl import GRPOTrainer, GRPOConfig\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr


def test_the_in_process_example_rerun_in_its_workdir_goes_on_from_its_checkpoint(tmp_path):
    """A rerun in the same --workdir took the model it built again (new file times: another model to the scores,
    refused) and started its trainer from epoch 0 against a curriculum at epoch 1 (refused): it goes on now."""
    workdir = tmp_path / "work"
    for epochs in (1, 2):
        args = ["--workdir", workdir, "--epochs", epochs, "--prompts", 16]
        done = console("example", "trl-inprocess", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    lines = (workdir / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
