"""`gaincurate show`'s first screen says what the ranking is: mostly question length (and what `--debias length` would
change) when |Spearman(score, question tokens)| is above `MOSTLY_LENGTH`, and which rows were truncated, by gc_id.

The scores are made up (`fake_scores`), so each case's correlation is exact; `show` runs through the console script.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from fake_scores import score_columns, write_scores_dir

from gaincurate.fileio import atomic_write_json, read_json
from gaincurate.metrics import spearman
from gaincurate.shards import MANIFEST
from gaincurate.show import MOSTLY_LENGTH, TRUNCATED_SHOWN

ROWS = 20
TOKENS = 5 + 3 * np.arange(ROWS)  # question tokens rise with gc_id


def write_scores(
    folder: Path, scores: np.ndarray, truncated: set[int] | None = None, *, embed: bool = False, prompts=None
) -> Path:
    """ROWS made-up scored rows, with the manifest fields `show` reads (as `gaincurate score` writes them); `embed`:
    with question embeddings (`score --embed`), else as `score --no-embed` leaves them."""
    prompts = prompts or [f"question {i}" for i in range(ROWS)]
    inputs = pa.table({"problem": prompts, "answer": [str(i) for i in range(ROWS)]})
    columns = score_columns(np.asarray(scores, dtype=np.float64), TOKENS)
    truncated = truncated or set()
    columns["gc_truncated"] = pa.array([i in truncated for i in range(ROWS)])
    if embed:
        embeddings = np.random.default_rng(0).normal(size=(ROWS, 8)).astype(np.float16)
        columns["gc_embedding"] = pa.array(list(embeddings), pa.list_(pa.float16()))
    write_scores_dir(folder, inputs, columns, dataset={"name": "toy", "fingerprint": "toy-20"})
    manifest = read_json(folder / MANIFEST) | {
        "model": {"id": "toy-model"}, "site": "mlp-input", "layer": 2, "dtype": "float32", "device": "cpu",
        "backend": "torch", "diagnostics": {"status_counts": {"ok": ROWS}, "truncated_rows": len(truncated)},
    }  # fmt: skip
    atomic_write_json(folder / MANIFEST, manifest)
    return folder


def words(text: str) -> str:
    """The output as one line: rich wraps a long sentence at the terminal's width."""
    return " ".join(text.split())


def test_a_ranking_that_is_mostly_length_is_said_first_with_what_debias_length_changes(gaincurate, tmp_path):
    scores = write_scores(tmp_path / "scores", 1.0 / TOKENS)  # shorter questions score higher: Spearman -1
    shown = gaincurate("show", scores)
    assert shown.returncode == 0, shown.stderr
    text = words(shown.stdout)
    sentence = "The ranking is mostly question length (Spearman with question tokens -1.000, beyond ±0.5):"
    assert sentence in text, shown.stdout
    # What `--debias length` does, as `metrics.apply_debias` does it, and how to get it.
    assert "the same `gaincurate score` command with `--debias length` re-ranks these scores (none is scored " in text
    assert "the residual of a least-squares fit on log question tokens." in text
    assert text.index(sentence) < text.index("Highest concentration"), "not on the first screen"
    assert json.loads(gaincurate("show", scores, "--json").stdout)["mostly_length"] is True


def test_a_ranking_that_is_not_mostly_length_says_nothing_of_it(gaincurate, tmp_path):
    scores = (np.arange(ROWS) * 7 % ROWS) / ROWS  # a shuffle of the lengths' order
    assert abs(spearman(scores, TOKENS)) < MOSTLY_LENGTH
    folder = write_scores(tmp_path / "scores", scores)
    shown = gaincurate("show", folder)
    assert shown.returncode == 0, shown.stderr
    assert "mostly question length" not in words(shown.stdout) and "--debias" not in shown.stdout
    assert json.loads(gaincurate("show", folder, "--json").stdout)["mostly_length"] is False


def test_truncated_rows_are_named_by_gc_id_a_handful_then_counted(gaincurate, tmp_path):
    truncated = {1, 3, 5, 7, 9, 11, 13, 15}
    folder = write_scores(tmp_path / "scores", (np.arange(ROWS) * 7 % ROWS) / ROWS, truncated)
    shown = gaincurate("show", folder)
    named = sorted(truncated)[:TRUNCATED_SHOWN]
    listed = ", ".join(map(str, named))
    line = f"truncated rows: 8 (cut to fit --max-length: gc_id {listed} and {8 - TRUNCATED_SHOWN} more)"
    assert line in words(shown.stdout), shown.stdout
    assert json.loads(gaincurate("show", folder, "--json").stdout)["truncated_gc_ids"] == named

    none = write_scores(tmp_path / "untruncated", (np.arange(ROWS) * 7 % ROWS) / ROWS)
    assert "truncated rows: 0" in words(gaincurate("show", none).stdout)


def test_the_first_screen_says_which_signals_the_default_strategy_reads(gaincurate, tmp_path):
    scores = write_scores(tmp_path / "scores", np.linspace(0.0, 1.0, ROWS), embed=True)
    manifest = read_json(scores / MANIFEST)
    for answers, likelihood in (({"present": True, "missing": 0}, True), ({"present": False}, False)):
        atomic_write_json(scores / MANIFEST, manifest | {"answers": answers})
        shown = gaincurate("show", scores)
        assert shown.returncode == 0, shown.stderr
        text = words(shown.stdout)
        assert "the default strategy (probe) does not rank by this score: it fits pass rates on the question" in text
        assert ("likelihood of each reference answer" in text) == likelihood
        assert json.loads(gaincurate("show", scores, "--json").stdout)["default_reads"] in text


def test_scores_without_embeddings_say_the_default_strategy_cannot_run_with_inits_hint(gaincurate, tmp_path):
    scores = write_scores(tmp_path / "scores", np.linspace(0.0, 1.0, ROWS))  # as `score --no-embed` leaves them
    manifest = read_json(scores / MANIFEST)
    for answers in ({"present": True, "missing": 0}, {"present": False}):
        atomic_write_json(scores / MANIFEST, manifest | {"answers": answers})
        refused = gaincurate("schedule", "init", "--scores", scores, "--run", tmp_path / "run", "--subset-size", 4)
        assert refused.returncode != 0 and "has no gc_embedding column; " in refused.stderr, refused.stderr
        hint = words(refused.stderr).split("has no gc_embedding column; ", 1)[1]
        text = words(gaincurate("show", scores).stdout)
        assert f"the default strategy (probe) cannot run on these scores (no gc_embedding column): {hint}" in text
        assert "fits pass rates" not in text
        assert json.loads(gaincurate("show", scores, "--json").stdout)["default_reads"] in text


# Prompts as MATH writes them, and worse: rich markup would drop `[x]`, eat the backslash of `\[` and fail on `[/]`.
BRACKETED = ["Let [x] denote the floor of x.", "Simplify \\[x^2 \\cdot x^3\\].", "In [/] there is nothing.",
             "What is [bold]2+2[/bold]?", "The ratio 1:100: holds."]  # fmt: skip


def test_prompts_and_paths_are_shown_as_they_are(gaincurate, tmp_path):
    prompts = BRACKETED + [f"question {i}" for i in range(len(BRACKETED), ROWS)]
    write_scores(tmp_path / "scores[v2]", -np.arange(ROWS, dtype=np.float64), prompts=prompts)  # row 0 on top
    shown = gaincurate("show", "scores[v2]")
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert shown.stdout.startswith("scores[v2]  20 rows")
    assert all(prompt in shown.stdout for prompt in BRACKETED), shown.stdout


def test_a_narrow_terminal_keeps_the_prompt_and_a_bin_a_line(gaincurate, tmp_path):
    """Below 70 columns the top and bottom tables keep id, score and the prompt, and say what they left out; the
    histogram's bars shrink so that each bin keeps to one line."""
    write_scores(tmp_path / "scores", (np.arange(ROWS) * 7 % ROWS) / ROWS)
    for columns in (40, 60, 100):
        shown = gaincurate("show", "scores", "--top", "1", env={"COLUMNS": str(columns)})
        lines = shown.stdout.splitlines()
        assert shown.returncode == 0 and max(map(len, lines)) <= columns, shown.stdout
        header = next(line for line in lines if "┃" in line and "id" in line)
        assert "prompt" in header and ("q tok" in header) == (columns >= 70), shown.stdout
        assert ("intra, inter, q tok: on a wider terminal or --json" in words(shown.stdout)) == (columns < 70)
        start = lines.index("Score distribution")
        assert all(" .. " in line and line.endswith(tuple("0123456789")) for line in lines[start + 1 : start + 13])


def test_an_unfinished_run_gets_the_step_that_finishes_it_not_an_overwrite(gaincurate, error_line, tmp_path):
    """An interrupted run, or an array job's part, lacks the diagnostics a complete manifest has: it is unfinished,
    not damaged, and `--overwrite` would throw its finished shards away."""
    folder = write_scores(tmp_path / "scores", np.linspace(0.0, 1.0, ROWS))
    manifest = read_json(folder / MANIFEST)
    atomic_write_json(folder / MANIFEST, {**manifest, "complete": False, "diagnostics": {}})
    line = error_line(gaincurate("show", folder))
    said = "is not complete; re-run the same `gaincurate score` command to finish it"
    assert line == f"gaincurate: error: {folder} {said}"
    (folder / "part-00000-of-00002.json").write_text("{}")
    line = error_line(gaincurate("show", folder))
    assert line.endswith("is not complete; finish every --shard-index part, then `gaincurate merge` it"), line


def test_an_undefined_correlation_is_said_in_words(gaincurate, tmp_path):
    """Spearman needs 3 scored prompts and two sides that vary; `--json` holds null for it."""
    equal = write_scores(tmp_path / "equal", np.full(ROWS, 0.25))
    shown = gaincurate("show", equal)
    assert shown.returncode == 0 and "nan" not in shown.stdout.split("Spearman correlation")[1], shown.stdout
    assert "question_tokens      undefined: one side is constant or missing" in shown.stdout
    few = write_scores(tmp_path / "few", np.where(np.arange(ROWS) < 2, 0.5, np.nan))
    assert "question_tokens      undefined: fewer than 3 scored prompts" in gaincurate("show", few).stdout


def test_a_stdout_that_cannot_encode_the_glyphs_still_gets_the_whole_summary(gaincurate, tmp_path):
    write_scores(tmp_path / "scores", (np.arange(ROWS) * 7 % ROWS) / ROWS, prompts=["Ünïcode…"] * ROWS)
    shown = gaincurate("show", "scores", env={"PYTHONIOENCODING": "ascii"})
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert "Score distribution" in shown.stdout and "|#" in shown.stdout and shown.stdout.isascii()
    assert shown.stdout.rstrip().splitlines()[-1].startswith("Flags none; truncated rows: 0")
