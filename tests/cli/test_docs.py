"""docs/cli.md is generated from the Typer app, so it lists every command and flag there is."""

from __future__ import annotations

import os
from pathlib import Path

from gaincurate.cli import docgen

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_the_generators_output():
    """`make docs` (GAINCURATE_WRITE_DOCS=1) rewrites the file first; a plain run only compares."""
    if os.environ.get("GAINCURATE_WRITE_DOCS") == "1":
        DOCS.write_text(docgen.render())
    assert DOCS.read_text() == docgen.render(), "run: make docs"


def test_the_flags_the_old_reference_missed_are_documented():
    text = DOCS.read_text()
    # Section titles are the command and its arguments: `gaincurate merge SCORES_DIR` is found as "merge".
    sections = {}
    for section in text.split("\n## ")[1:]:
        words = [word for word in section.split("`")[1].split() if word.islower()]
        sections[" ".join(words[1:])] = section
    expected = {
        "schedule init": ["--target", "--tau", "--tau-attn", "--forget", "--reference", "--config"],
        "schedule run": ["--feedback-file", "--output-dir", "--initial-checkpoint", "{run_dir}"],
        "rollout": ["--samples", "--reference-size", "--answer-format", "--threads"],
        "difficulty evaluate": ["--holdout", "--against", "--no-fit"],
        "merge": ["--json"],
        "schedule status": ["--plot", "--json"],
        "score": ["--threads", "--shard-rows", "--quiet", "--config"],
    }
    for command, flags in expected.items():
        for flag in flags:
            assert f"`{flag}" in sections[command] or flag in sections[command], (command, flag)
