"""Comments and docstrings state the rule and its reason, not history or where to read elsewhere.

An issue number, a date or a document outside the repository ages the moment it is written, and a newcomer cannot
follow it: the history lives in commit messages and docs/benchmark-history.md. Every comment (read with `tokenize`)
and every string statement (docstrings of modules, classes and functions, and attribute docstrings; read with `ast`)
of `gaincurate/` and `kernels/` is checked, and a failure names each file:line with its text.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("gaincurate", "kernels")
MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December"
    "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)

# What a line must not carry, each with what it means. The issue number must stand alone (`#28`, "(#27)"); an
# upstream reference such as `huggingface/trl#1234`, which a workaround names, is preceded by a name and passes,
# as do hex colours of six digits.
FORBIDDEN = {
    "an issue number": re.compile(r"(?<![\w/&#])#[1-9]\d{0,4}\b|\bissues?\s+#?\d+", re.IGNORECASE),
    "a date": re.compile(rf"\b20\d\d-[01]\d(?:-[0-3]\d)?\b|\b(?:{MONTHS})\.?\s+(?:[0-3]?\d,?\s+)?20\d\d\b"),
    "a document outside the repository": re.compile(r"\bDESIGN\b|\bSTYLE\.md\b|\.\./shared\b"),
}


def _findings(text: str) -> list[str]:
    return [what for what, pattern in FORBIDDEN.items() if pattern.search(text)]


def _comments(source: str) -> list[tuple[int, str]]:
    """Each comment's line and its text after the leading `#`."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(token.start[0], token.string[1:]) for token in tokens if token.type == tokenize.COMMENT]


def _docstrings(source: str) -> list[tuple[int, str]]:
    """Each line of every string statement (a docstring wherever it stands), with its line number."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            lines += [(node.lineno + offset, line) for offset, line in enumerate(node.value.value.splitlines())]
    return lines


def _offences(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    where = path.relative_to(ROOT)
    return [
        f"{where}:{line}: {kind} carries {', '.join(found)}: {text.strip()}"
        for kind, read in (("comment", _comments), ("docstring", _docstrings))
        for line, text in read(source)
        if (found := _findings(text))
    ]


def test_no_history_or_outside_document_in_comments_and_docstrings():
    offences = [
        offence for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py")) for offence in _offences(path)
    ]
    assert not offences, (
        "State the rule and its reason instead (history: commit messages, docs/benchmark-history.md):\n"
        + "\n".join(offences)
    )


# Pages a reader opens: our own issue numbers mean nothing to them. The benchmark history is the record of how each
# result came about, and keeps them.
READER_PAGES = ("README.md", "docs/*.md")
HISTORY_PAGE = "docs/benchmark-history.md"


def test_no_internal_issue_number_in_the_readme_and_the_docs():
    pages = [path for pattern in READER_PAGES for path in sorted(ROOT.glob(pattern)) if path != ROOT / HISTORY_PAGE]
    assert len(pages) > 10  # the glob found the docs
    number = FORBIDDEN["an issue number"]
    found = [
        f"{path.relative_to(ROOT)}:{index}: {line.strip()}"
        for path in pages
        for index, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if number.search(line)
    ]
    assert not found, "Say what the result is, not which issue asked for it:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "text",
    [
        " TRL's prompt column is scored as it is since #28",
        " The GAIN-RL ablation (#26): the centre",
        " noqa: F401  (its home since issue 50)",
        " the probe verdict (issue 47)",
        " as issues 56 and 59 found",
        " declared 2026-11-25 before any of its seeds ran",
        " measured in Nov 2026",
        " measured on November 3, 2026",
        " (measurements age, DESIGN §6e)",
        " see ../shared/STYLE.md",
        " STYLE.md point 14",
    ],
)
def test_the_patterns_catch_history(text):
    assert _findings(text)


@pytest.mark.parametrize(
    "text",
    [
        " noqa: F401",
        " fmt: skip",
        " type: ignore[arg-type]",
        " colour #1f77b4 and #000000",
        " waits on huggingface/trl#1234; remove it once that is released",
        " 1. the first step, 2. the second",
        " seeds 100-111 and 2000-2011; Kaplan et al. 2020",
        " Decimals 2048 wide, Marches 2026",
        " the probe's design, docs/kernel.md's kernel design",
        " 1,024 tokens at 0.5 each, lines 2026-2030 of docs/benchmark-history.md",
        " Triton issues the loads of the next tiles",
        " cp.async into shared memory",
    ],
)
def test_the_patterns_pass_rules(text):
    assert not _findings(text)
