"""Summarise a scores directory: extremes, distribution, length confound, flags and speed.

`summarize(dir)` returns plain data (what `gaincurate show --json` prints); `render(console, summary)`
draws it with rich for `gaincurate show DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from gaincurate.errors import InputError
from gaincurate.metrics import spearman
from gaincurate.prompts import question_text
from gaincurate.shards import SCORED_FIELDS, numeric_input_column, ranking_scores, read_manifest, read_scores

# Above this |Spearman(ranking score, question tokens)| `show` says the ranking mostly follows length: at
# 0.5 two prompts picked at random are ordered by score as by length about two times in three (Kendall's tau 0.35 for
# normal-like data), so the top and the bottom of the ranking lean to the shortest and the longest questions.
MOSTLY_LENGTH = 0.5
TRUNCATED_SHOWN = 5  # truncated rows named by gc_id; the rest are counted
NARROW = 70  # columns: below this the top and bottom tables keep id, score and the prompt


def summarize(scores_dir: Path, *, against: list[str] | None = None, top: int = 5, bins: int = 12) -> dict[str, Any]:
    if read_manifest(scores_dir).get("unscored") is True:
        raise InputError(f"{scores_dir} holds prompts no model has scored (`schedule init --prompts`): nothing to "
                         "show; score them with `gaincurate score` to see a ranking")  # fmt: skip
    table = read_scores(scores_dir)  # first: an unfinished run is finished or merged, never called damaged
    manifest = read_manifest(scores_dir, needs=SCORED_FIELDS)
    prompt_column = manifest["config"]["prompt_column"]
    rank_score = ranking_scores(table, manifest)
    tokens = table.column("gc_question_tokens").to_numpy(zero_copy_only=False).astype(np.float64)
    finite = np.isfinite(rank_score)

    correlations = {"question_tokens": spearman(rank_score, tokens)}
    for column in against or []:
        correlations[column] = spearman(rank_score, numeric_input_column(table, column))

    order = np.flatnonzero(finite)[np.argsort(-rank_score[finite], kind="stable")]
    shown = np.concatenate([order[:top], order[::-1][:top]])
    # Only the rows shown are read as Python values: the prompts of a million rows would be 1 GB of strings.
    texts = dict(zip(shown.tolist(), table.column(prompt_column).take(shown).to_pylist(), strict=True))

    def row(index: int) -> dict[str, Any]:
        return {
            "gc_id": int(table.column("gc_id")[index].as_py()),
            "score": float(rank_score[index]),
            "intra": _float(table.column("gc_intra")[index].as_py()),
            "inter": _float(table.column("gc_inter")[index].as_py()),
            "question_tokens": int(tokens[index]),
            "text": question_text(texts[index]),  # a conversation shows its last user message, not the dicts
        }

    counts, edges = np.histogram(rank_score[finite], bins=bins) if finite.any() else (np.array([]), np.array([]))
    truncated = pc.fill_null(table.column("gc_truncated"), False)
    truncated_ids = pc.filter(table.column("gc_id"), truncated).slice(0, TRUNCATED_SHOWN).to_pylist()
    return {
        "dir": str(scores_dir),
        "rows": int(len(table)),
        "columns": table.column_names,
        "scored": int(finite.sum()),
        "model": manifest["model"]["id"],
        "site": f"{manifest['site']} of layer {manifest['layer']}",
        "dtype": manifest["dtype"],
        "device": manifest["device"],
        "backend": manifest["backend"],
        "debias": manifest.get("debias"),
        "score_mean": float(rank_score[finite].mean()) if finite.any() else None,
        "score_std": float(rank_score[finite].std()) if finite.any() else None,
        "spearman": correlations,
        "mostly_length": bool(abs(correlations["question_tokens"]) > MOSTLY_LENGTH),  # NaN compares false
        "top": [row(i) for i in order[:top]],
        "bottom": [row(i) for i in order[::-1][:top]],
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "flags": manifest["diagnostics"]["status_counts"],
        "truncated_rows": manifest["diagnostics"]["truncated_rows"],
        "truncated_gc_ids": truncated_ids,  # the first TRUNCATED_SHOWN, in gc_id order
        "timings": manifest.get("timings", {}),
    }


def _float(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def render(console: Any, summary: dict[str, Any]) -> None:
    """Draw `summary` on a `Stdout`'s console, which prints strings as they are (no markup): labels are `Text`."""
    from rich.table import Table
    from rich.text import Text

    console.print(
        Text(summary["dir"], style="bold"),
        f" {summary['rows']} rows ({summary['scored']} scored)  model {summary['model']}  "
        f"site {summary['site']}  {summary['dtype']} on {summary['device']} ({summary['backend']})",
    )
    if summary.get("default_reads"):
        console.print(summary["default_reads"])
    if summary["debias"]:
        console.print("ranking by the length-debiased score (residual of score ~ log question tokens)")
    if summary["mostly_length"]:
        console.print(length_sentence(summary["spearman"]["question_tokens"], debiased=bool(summary["debias"])))
    # The score ranking only: which prompts a run trains, and when, is its strategy's (`schedule status` says how).
    titles = ("Highest concentration (top of the score ranking)", "Lowest concentration (bottom of the ranking)")
    for title, rows in zip(titles, (summary["top"], summary["bottom"]), strict=True):
        # Numbers keep their width; the prompt column takes what is left and is cut with an ellipsis. Below NARROW
        # columns intra, inter and q tok make way for the prompt, and the caption says so.
        kept = 2 if console.width < NARROW else 5
        caption = "intra, inter, q tok: on a wider terminal or --json" if kept < 5 else None
        table = Table(title=title, title_justify="left", expand=True, caption=caption, caption_justify="left")
        for name, width in (("id", 5), ("score", 7), ("intra", 7), ("inter", 7), ("q tok", 5))[:kept]:
            table.add_column(name, justify="right", no_wrap=True, min_width=width)
        table.add_column("prompt", overflow="ellipsis", no_wrap=True, ratio=1)
        for row in rows:
            numbers = (str(row["gc_id"]), f"{row['score']:.4f}", _fmt(row["intra"]), _fmt(row["inter"]),
                       str(row["question_tokens"]))  # fmt: skip
            table.add_row(*numbers[:kept], " ".join(row["text"].split()))
        console.print(table)

    counts, edges = summary["histogram"]["counts"], summary["histogram"]["edges"]
    if counts:
        console.print(Text("Score distribution", style="bold"))
        widest = max(counts) or 1
        # 40 cells, fewer on a narrow terminal, so that each bin keeps to one line beside its edges and count.
        cells = max(5, min(40, console.width - 27 - len(str(widest))))
        bar, edge = ("#", "|") if console.options.ascii_only else ("█", "│")  # a stdout that cannot encode them
        for count, low, high in zip(counts, edges[:-1], edges[1:], strict=True):
            drawn = bar * round(cells * count / widest)
            console.print(f"  {low:8.4f} .. {high:8.4f} {edge}{drawn:<{cells}}{edge} {count}")

    console.print(Text("Spearman correlation of the ranking score with", style="bold"))
    for name, value in summary["spearman"].items():
        console.print(f"  {name:<20} {rho_words(value, summary['scored'])}")
    flagged = {k: v for k, v in summary["flags"].items() if k != "ok"}
    console.print(
        Text("Flags", style="bold"),
        f"{', '.join(f'{k}: {v}' for k, v in flagged.items()) or 'none'}; "
        f"truncated rows: {truncated_words(summary['truncated_rows'], summary['truncated_gc_ids'])}",
    )
    timings = summary["timings"]
    if timings:
        rate = timings.get("rows_per_second")
        tokens = timings.get("tokens_per_second")
        console.print(
            Text("Speed", style="bold"),
            f"model load {timings.get('model_load_seconds', 0):.1f}s, scoring "
            f"{timings.get('score_seconds', 0):.1f}s"
            + (f", {rate:.1f} rows/s" if rate else "")
            + (f", {tokens:,.0f} tokens/s in the forward" if tokens else ""),
        )


def length_sentence(rho: float, *, debiased: bool) -> str:
    """`show`'s sentence for a ranking that mostly follows length, and what `--debias length` does."""
    strength = f"(Spearman with question tokens {rho:+.3f}, beyond ±{MOSTLY_LENGTH})"
    if debiased:
        return f"The length-debiased ranking is still mostly question length {strength}: a log-length fit misses it."
    return (
        f"The ranking is mostly question length {strength}: the same `gaincurate score` command with `--debias length` "
        "re-ranks these scores (none is scored again) by how far each lies above what its question length predicts, "
        "the residual of a least-squares fit on log question tokens."
    )


def rho_words(rho: float | None, scored: int) -> str:
    """A Spearman correlation, or why there is none (`--json` holds null)."""
    if rho is not None and np.isfinite(rho):
        return f"{rho:+.3f}"
    return "undefined: fewer than 3 scored prompts" if scored < 3 else "undefined: one side is constant or missing"


def truncated_words(count: int, gc_ids: list[int]) -> str:
    """`0`, or the count with the first truncated rows' gc_ids and how many more there are."""
    if not count:
        return "0"
    more = f" and {count - len(gc_ids)} more" if count > len(gc_ids) else ""
    return f"{count} (cut to fit --max-length: gc_id {', '.join(map(str, gc_ids))}{more})"


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.4f}"
