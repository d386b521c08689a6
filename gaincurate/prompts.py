"""Build scoring prompts and label every token as question, context or template.

A prompt is an optional system prompt, optional few-shot turns and the question as the last user
message, rendered with the tokenizer's chat template (or as plain text). A value that already is a TRL
prompt (chat messages, or the text of a column named `prompt`, TRL's prompt column) is taken as it is:
nothing is added, and it is rendered exactly as TRL's GRPOTrainer renders it, so what is scored is what
is trained (`training_prompt`). Labels come from character spans, never from fixed token offsets:

* the template is rendered once with unique placeholders in place of each message's content, so the
  exact character span of every content is known even when the same text appears twice (a question
  that repeats a few-shot question, or that occurs inside the system prompt);
* the fast tokenizer's offset mapping then assigns each token to the content it overlaps.

Everything the template adds (role headers, special tokens, a default system prompt it injects, the
generation prompt) is labelled `TEMPLATE` and excluded from scoring.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import ConfigError, InputError

QUESTION = 0
CONTEXT = 1
TEMPLATE = -1
NUM_SEGMENTS = 2

DEFAULT_SYSTEM_PROMPT = (
    "Solve the following math problem. Think it through step by step, "
    "then write only the final answer inside \\boxed{}."
)

# One worked example in the format the system prompt asks for.
DEFAULT_FEW_SHOT: tuple[dict[str, str], ...] = (
    {
        "question": "A baker fills 3 trays with 12 muffins each and sells 20 muffins. How many are left?",
        "answer": "The trays hold 3 * 12 = 36 muffins. After selling 20, 36 - 20 = 16 remain.\n\n"
        "The answer is \\boxed{16}.",
    },
)

# Status values for rows that cannot be scored; they are kept, flagged and counted, never dropped.
STATUS_OK = "ok"
STATUS_EMPTY = "empty_question"
STATUS_NO_QUESTION_TOKENS = "no_question_tokens"
STATUS_ONE_QUESTION_TOKEN = "one_question_token"
STATUS_QUESTION_TRUNCATED = "question_truncated"

_PLACEHOLDER = "@@GAINCURATE-SEGMENT-{}@@"

# TRL's prompt column: its text (or chat messages) is the whole prompt, trained and scored as it is.
TRL_PROMPT_COLUMN = "prompt"


@dataclass(frozen=True, kw_only=True)
class PromptFormat:
    """How a question becomes a prompt; everything here changes the tokens that are scored."""

    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    few_shot: tuple[dict[str, str], ...] = DEFAULT_FEW_SHOT
    chat_template: bool = True
    # The column is TRL's `prompt`: each text value is the whole prompt (chat messages always are).
    as_is: bool = False

    def __post_init__(self) -> None:
        for index, shot in enumerate(self.few_shot):
            if set(shot) != {"question", "answer"} or not all(isinstance(v, str) for v in shot.values()):
                raise ConfigError(
                    f"few-shot example {index} must be an object with string keys 'question' and 'answer'; "
                    f"got keys {sorted(shot)}"
                )

    def fingerprint(self) -> str:
        fields = {"system": self.system_prompt, "few_shot": list(self.few_shot), "chat": self.chat_template}
        if self.as_is:  # only when set, so the fingerprints of question-column runs stay as they were
            fields["as_is"] = True
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EncodedPrompt:
    """Token ids and their segment labels (QUESTION, CONTEXT or TEMPLATE) for one row."""

    input_ids: np.ndarray  # int64 [T]
    segment_ids: np.ndarray  # int8 [T]
    truncated: bool
    status: str

    @property
    def question_tokens(self) -> int:
        return int((self.segment_ids == QUESTION).sum())

    @property
    def context_tokens(self) -> int:
        return int((self.segment_ids == CONTEXT).sum())


def build_messages(
    question: str, *, system_prompt: str | None, few_shot: tuple[dict[str, str], ...] | list[dict[str, str]]
) -> list[dict[str, str]]:
    """Chat messages for one question: system prompt, few-shot turns, then the question."""
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt.strip()})
    for shot in few_shot:
        messages.append({"role": "user", "content": shot["question"].strip()})
        messages.append({"role": "assistant", "content": shot["answer"].strip()})
    messages.append({"role": "user", "content": question.strip()})
    return messages


def for_column(fmt: PromptFormat, column: str) -> PromptFormat:
    """The format of prompts read from `column`: TRL's `prompt` column is taken as it is."""
    return replace(fmt, as_is=column == TRL_PROMPT_COLUMN)


def is_messages(value: Any) -> bool:
    """Whether a prompt value is a conversation: a list of {"role", "content"} messages."""
    return isinstance(value, list | tuple) and all(isinstance(m, dict) and "role" in m for m in value)


# Said once at run time where chat messages carry nothing besides the question: `inter` needs a context span.
NO_CONTEXT = (
    "these prompts are chat messages with no system prompt or earlier turns of their own (a system prompt and "
    "few-shot turns are never added to messages), so gc_inter, the question's angle to its context, is undefined "
    "and gc_score is gc_intra alone: rank these prompts against each other, not against plain-text prompts' scores"
)


def applied_format(fmt: PromptFormat, value: Any) -> PromptFormat:
    """What of `fmt` a prompt value (a row's) is rendered with: chat messages get no system prompt or few-shot turns."""
    return replace(fmt, system_prompt=None, few_shot=()) if is_messages(value) else fmt


def question_text(value: Any) -> str:
    """The question a prompt value asks, for people to read: a conversation's last user message, text as it is."""
    if is_messages(value):
        users = [m for m in value if m.get("role") == "user"]
        return str((users[-1] if users else value[-1]).get("content") or "") if value else ""
    return "" if value is None else str(value)


def training_prompt(value: Any, fmt: PromptFormat) -> Any:
    """What TRL trains on for one row's prompt value, rendered by scoring exactly so: chat messages and the text of
    TRL's `prompt` column stay as they are; a raw question becomes the system prompt, the few-shot turns and the
    question as the last user message, or without a chat template the plain text scored (TRL takes text as it is)."""
    if fmt.as_is and not is_messages(value):
        return "" if value is None else str(value)
    messages = _conversation(value, fmt)
    return messages if fmt.chat_template or is_messages(value) else _render_plain(messages)[0]


def _conversation(value: Any, fmt: PromptFormat) -> list[dict[str, Any]]:
    """The chat messages of a prompt value: its own (role and content of each), or the question in `fmt`'s."""
    if is_messages(value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    question = "" if value is None else str(value)
    return build_messages(question, system_prompt=fmt.system_prompt, few_shot=fmt.few_shot)


def prompt_digest(value: Any) -> str | None:
    """A short SHA-256 of a prompt (or answer) value: text as it is, messages as canonical JSON; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        value = training_prompt(value, PromptFormat(as_is=True)) if is_messages(value) else value  # role, content
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def answer_text(value: Any) -> str | None:
    """An answer as the text that is hashed: numbers and text alike as `str`; None or blank is no answer."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value if isinstance(value, str) else str(value)


def _labels_of(message_index: int, messages: list[dict[str, Any]]) -> int:
    """The last user message is the question; every other message's content is context."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    last = users[-1] if users else len(messages) - 1
    return QUESTION if message_index == last else CONTEXT


def render_with_spans(tokenizer: Any, question: Any, fmt: PromptFormat, skeletons: dict | None = None, *,
                      where: str | None = None) -> tuple[str, list[tuple[int, int, int]]]:  # fmt: skip
    """Render one prompt; return its text and `(start, end, label)` character spans of each content. `skeletons`:
    the template rendered around placeholders, by the messages' roles, kept across the prompts of one call. `where`
    names the prompt in errors (default: its first words)."""
    if not is_messages(question) and fmt.as_is:
        text = "" if question is None else str(question)  # TRL tokenizes a text prompt as it is
        return text, [(0, len(text), QUESTION)]
    messages = _conversation(question, fmt)
    if not fmt.chat_template and not is_messages(question):
        return _render_plain(messages)

    where = where or f"the prompt {question_text(question)[:60]!r}"
    given = is_messages(question)  # the data's own messages, or those `fmt` builds around a question
    placeholders = [_PLACEHOLDER.format(i) for i in range(len(messages))]
    roles, skeletons = tuple(m["role"] for m in messages), {} if skeletons is None else skeletons
    if roles not in skeletons:  # the roles decide it: the contents are placeholders
        outline = [{"role": role, "content": p} for role, p in zip(roles, placeholders, strict=True)]
        skeletons[roles] = _apply_template(tokenizer, outline, where=where, given=given)
    rendered = _apply_template(tokenizer, messages, where=where, given=given)
    # A template that trims each content (Llama 3's and Gemma's `| trim`) renders it stripped, as TRL then trains it:
    # the spans are where the stripped contents stand, exact as long as the whole text is the template's.
    for contents in ([m["content"] for m in messages], [m["content"].strip() for m in messages]):
        text, spans = _fill(skeletons[roles], messages, contents, placeholders)
        if text == rendered:
            return text, spans
    fix = "use a model whose template keeps message text" if given else "use --no-chat-template or another model"
    raise ConfigError(f"the chat template rewrites message text in {where}, so token labels cannot be trusted; {fix}")


def _fill(skeleton: str, messages: list[dict[str, Any]], contents: list[str],
          placeholders: list[str]) -> tuple[str, list[tuple[int, int, int]]]:  # fmt: skip
    """The skeleton with each placeholder replaced by its content, and the `(start, end, label)` span of each."""
    pieces, spans, cursor = [], [], 0
    for index, (content, placeholder) in enumerate(zip(contents, placeholders, strict=True)):
        at = skeleton.find(placeholder, cursor)
        if at < 0 or skeleton.find(placeholder, at + len(placeholder)) >= 0:
            raise ConfigError(
                f"the chat template does not render message {index} ({messages[index]['role']}) exactly once; "
                "use --no-chat-template or another model"
            )
        pieces.append(skeleton[cursor:at])
        start = sum(len(p) for p in pieces)
        pieces.append(content)
        spans.append((start, start + len(content), _labels_of(index, messages)))
        cursor = at + len(placeholder)
    pieces.append(skeleton[cursor:])
    return "".join(pieces), spans


# How to get past a template that refuses messages, by (the messages are the data's own, the system one is refused).
_TEMPLATE_FIXES = {
    (False, True): "it takes no system message: pass --no-system-prompt",
    (True, True): "it takes no system message: remove the system messages from the prompts (TRL fails on them too)",
    (False, False): "pass --no-chat-template, or use another model",
    (True, False): "use a model whose template takes them (TRL renders them with it too)",
}


def _apply_template(tokenizer: Any, messages: list[dict[str, Any]], *, where: str, given: bool) -> str:
    """The chat template with the generation prompt, as TRL applies it; `given`: the messages are the data's own, not
    the format's. A template refuses what it cannot render by raising (Gemma's on a system message)."""
    from jinja2 import TemplateError

    if not getattr(tokenizer, "chat_template", None):  # messages have no plain form: TRL renders them with one
        raise ConfigError(
            f"{where} is a list of chat messages, which TRL renders with the model's chat template, and this model's "
            "tokenizer has none; pass --model naming a model with a chat template, or score a column of text"
            if given
            else "this model's tokenizer has no chat template; pass --no-chat-template"
        )
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except TemplateError as error:
        said = (str(error).strip().splitlines() or [type(error).__name__])[0]
        refused = f"the messages of {where}" if given else "the prompt format's messages"
        head = f"the model's chat template refuses {refused} ({', '.join(m['role'] for m in messages)}): {said!r}"
        others = [m for m in messages if m["role"] != "system"]
        try:  # the same messages without the system one render: that one is refused
            system = 0 < len(others) < len(messages) and bool(_apply_template(tokenizer, others, where="", given=given))
        except ConfigError:
            system = False
        raise ConfigError(f"{head}; {_TEMPLATE_FIXES[given, system]}") from None


def _render_plain(messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int, int]]]:
    """Plain-text prompt: 'Question:'/'Answer:' labels are template text, excluded from scoring."""
    prefix = {"system": "", "user": "Question: ", "assistant": "Answer: "}
    text, spans = "", []
    for index, message in enumerate(messages):
        text += prefix[message["role"]]
        spans.append((len(text), len(text) + len(message["content"]), _labels_of(index, messages)))
        text += message["content"] + ("\n\n" if index < len(messages) - 1 else "\nAnswer:")
    return text, spans


def label_tokens(offsets: np.ndarray, spans: list[tuple[int, int, int]], text_length: int) -> np.ndarray:
    """Label each token by the content it overlaps most; tokens touching no content are TEMPLATE. `offsets` is the
    `[T, 2]` character offset mapping. A token that straddles a content boundary (say a leading space from the
    template plus the first word of the question) belongs to the content."""
    question_chars = np.zeros(text_length + 1, dtype=np.int64)
    context_chars = np.zeros(text_length + 1, dtype=np.int64)
    for start, end, label in spans:
        target = question_chars if label == QUESTION else context_chars
        target[start + 1 : end + 1] = 1
    question_prefix, context_prefix = np.cumsum(question_chars), np.cumsum(context_chars)
    starts, ends = offsets[:, 0], offsets[:, 1]
    in_question = question_prefix[ends] - question_prefix[starts]
    in_context = context_prefix[ends] - context_prefix[starts]
    labels = np.full(len(offsets), TEMPLATE, dtype=np.int8)
    labels[(in_context > 0) & (in_context > in_question)] = CONTEXT
    labels[(in_question > 0) & (in_question >= in_context)] = QUESTION
    return labels


def truncate(ids: np.ndarray, labels: np.ndarray, max_length: int | None) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """Fit a prompt into `max_length` tokens: drop the earliest context first, then the question's tail. Template
    tokens are kept so the prompt keeps its shape (role headers, generation prompt). Returns `(ids, labels,
    any_truncated, question_truncated)`."""
    excess = len(ids) - max_length if max_length else 0
    if excess <= 0:
        return ids, labels, False, False
    keep = np.ones(len(ids), dtype=bool)
    context_positions = np.flatnonzero(labels == CONTEXT)
    drop_context = context_positions[:excess]
    keep[drop_context] = False
    excess -= len(drop_context)
    question_cut = False
    if excess > 0:
        question_positions = np.flatnonzero(labels == QUESTION)
        drop_question = question_positions[len(question_positions) - min(excess, len(question_positions)) :]
        keep[drop_question] = False
        excess -= len(drop_question)
        question_cut = len(drop_question) > 0
    if excess > 0:
        # Template alone is longer than max_length: keep its head so the row still has a defined prompt.
        template_positions = np.flatnonzero(keep)
        keep[template_positions[len(template_positions) - excess :]] = False
    return ids[keep], labels[keep], True, question_cut


class PromptEncoder:
    """Turns question strings into `EncodedPrompt`s for one tokenizer and prompt format."""

    def __init__(self, tokenizer: Any, fmt: PromptFormat, max_length: int | None) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("scoring needs a fast tokenizer (offset mapping); this model only has a slow one")
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.max_length = max_length
        # A chat template writes its own BOS; plain text needs the tokenizer's (TRL's text prompts get it too).
        self.add_special_tokens = not fmt.chat_template or fmt.as_is

    def encode(self, questions: list[Any], *, first_row: int | None = None) -> list[EncodedPrompt]:
        """Encode `questions`; `first_row`, the dataset row of the first, lets errors name the row of a prompt."""
        texts, spans, empty, skeletons = [], [], [], {}
        for position, question in enumerate(questions):
            where = f"row {first_row + position} (counting from 0)" if first_row is not None else None
            if is_messages(question):
                value = list(question)
                users = [m for m in value if m.get("role") == "user"]
                empty.append(not users or not str(users[-1].get("content") or "").strip())
            else:
                value = "" if question is None else (str(question) if self.fmt.as_is else str(question).strip())
                empty.append(not value.strip())
            text, question_spans = render_with_spans(self.tokenizer, value, self.fmt, skeletons, where=where)
            texts.append(text)
            spans.append(question_spans)
        # TRL renders conversations with the chat template (its own BOS) and tokenizes text with special tokens.
        special = self.add_special_tokens and not any(is_messages(q) for q in questions)
        encoded = self.tokenizer(texts, add_special_tokens=special, return_offsets_mapping=True, verbose=False)
        results = []
        for i, text in enumerate(texts):
            ids = np.asarray(encoded["input_ids"][i], dtype=np.int64)
            offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
            labels = label_tokens(offsets, spans[i], len(text))
            ids, labels, truncated, question_cut = truncate(ids, labels, self.max_length)
            results.append(EncodedPrompt(ids, labels, truncated, _status(labels, empty[i], question_cut)))
        return results


def _status(labels: np.ndarray, empty: bool, question_cut: bool) -> str:
    question_tokens = int((labels == QUESTION).sum())
    if empty:
        return STATUS_EMPTY
    if question_tokens == 0:
        return STATUS_NO_QUESTION_TOKENS
    if question_tokens == 1:
        return STATUS_ONE_QUESTION_TOKEN
    if question_cut:
        return STATUS_QUESTION_TRUNCATED
    return STATUS_OK


def load_few_shot(path: str) -> tuple[dict[str, str], ...]:
    """Read `--few-shot FILE`: a JSON list of {"question": ..., "answer": ...} objects."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"few-shot file {path} does not exist; pass a JSON list of question/answer objects")
    try:
        shots = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"few-shot file {path} is not valid JSON ({error}); fix it or pass --no-few-shot") from None
    if not isinstance(shots, list) or not all(isinstance(s, dict) for s in shots):
        raise InputError(f"few-shot file {path} must hold a JSON list of {{'question', 'answer'}} objects")
    return tuple({"question": s.get("question"), "answer": s.get("answer")} for s in shots)
