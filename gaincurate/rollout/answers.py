"""Answer checking for rollouts: a completion's final answer against the gold answer.

The comparison is `math-verify`'s (`parse` then `verify`), so "3/4", "\\frac{3}{4}" and "0.75" agree and
"x = 5" matches "5". The gold answer (text, or a number, written without an exponent) is wrapped as `$...$`
unless it already carries LaTeX delimiters (an unescaped `$`, `\\[` or `\\(`: `\\$18.90` is a price) or a box,
which is the form math-verify extracts from. Which part of the completion is the answer depends on the format:

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

import functools
import re
import threading
from decimal import Decimal
from typing import Any

from gaincurate.errors import ConfigError

# A box's opening brace (`\boxed{`, `\boxed {`, `\fbox{`) or any other brace: one left-to-right pass pairs them,
# so a completion cut off in a `\boxed{\boxed{...` loop costs linear time, not a rescan from every open box.
_BRACE = re.compile(r"\\(?:boxed|fbox) *\{|[{}]")


def last_boxed(text: str) -> str | None:
    """Content of the last complete `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces balanced; None if absent."""
    open_braces: list[tuple[int, int] | None] = []  # a box's (start, content start); None for a plain brace
    last = None  # the complete box that starts last: (start, content start, content end)
    for brace in _BRACE.finditer(text):
        if brace.group() == "}":
            box = open_braces.pop() if open_braces else None
            if box is not None and (last is None or box[0] > last[0]):
                last = (*box, brace.start())
        else:
            open_braces.append(None if brace.group() == "{" else (brace.start(), brace.end()))
    return None if last is None else text[last[1] : last[2]].strip()


ANSWER_FORMATS = ("boxed", "any")

# A `$`, `\[` or `\(` after no backslash (or an even run of them) opens math; `\$` is a dollar sign, as in MATH's
# gold `\$18.90`, and such a gold is wrapped like any other.
_MATH_DELIMITER = re.compile(r"(?<!\\)(?:\\\\)*(?:\$|\\\[|\\\()")


def gold_text(answer: Any) -> str | None:
    """A gold answer (text or a number) as text; a float without an exponent, as math-verify reads no `1e-05`."""
    if answer is None:
        return None
    return format(Decimal(str(answer)), "f") if isinstance(answer, float) else str(answer)


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

    def __call__(self, completion: str, answer: Any) -> bool:
        answer = gold_text(answer)
        if answer is None or not answer.strip():
            return False
        # math-verify times out with `signal.alarm`, which raises off the main thread (verl scores rewards in worker
        # threads): there it runs untimed, as TRL's accuracy_reward does.
        untimed = threading.current_thread() is not threading.main_thread()
        parse = functools.partial(self._parse, parsing_timeout=None) if untimed else self._parse
        verify = functools.partial(self._verify, timeout_seconds=None) if untimed else self._verify
        if self.answer_format == "boxed":
            content = last_boxed(completion)
            if not content:
                return False
            completion = f"\\boxed{{{content}}}"
        predicted = parse(completion)
        if answer not in self._gold:
            self._gold[answer] = parse(_gold_for_parsing(answer))
        gold = self._gold[answer]
        return bool(gold) and bool(predicted) and bool(verify(gold, predicted))


def check_answer(completion: str, answer: Any, answer_format: str = "boxed") -> bool:
    """One-off check (tests, scripts); loops should hold one `AnswerChecker`."""
    return AnswerChecker(answer_format)(completion, answer)
