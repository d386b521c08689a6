"""The shell and Python blocks of the pages a new user runs, and the mark above each that says how it is checked.

The convention (issue 49; README.md, "Development"): the line right above a fenced `bash` or `python` block of
README.md, docs/quickstart.md, docs/trl.md or docs/verl.md may hold one HTML comment, invisible on the rendered page:

    <!-- not run: gpu: REASON -->        the block needs a GPU (REASON says what for); no test runs it
    <!-- not run: download: REASON -->   it needs what the tests cannot have offline: a Hub model, a package, your data
    <!-- run: reduced: WHAT -->          a test runs it with WHAT changed (the tests' tiny model, fewer epochs)
    <!-- run: NOTE -->                   a test runs it as written; NOTE says what it relies on

A block without a comment runs as written. Every block not marked `not run` is run by exactly one test, which takes
its text from here (`block(page, phrase)`), so the page and the test cannot drift apart: `RUN_BY` names that test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/quickstart.md", "docs/trl.md", "docs/verl.md")
LANGUAGES = ("bash", "sh", "shell", "console", "python")
NOT_RUN = ("gpu", "download")
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_MARK = re.compile(r"^<!-- (.+?) -->$")

QUICKSTART_TEST = "tests/integrations/test_quickstart.py"
DOCS_TEST = "tests/test_docs_run.py"
# Per page, a phrase found in exactly one of its blocks, and the test that runs that block.
RUN_BY: dict[str, dict[str, str]] = {
    "docs/quickstart.md": {
        "gaincurate bench curriculum --demo": DOCS_TEST,
        "math_train.json": DOCS_TEST,
        "gaincurate score --out scores": QUICKSTART_TEST,
        "datasets.load_dataset": QUICKSTART_TEST,
        "--run run --subset-size 64": QUICKSTART_TEST,
        "--feedback rewards.jsonl": QUICKSTART_TEST,
        "--run run-trl": QUICKSTART_TEST,
    },
    "docs/trl.md": {
        "gaincurate score my.jsonl": DOCS_TEST,
        "ScheduleConfig(subset_size=64)": DOCS_TEST,
        "load_embedded()": DOCS_TEST,
        'strategy="gain"': DOCS_TEST,
        "trl-inprocess --workdir": DOCS_TEST,
        "gaincurate score data.jsonl": DOCS_TEST,
    },
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, from 1
    language: str
    text: str
    mark: str | None  # the comment right above, without `<!-- ` and ` -->`

    @property
    def not_run(self) -> tuple[str, str] | None:
        """(kind, reason) of a `not run` mark; None for a block a test runs."""
        if self.mark is None or not self.mark.startswith("not run:"):
            return None
        kind, _, reason = self.mark.removeprefix("not run:").strip().partition(":")
        return kind.strip(), reason.strip()

    @property
    def reduced(self) -> bool:
        return self.mark is not None and self.mark.startswith("run: reduced:")


def blocks(page: str) -> list[Block]:
    """The page's fenced shell and Python blocks, in order, with their marks."""
    text = (ROOT / page).read_text()
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) not in LANGUAGES:
            continue
        line = text.count("\n", 0, match.start()) + 1
        above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.match(above)
        found.append(Block(page, line, match.group(1), match.group(2), mark.group(1) if mark else None))
    return found


def block(page: str, phrase: str) -> Block:
    """The one block of `page` that holds `phrase` (a test's handle on the block it runs)."""
    matching = [b for b in blocks(page) if phrase in b.text]
    assert len(matching) == 1, f"{page}: {len(matching)} blocks hold {phrase!r}"
    return matching[0]
