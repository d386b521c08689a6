"""What each arm trained on: how often each prompt was drawn, and from which family, over a pair's trained epochs.

A pair's run directory (OUT/runs/NAME, kept by the bench) holds every epoch's draw (`epoch-NNNN.parquet`) and, for
the epochs that trained, their feedback (`feedback-NNNN.jsonl`); the last draw is never trained. The oracle arms keep
no run directory: their pair record lists each epoch's chosen gc_ids (`oracle_epochs`), and their families come from
the bench's scored pool (OUT/assets/scores). `draw_lines` condenses each pair into one line of OUT/draws.jsonl: its
prompts with how often each was drawn, and its draws per `digits` family where the task has one (arith).
`arm_draws` reads those lines back, per arm over the seeds:

* distinct prompts trained;
* the share of draws that went to the TOP_PROMPTS most drawn prompts (a uniform draw spreads them thin; a strategy
  that keeps returning to the same prompts concentrates them);
* the share of draws per family.

`--report` prints them from OUT/draws.jsonl, so a published folder re-derives them without the run directories.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from gaincurate.numerics import recorded

TOP_PROMPTS = 32  # half an epoch of the bundled arith benches (subset_size 64)


def draw_lines(out: Path, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per pair whose run directory is kept: its draws over the epochs it trained."""
    import pyarrow.parquet as pq

    lines = []
    family_of: dict[int, str] | None = None
    for pair in pairs:
        run = Path(out) / "runs" / f"{pair['strategy']}-seed{pair['seed']}"
        drawn: Counter[int] = Counter()
        families: Counter[str] = Counter()
        for feedback in sorted(run.glob("feedback-*.jsonl")):
            epoch = run / feedback.name.replace("feedback-", "epoch-").replace(".jsonl", ".parquet")
            if not epoch.is_file():
                continue
            table = pq.read_table(epoch)
            drawn.update(int(g) for g in table.column("gc_id").to_pylist())
            if "digits" in table.column_names:
                families.update(str(d) for d in table.column("digits").to_pylist())
        trained = {line["epoch"] for line in pair.get("epochs") or ()}
        chosen = [e["chosen"] for e in pair.get("oracle_epochs") or () if "chosen" in e and e["epoch"] in trained]
        if chosen and not drawn:
            family_of = _families(Path(out)) if family_of is None else family_of
            drawn.update(g for epoch in chosen for g in epoch)
            families.update(family_of[g] for epoch in chosen for g in epoch if g in family_of)
        if drawn:
            lines.append({"strategy": pair["strategy"], "seed": pair["seed"],
                          "drawn": sorted([g, n] for g, n in drawn.items()),
                          "digits": dict(sorted(families.items()))})  # fmt: skip
    return lines


def _families(out: Path) -> dict[int, str]:
    """{gc_id: digits family} of the bench's scored pool (empty where the task has no families)."""
    from gaincurate.lab.benchmarks.curriculum.assets import ASSETS
    from gaincurate.shards import read_scores

    table = read_scores(out / ASSETS / "scores")
    if "digits" not in table.column_names:
        return {}
    return dict(zip(table.column("gc_id").to_pylist(), map(str, table.column("digits").to_pylist()), strict=True))


def arm_draws(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm, means over its seeds: distinct prompts trained, the share of draws on the TOP_PROMPTS most drawn,
    and the share of draws per digits family."""
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_arm.setdefault(line["strategy"], []).append(line)
    arms = {}
    for arm, seeds in by_arm.items():
        distinct, top, families = [], [], Counter()
        for line in seeds:
            counts = sorted((n for _, n in line["drawn"]), reverse=True)
            total = sum(counts)
            distinct.append(len(counts))
            top.append(sum(counts[:TOP_PROMPTS]) / total)
            for family, n in line["digits"].items():
                families[family] += n / total / len(seeds)
        arms[arm] = {
            "seeds": len(seeds),
            "distinct": recorded(sum(distinct) / len(seeds)),
            "top_share": recorded(sum(top) / len(seeds)),
            "digits": {family: recorded(share) for family, share in sorted(families.items())},
        }
    return arms


def draws_markdown(arms: dict[str, dict[str, Any]]) -> str:
    """The draws table (empty without lines)."""
    if not arms:
        return ""
    families = sorted({f for entry in arms.values() for f in entry["digits"]}, key=lambda f: (len(f), f))
    head = "".join(f" {f}-digit |" for f in families)
    lines = [
        "",
        f"What each arm trained on (mean over seeds of the trained epochs; top {TOP_PROMPTS}: the share of draws on "
        f"the {TOP_PROMPTS} most drawn prompts; then the share of draws per family):",
        "",
        f"| arm | seeds | distinct prompts | top {TOP_PROMPTS} |{head}",
        "|---|---|---|---|" + "---|" * len(families),
    ]
    for arm, entry in arms.items():
        cells = "".join(f" {entry['digits'].get(f, 0):.0%} |" for f in families)
        lines.append(f"| {arm} | {entry['seeds']} | {entry['distinct']:.0f} | {entry['top_share']:.0%} |{cells}")
    return "\n".join(lines) + "\n"
