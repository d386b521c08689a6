"""A model's chat template and a user's chat messages, through `gaincurate score` and `schedule` as users run them.

What cannot be rendered is refused in one line whose fix works there, and nothing is written: a template that
refuses the system prompt (Gemma 2's), chat messages for a model without a template, a conversation that no template
renders. What a template trims (Llama 3's `| trim`) is scored as the template renders it, on every row. A question
column scored with `--no-chat-template` is trained on the very text that was scored, which verl cannot take.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import GEMMA_TEMPLATE, LLAMA_LIKE_TEMPLATE, PROBLEMS, save_tiny_model, score_in_process, write_jsonl

from gaincurate.shards import read_manifest, read_scores

SCORE = ("--device", "cpu", "--dtype", "float32", "--no-embed", "--quiet")


def chats(rows: list[dict], column: str = "prompt") -> list[dict]:
    return [{column: [{"role": "user", "content": row["problem"]}], "answer": row["answer"]} for row in rows]


def test_a_template_that_refuses_the_system_prompt_names_the_switch_that_scores(
    gaincurate, error_line, problems_file, tmp_path
):
    model = save_tiny_model(tmp_path / "gemma-like", "llama", chat_template=GEMMA_TEMPLATE)
    line = error_line(gaincurate("score", problems_file.name, "--model", model, "--out", "scores", *SCORE))
    assert line == (
        "gaincurate: error: the model's chat template refuses the prompt format's messages (system, user, assistant, "
        "user): 'System role not supported'; it takes no system message: pass --no-system-prompt"
    )
    assert not (tmp_path / "scores").exists()
    score_in_process([problems_file, "--model", model, "--out", tmp_path / "scores", *SCORE, "--no-system-prompt"])
    assert read_manifest(tmp_path / "scores")["rows"] == len(PROBLEMS)


@pytest.mark.parametrize(("column", "switch"), [("messages", ()), ("prompt", ("--no-chat-template",))])
def test_chat_messages_for_a_model_without_a_template_are_one_line(column, switch, gaincurate, error_line, tmp_path):
    """Chat messages have no plain form (TRL renders them with the template), so --no-chat-template is no fix."""
    model = save_tiny_model(tmp_path / "no-template", "llama", chat_template=None)
    data = write_jsonl(tmp_path / "chats.jsonl", chats(PROBLEMS, column)).name
    refused = gaincurate("score", data, "--prompt-column", column, "--model", model, "--out", "scores", *SCORE, *switch)
    # The first row is named by its text, or by its number where the caller gives `PromptEncoder.encode` the row.
    named = (f"the prompt {PROBLEMS[0]['problem']!r}", "row 0 (counting from 0)")
    assert error_line(refused) in [
        f"gaincurate: error: {name} is a list of chat messages, which TRL renders with the model's chat template, and "
        "this model's tokenizer has none; pass --model naming a model with a chat template, or score a column of text"
        for name in named
    ]
    assert not (tmp_path / "scores").exists()


@pytest.mark.parametrize(
    ("conversation", "said"),
    [
        ([{"role": "system", "content": None}, {"role": "user", "content": "What?"}], "has message 0 (system) with "
         "no content (null); give it text, or remove the message"),
        ([{"role": "user", "content": [{"type": "text", "text": "What?"}]}], "has message 0 (user) with content "
         "parts, not text; join the parts' text into one string"),
        ([], "is an empty conversation (no message); give it at least one user message, or remove the row"),
    ],
    ids=["null-content", "content-parts", "empty"],
)  # fmt: skip
def test_a_conversation_no_template_renders_is_refused_naming_its_row(
    conversation, said, gaincurate, error_line, tmp_path
):
    """Refused as the rows are read: before any model is looked for, and before anything is written."""
    rows = [*chats(PROBLEMS[:2]), {"prompt": conversation, "answer": "1"}]
    data = write_jsonl(tmp_path / "chats.jsonl", rows).name
    refused = gaincurate("score", data, "--prompt-column", "prompt", "--model", "no-such-model-needed", "--out", "s")
    assert error_line(refused) == f"gaincurate: error: row 2 (counting from 0) of column 'prompt' of {data} {said}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chats.jsonl"]


def test_a_template_that_trims_messages_scores_every_row_as_it_renders_it(tmp_path):
    """Whitespace around a message's text is trimmed by the template, so such a row renders, and scores, exactly as
    the same row without it; before, the run stopped at the first such row past row 0."""
    model = save_tiny_model(tmp_path / "llama-like", "llama", chat_template=LLAMA_LIKE_TEMPLATE)
    plain = chats(PROBLEMS[:3])
    padded = [
        {**row, "prompt": [{"role": "user", "content": f"\n {row['prompt'][0]['content']}\n\n"}]} for row in plain
    ]
    data = write_jsonl(tmp_path / "chats.jsonl", [*plain, *padded])
    score_in_process([data, "--prompt-column", "prompt", "--model", model, "--out", tmp_path / "s", *SCORE,
                      "--shard-rows", "2"])  # fmt: skip
    table = read_scores(tmp_path / "s")
    assert table.column("gc_status").to_pylist() == ["ok"] * 6
    for name in ("gc_score", "gc_question_tokens"):
        values = np.asarray(table.column(name).to_pylist())
        assert np.array_equal(values[:3], values[3:]), name


def test_questions_scored_without_a_chat_template_train_the_text_scored_and_verl_is_refused(
    gaincurate, error_line, problems_file, tiny_llama, tmp_path, capsys
):
    from transformers import AutoTokenizer

    from gaincurate.cli import main
    from gaincurate.prompts import PromptEncoder, PromptFormat

    score_in_process([problems_file, "--model", tiny_llama, "--out", tmp_path / "s", *SCORE, "--no-chat-template"])
    run = ["--run", str(tmp_path / "run"), "--strategy", "gain", "--subset-size", "4"]
    main(["schedule", "init", "--scores", str(tmp_path / "s"), *run])
    main(["schedule", "step", "--run", str(tmp_path / "run")])
    capsys.readouterr()
    epoch = pq.read_table(tmp_path / "run" / "epoch-0000.parquet").to_pylist()
    config = read_manifest(tmp_path / "s")["config"]
    fmt = PromptFormat(system_prompt=config["system_prompt"], few_shot=tuple(config["few_shot"]), chat_template=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    encoder = PromptEncoder(tokenizer, fmt, None)
    for row in epoch:
        assert isinstance(row["prompt"], str) and row["prompt"].endswith(f"Question: {row['problem']}\nAnswer:")
        # GRPOTrainer tokenizes a text prompt as `processing_class(text=prompts)`: the very ids that were scored.
        assert tokenizer(text=[row["prompt"]])["input_ids"][0] == encoder.encode([row["problem"]])[0].input_ids.tolist()

    verl = ["--run", "verl-run", "--strategy", "gain", "--format", "verl"]
    line = error_line(gaincurate("schedule", "init", "--scores", tmp_path / "s", *verl))
    assert line == (
        "gaincurate: error: --format verl needs chat messages (verl renders every prompt with the chat template), but "
        "the scores rendered plain 'Question:/Answer:' text (--no-chat-template); use --format trl, or score again "
        "without --no-chat-template"
    )
    assert not (tmp_path / "verl-run").exists()
