"""What a bench's measured seconds include, said beside its tables; and, where the records cannot split the scoring
pass's first import off, the seconds ratios re-derived with the scoring pass left out.

A bench that times first imports apart (`warm.py`) records `warm_up_seconds` in every pair's costs, and
`scoring_first_import_seconds` in those of the arms charged the scoring pass: its seconds are what a long run pays,
and the costs table lists the first imports beside them, charged to no arm. Older records hold neither: every arm
but the baseline was charged the scoring pass as the bench's process first ran it, with the imports of the libraries
and the first load of the tokenizer and model inside, in every one of its points' seconds. Those records cannot
split that import off; they can leave the whole scoring pass out (each point's seconds less its pair's
`scoring_seconds`, exactly), a bound from below on the arms' seconds, since it leaves out the warm pass too.
`less_scoring` re-derives the seconds ratios so, with the summary's own code, for the compute account's benches,
whose seconds column is its check.

    less = less_scoring(points, config, costs)      # {arm: seconds / baseline}, or None where it is not needed
    line = seconds_line(summary)                    # under the compute table
    cell = first_import_cell(summary, arm)          # the costs table's column
    mark = included(summary)                        # the seconds columns' headings, where the import is inside
"""

from __future__ import annotations

from typing import Any

from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.summary import summarize
from gaincurate.lab.benchmarks.curriculum.warm import SCORING_FIRST_IMPORT, WARM_UP_SECONDS

LESS_SCORING = "seconds_less_scoring"  # summary.json: the re-derived ratios, for records that need them
INCLUDED = "included"  # the costs table's cell where the records hold no first import apart


def _ratio(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    if stats.get("low") is None:
        return f"{stats['mean']:.2f}"
    return f"{stats['mean']:.2f} [{stats['low']:.2f}, {stats['high']:.2f}]"


def timed_apart(summary: dict[str, Any]) -> bool:
    """Whether the bench's pairs timed their first imports apart (every pair records its warm-up since)."""
    return any(WARM_UP_SECONDS in entry["costs"] for entry in summary["strategies"].values())


def less_scoring(
    points: list[dict[str, Any]], config: BenchConfig, costs: dict[tuple[str, int], dict[str, float]]
) -> dict[str, Any] | None:
    """Each arm's seconds / baseline with its pairs' scoring pass left out of their points' seconds; None where the
    records time the first imports apart or charge no scoring pass (nothing to re-derive)."""
    spent = list(costs.values())
    if any(WARM_UP_SECONDS in cost for cost in spent) or not any(cost.get("scoring_seconds") for cost in spent):
        return None
    charged = {key: float(cost.get("scoring_seconds", 0.0)) for key, cost in costs.items()}
    adjusted = [{**point, "seconds": point["seconds"] - charged.get((point["strategy"], int(point["seed"])), 0.0)}
                for point in points]  # fmt: skip
    arms = summarize(adjusted, config, costs)["strategies"]
    return {arm: (entry["vs_baseline"] or {}).get("seconds") for arm, entry in arms.items() if entry["vs_baseline"]}


def _charged_scoring(summary: dict[str, Any], key: str) -> float | None:
    """The mean over the charged arms of one scoring cost (the same in every charged pair of a bench)."""
    arms = [entry["costs"] for entry in summary["strategies"].values() if entry["costs"].get("scoring_seconds")]
    values = [costs[key] for costs in arms if key in costs]
    return sum(values) / len(values) if values else None


def seconds_line(summary: dict[str, Any]) -> str:
    """Under the compute table: what its measured seconds include (empty where no arm was charged a scoring pass)."""
    baseline, scoring = summary["baseline"], _charged_scoring(summary, "scoring_seconds")
    if scoring is None:
        return ""
    first = _charged_scoring(summary, SCORING_FIRST_IMPORT)
    if timed_apart(summary) and first is not None:
        return (
            f"Measured seconds charge the scoring pass as a long run pays it, the libraries already imported "
            f"({scoring:.3g} s a pair, to every arm but {baseline}); its first import ({first:.3g} s) and each "
            f"process's are timed apart and charged to no arm (the costs table's first imports)."
        )
    if timed_apart(summary):  # assets scored before the scoring's first import was timed apart
        return (
            f"Measured seconds charge every arm but {baseline} the scoring pass with its first import inside "
            f"({scoring:.3g} s a pair): this bench's assets were scored before the bench timed it apart."
        )
    less = summary.get(LESS_SCORING) or {}
    ratios = ", ".join(f"{arm} {_ratio(stats)}" for arm, stats in less.items())
    return (
        f"Measured seconds here charge every arm but {baseline} the scoring pass as the bench's process first ran "
        f"it, the first import of the libraries and the first load of the tokenizer and model inside ({scoring:.3g} s "
        f"a pair); these records do not hold that import apart. Seconds / {baseline} with the scoring pass left out "
        f"of each pair's seconds (a bound from below: its warm cost is left out too): {ratios}."
    )


def included(summary: dict[str, Any]) -> str:
    """The seconds columns' mark where the records charge a scoring pass with its first import inside (else empty)."""
    charged = _charged_scoring(summary, "scoring_seconds") is not None
    return "first imports included" if charged and _charged_scoring(summary, SCORING_FIRST_IMPORT) is None else ""


def first_import_cell(summary: dict[str, Any], arm: str) -> str:
    """The costs table's first imports of one arm, mean over seeds: the scoring's and its process's warm-up."""
    if not timed_apart(summary):
        return INCLUDED
    costs = summary["strategies"][arm]["costs"]
    return f"{costs.get(SCORING_FIRST_IMPORT, 0.0) + costs.get(WARM_UP_SECONDS, 0.0):.1f}"


def first_imports_line(summary: dict[str, Any]) -> str:
    """Under the costs table: what its first imports column holds."""
    if timed_apart(summary):
        return (
            "First imports (the libraries, the first load of the tokenizer and model): the scoring pass's, for the "
            "arms charged it, and each process's before its first pair's clock starts; charged to no arm."
        )
    return (
        f"First imports: not timed apart in this bench's records ('{INCLUDED}'); its scoring and total seconds "
        f"include them."
    )
