"""Answer checking for rollouts: a completion's final answer against the gold answer.

The comparison is `math-verify`'s (`parse` then `verify`), so "3/4", "\\frac{3}{4}" and "0.75" agree and
"x = 5" matches "5". The gold answer is wrapped as `$...$` unless it already carries LaTeX delimiters
(an unescaped `$`: `\\$18.90` is a price) or a box, which is the form math-verify extracts from. Which part
of the completion is the answer depends on the format:

* `boxed` (default): the last complete `\\boxed{...}`; a completion without one is wrong. This is what
  GRPO reward functions usually check, so rollout pass rates match the trainer's rewards.
* `any`: math-verify's own extraction from the whole completion: a box, else an anchored "the final
  answer is ...", else the last expression. For small models that seldom box their answer (the
  embedded SmolLM2-135M often ends with "so half of 4 is 2."), where `boxed` would measure formatting
  rather than solving.

    checker = AnswerChecker()
    checker("... so the answer is \\boxed{16}.", "16")    # True
"""

from __future__ import annotations

import re
from typing import Any

from gaincurate.errors import ConfigError


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces balanced; None if absent."""
    best = None
    for command in ("\\boxed", "\\fbox"):
        at = text.rfind(command)
        while at >= 0:
            content = _braced_after(text, at + len(command))
            if content is not None:
                if best is None or at > best[0]:
                    best = (at, content)
                break
            at = text.rfind(command, 0, at)
    return None if best is None else best[1].strip()


def _braced_after(text: str, start: int) -> str | None:
    index = start
    while index < len(text) and text[index] == " ":
        index += 1
    if index >= len(text) or text[index] != "{":
        return None
    depth = 0
    for end in range(index, len(text)):
        if text[end] == "{":
            depth += 1
        elif text[end] == "}":
            depth -= 1
            if depth == 0:
                return text[index + 1 : end]
    return None  # unbalanced: the completion was cut off inside the box


ANSWER_FORMATS = ("boxed", "any")

# A `$` after no backslash (or an even run of them) opens or closes math; `\$` is a dollar sign, as in MATH's
# gold `\$18.90`, and such a gold is wrapped like any other.
_MATH_DELIMITER = re.compile(r"(?<!\\)(?:\\\\)*\$")


def _gold_for_parsing(answer: str) -> str:
    """`answer` as math-verify extracts it: as written if it has a LaTeX delimiter or a box, else wrapped in `$...$`."""
    text = answer.strip()
    return text if _MATH_DELIMITER.search(text) or "\\boxed" in text else f"${text}$"


class AnswerChecker:
    """Checks completions against gold answers with math-verify; gold answers are parsed once."""

    def __init__(self, answer_format: str = "boxed") -> None:
        if answer_format not in ANSWER_FORMATS:
            raise ConfigError(f"--answer-format must be one of {', '.join(ANSWER_FORMATS)}; got {answer_format!r}")
        self.answer_format = answer_format
        try:
            from math_verify import parse, verify
        except ImportError:
            raise ConfigError("answer checking needs math-verify; run `pip install 'gaincurate[rollout]'`") from None
        self._parse, self._verify = parse, verify
        self._gold: dict[str, Any] = {}

    def gold(self, answer: str) -> Any:
        if answer not in self._gold:
            self._gold[answer] = self._parse(_gold_for_parsing(answer))
        return self._gold[answer]

    def __call__(self, completion: str, answer: str | None) -> bool:
        if answer is None or not str(answer).strip():
            return False
        if self.answer_format == "boxed":
            content = last_boxed(completion)
            if not content:
                return False
            predicted = self._parse(f"\\boxed{{{content}}}")
        else:
            predicted = self._parse(completion)
        gold = self.gold(str(answer))
        return bool(gold) and bool(predicted) and bool(self._verify(gold, predicted))


def check_answer(completion: str, answer: str | None, answer_format: str = "boxed") -> bool:
    """One-off check (tests, scripts); loops should hold one `AnswerChecker`."""
    return AnswerChecker(answer_format)(completion, answer)
