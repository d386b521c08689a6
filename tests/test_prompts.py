"""Token labels come from character spans: question, context or template, on several templates."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CHATML_TEMPLATE, GEMMA_TEMPLATE, LLAMA_LIKE_TEMPLATE, SMOLLM2_TEMPLATE, build_tokenizer

from gaincurate.errors import ConfigError
from gaincurate.prompts import (
    CONTEXT,
    QUESTION,
    STATUS_EMPTY,
    STATUS_ONE_QUESTION_TOKEN,
    STATUS_QUESTION_TRUNCATED,
    TEMPLATE,
    PromptEncoder,
    PromptFormat,
    render_with_spans,
    training_prompt,
    truncate,
)

SHOTS = ({"question": "What is 2 + 3?", "answer": "2 + 3 = 5. The answer is \\boxed{5}."},)
SYSTEM = "Solve the following math problem."

TEMPLATES = {
    "smollm2": (SMOLLM2_TEMPLATE, "You are a helpful AI assistant named SmolLM"),
    "chatml": (CHATML_TEMPLATE, "You are a helpful assistant."),
    "llama-like": (LLAMA_LIKE_TEMPLATE, None),
    "plain": (None, None),
}


def _text(tokenizer, ids, labels, label) -> str:
    return tokenizer.decode(ids[labels == label]).strip()


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("with_context", [True, False], ids=["context", "no-context"])
def test_labels_cover_exactly_the_contents(name, with_context):
    template, injected = TEMPLATES[name]
    tokenizer = build_tokenizer(template)
    fmt = PromptFormat(
        system_prompt=SYSTEM if with_context else None,
        few_shot=SHOTS if with_context else (),
        chat_template=template is not None,
    )
    question = "If x + 4 = 9, what is x?"
    [encoded] = PromptEncoder(tokenizer, fmt, max_length=None).encode([question])
    ids, labels = encoded.input_ids, encoded.segment_ids

    assert _text(tokenizer, ids, labels, QUESTION) == question
    context = _text(tokenizer, ids, labels, CONTEXT)
    if with_context:
        for piece in (SYSTEM, SHOTS[0]["question"], SHOTS[0]["answer"]):
            assert piece in context
    else:
        assert encoded.context_tokens == 0
    # Everything the template injects (headers, default system prompt, generation prompt) is excluded.
    template_text = _text(tokenizer, ids, labels, TEMPLATE)
    if injected and not with_context:
        assert injected in template_text
    if injected:
        assert injected not in context and injected not in _text(tokenizer, ids, labels, QUESTION)
    assert "<|im_start|>" not in context + _text(tokenizer, ids, labels, QUESTION)
    # The generation prompt follows the question and is template.
    assert labels[-1] == TEMPLATE


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_question_repeating_context_is_labelled_at_its_own_place(name):
    template, _ = TEMPLATES[name]
    tokenizer = build_tokenizer(template)
    repeated = SHOTS[0]["question"]
    fmt = PromptFormat(system_prompt=f"{SYSTEM} {repeated}", few_shot=SHOTS, chat_template=template is not None)
    [encoded] = PromptEncoder(tokenizer, fmt, max_length=None).encode([repeated])
    labels = encoded.segment_ids
    question_positions = np.flatnonzero(labels == QUESTION)
    # One contiguous run, after every context token: the last user message, not an earlier copy.
    assert np.all(np.diff(question_positions) == 1)
    assert question_positions.min() > np.flatnonzero(labels == CONTEXT).max()
    assert _text(tokenizer, encoded.input_ids, labels, QUESTION) == repeated
    assert _text(tokenizer, encoded.input_ids, labels, CONTEXT).count(repeated) == 2


def test_flags_empty_and_one_token_questions():
    tokenizer = build_tokenizer(CHATML_TEMPLATE)
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=None)
    empty, one = encoder.encode(["   ", "7"])
    assert empty.status == STATUS_EMPTY and empty.question_tokens == 0
    assert one.status == STATUS_ONE_QUESTION_TOKEN and one.question_tokens == 1


def test_truncation_drops_earliest_context_first_then_question_tail():
    ids = np.arange(12)
    labels = np.array([-1, 1, 1, 1, -1, 1, 1, -1, 0, 0, 0, -1], dtype=np.int8)
    kept_ids, kept_labels, truncated, question_cut = truncate(ids, labels, 9)
    assert truncated and not question_cut
    assert kept_ids.tolist() == [0, 4, 5, 6, 7, 8, 9, 10, 11]
    kept_ids, kept_labels, truncated, question_cut = truncate(ids, labels, 5)
    assert question_cut
    assert kept_ids.tolist() == [0, 4, 7, 8, 11]
    assert (kept_labels == CONTEXT).sum() == 0


def test_truncated_prompt_is_flagged_and_keeps_generation_prompt():
    tokenizer = build_tokenizer(CHATML_TEMPLATE)
    full = PromptEncoder(tokenizer, PromptFormat(), max_length=None).encode(["Find 15% of 80."])[0]
    limit = len(full.input_ids) - full.context_tokens - 2
    cut = PromptEncoder(tokenizer, PromptFormat(), max_length=limit).encode(["Find 15% of 80."])[0]
    assert len(cut.input_ids) == limit
    assert cut.truncated and cut.status == STATUS_QUESTION_TRUNCATED
    assert cut.context_tokens == 0 and cut.question_tokens == full.question_tokens - 2
    assert tokenizer.decode(cut.input_ids).endswith("<|im_start|>assistant\n")


def test_template_that_rewrites_content_is_refused_naming_the_prompt_and_a_fix_that_works_for_it():
    tokenizer = build_tokenizer("{% for m in messages %}{{ m['content'] | upper }}{% endfor %}")
    with pytest.raises(
        ConfigError, match="rewrites message text in the prompt 'What is 2 [+] 3[?]'.*--no-chat-template"
    ):
        PromptEncoder(tokenizer, PromptFormat(), max_length=None).encode(["What is 2 + 3?"])
    # Chat messages are rendered with the template whatever --no-chat-template says (as TRL renders them).
    encoder = PromptEncoder(tokenizer, PromptFormat(chat_template=False), max_length=None)
    with pytest.raises(ConfigError) as refused:
        encoder.encode(["What is 1 + 1?", [{"role": "user", "content": "What is 2 + 3?"}]], first_row=40)
    assert "in row 41 (counting from 0)" in str(refused.value) and "--no-chat-template" not in str(refused.value)
    assert str(refused.value).endswith("use a model whose template keeps message text")


@pytest.mark.parametrize("value", ["What is 2 + 3?", [{"role": "user", "content": "What is 2 + 3?"}]])
@pytest.mark.parametrize("chat_template", [True, False])
def test_missing_chat_template_names_the_fix_that_works_for_the_prompt(value, chat_template):
    encoder = PromptEncoder(build_tokenizer(None), PromptFormat(chat_template=chat_template), max_length=None)
    if isinstance(value, str) and not chat_template:
        assert encoder.encode([value])[0].question_tokens > 1  # plain text needs no template
        return
    with pytest.raises(ConfigError) as refused:
        encoder.encode([value])
    if isinstance(value, str):
        assert str(refused.value) == "this model's tokenizer has no chat template; pass --no-chat-template"
    else:  # messages have no plain form: --no-chat-template would not help
        assert "is a list of chat messages" in str(refused.value) and "--no-chat-template" not in str(refused.value)
        assert "pass --model naming a model with a chat template" in str(refused.value)


def test_a_template_that_refuses_messages_is_one_line_with_the_fix_that_works():
    tokenizer = build_tokenizer(GEMMA_TEMPLATE)
    with pytest.raises(ConfigError) as refused:
        PromptEncoder(tokenizer, PromptFormat(), max_length=None).encode(["What is 2 + 3?"])
    assert str(refused.value) == (
        "the model's chat template refuses the prompt format's messages (system, user, assistant, user): "
        "'System role not supported'; it takes no system message: pass --no-system-prompt"
    )
    # The fix works: without the system prompt the same question is scored, the few-shot turn as context.
    [encoded] = PromptEncoder(tokenizer, PromptFormat(system_prompt=None), max_length=None).encode(["What is 2 + 3?"])
    assert _text(tokenizer, encoded.input_ids, encoded.segment_ids, QUESTION) == "What is 2 + 3?"
    assert encoded.context_tokens > 0

    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    twice = [{"role": "user", "content": "Hi."}, {"role": "user", "content": "What is 2 + 3?"}]
    encoder = PromptEncoder(tokenizer, PromptFormat(as_is=True), max_length=None)
    with pytest.raises(ConfigError, match=r"messages of row 3 .*: remove the system messages from the prompts"):
        encoder.encode([system], first_row=3)
    with pytest.raises(ConfigError, match=r"'Conversation roles must alternate.*'; use a model whose template takes"):
        encoder.encode([twice])
    refusing = build_tokenizer("{{ raise_exception('This template renders nothing') }}")
    with pytest.raises(ConfigError, match=r"'This template renders nothing'; pass --no-chat-template, or use another"):
        PromptEncoder(refusing, PromptFormat(), max_length=None).encode(["What is 2 + 3?"])


def test_a_template_that_trims_contents_labels_what_it_renders_exactly_as_trl_tokenizes_it():
    """Llama 3 and Gemma trim each message: the labels cover the trimmed text, and the ids are TRL's."""
    tokenizer = build_tokenizer(LLAMA_LIKE_TEMPLATE)
    conversation = [
        {"role": "system", "content": "  Solve the following math problem.\n"},
        {"role": "user", "content": "What is 2 + 3?\n\n"},
    ]
    encoder = PromptEncoder(tokenizer, PromptFormat(as_is=True), max_length=None)
    [encoded] = encoder.encode([conversation])
    assert _text(tokenizer, encoded.input_ids, encoded.segment_ids, QUESTION) == "What is 2 + 3?"
    assert _text(tokenizer, encoded.input_ids, encoded.segment_ids, CONTEXT) == "Solve the following math problem."
    trl = tokenizer.apply_chat_template([conversation], add_generation_prompt=True, tokenize=True, return_dict=True)
    assert encoded.input_ids.tolist() == list(trl["input_ids"][0])  # GRPOTrainer's own call
    text, spans = render_with_spans(tokenizer, conversation, encoder.fmt)
    assert [text[start:end] for start, end, _ in spans] == ["Solve the following math problem.", "What is 2 + 3?"]


def test_without_a_chat_template_what_is_trained_is_the_text_scored():
    """TRL tokenizes a text prompt as it is (`processing_class(text=prompts)`): the plain text scoring rendered."""
    tokenizer = build_tokenizer(CHATML_TEMPLATE)
    fmt = PromptFormat(system_prompt=SYSTEM, few_shot=SHOTS, chat_template=False)
    question = "  If x + 4 = 9, what is x?\n"
    prompt = training_prompt(question, fmt)
    assert isinstance(prompt, str) and prompt == render_with_spans(tokenizer, question.strip(), fmt)[0]
    assert prompt.startswith(SYSTEM) and prompt.endswith("Question: If x + 4 = 9, what is x?\nAnswer:")
    [encoded] = PromptEncoder(tokenizer, fmt, max_length=None).encode([question])
    assert encoded.input_ids.tolist() == tokenizer(text=[prompt])["input_ids"][0]
    # Chat messages are rendered with the template whatever the format says, so they are trained as messages.
    conversation = [{"role": "user", "content": "What is 2 + 3?"}]
    assert training_prompt(conversation, fmt) == conversation
    assert training_prompt(question, PromptFormat(system_prompt=None, few_shot=())) == [
        {"role": "user", "content": "If x + 4 = 9, what is x?"}
    ]


def test_a_call_renders_the_template_around_placeholders_once_per_sequence_of_roles(monkeypatch):
    tokenizer = build_tokenizer(CHATML_TEMPLATE)
    fmt = PromptFormat(system_prompt=SYSTEM, few_shot=SHOTS)
    questions = ["What is 2 + 3?", "If x + 4 = 9, what is x?", "How many primes are below 10?"]
    conversation = [{"role": "user", "content": "What is 7 - 2?"}]
    expected = [PromptEncoder(tokenizer, fmt, max_length=None).encode([q])[0] for q in [*questions, conversation]]
    rendered, render = [], type(tokenizer).apply_chat_template

    def counted(self, messages, **options):
        rendered.append(messages)
        return render(self, messages, **options)

    monkeypatch.setattr(type(tokenizer), "apply_chat_template", counted)
    got = PromptEncoder(tokenizer, fmt, max_length=None).encode([*questions, conversation])
    # Each prompt rendered with its contents (to check the template keeps them), plus one skeleton per role sequence.
    assert len(rendered) == len(got) + 2
    for mine, alone in zip(got, expected, strict=True):
        assert np.array_equal(mine.input_ids, alone.input_ids) and np.array_equal(mine.segment_ids, alone.segment_ids)
