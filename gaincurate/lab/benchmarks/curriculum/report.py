"""The bench's tables, and the published results that re-derive them.

A bench directory, or a published copy of its small outputs under docs/results/NAME/, holds:

    bench.json     the config, with its declared analysis (target, primary arms, estimator settings)
    runs.jsonl     every evaluation point of every finished pair
    costs.jsonl    every finished pair's costs (seconds by part, screening and oracle measurement)
    summary.json   what `summarize` computed from the three files above

Where the pairs recorded tokens by kind, the tables open with the compute account to the
target (`compute.py`); older benches say which kinds they lack and keep rollouts as their headline.

`report(DIR)` recomputes the summary from the first three and returns it with the markdown tables; that is
`gaincurate bench curriculum --report DIR`, and tests/benchmarks/test_published_results.py checks that the
tables in docs/benchmark-history.md are exactly what it prints. `publish(OUT, DIR)` copies a bench's small outputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.lab.benchmarks.curriculum import compute
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.seconds import (
    LESS_SCORING,
    first_import_cell,
    first_imports_line,
    included,
    less_scoring,
    seconds_line,
)
from gaincurate.lab.benchmarks.curriculum.summary import summarize

FILES = ("bench.json", "runs.jsonl", "costs.jsonl", "summary.json")
READOUTS = "readouts.jsonl"  # each epoch's savings readout (older benches have none)
DIAGNOSIS = "diagnosis.jsonl"  # each draw's pool measurement against the estimates (benches run with `measure_pool`)
DRAWS = "draws.jsonl"  # what each pair trained on (older benches have none)


def read_results(folder: Path) -> tuple[BenchConfig, list[dict[str, Any]], dict[tuple[str, int], dict[str, float]]]:
    """The config, the points and the costs kept in a bench directory or a published results folder."""
    folder = Path(folder)
    missing = [name for name in FILES[:3] if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"{folder} lacks {', '.join(missing)}: point --report at a bench --out or a docs/results folder"
        )
    config = BenchConfig.from_dict(json.loads((folder / "bench.json").read_text())["config"])
    points = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines() if line.strip()]
    costs = {}
    for line in (folder / "costs.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            costs[(row["strategy"], int(row["seed"]))] = row["costs"]
    return config, points, costs


def report(folder: Path) -> tuple[dict[str, Any], str]:
    """(summary, markdown) recomputed from a results folder's points, costs and config."""
    from gaincurate.lab.benchmarks.curriculum.diagnosis import arm_diagnosis, diagnosis_markdown
    from gaincurate.lab.benchmarks.curriculum.draws import arm_draws, draws_markdown
    from gaincurate.lab.benchmarks.curriculum.readout import arm_readouts, pairs_of, readout_markdown

    config, points, costs = read_results(folder)
    summary = summarize(points, config, costs)
    if "account" in summary:  # the compute table's seconds check says what its seconds include (seconds.py)
        less = less_scoring(points, config, costs)
        if less is not None:
            summary[LESS_SCORING] = less
    table = markdown_table(summary) + whole_groups_line(points, list(summary["strategies"]))
    readouts = Path(folder) / READOUTS
    if readouts.is_file():  # older benches have none
        lines = [json.loads(line) for line in readouts.read_text().splitlines() if line.strip()]
        summary["readout"] = arm_readouts(pairs_of(lines))
        table += readout_markdown(summary["readout"])
    diagnosis = Path(folder) / DIAGNOSIS
    if diagnosis.is_file():  # only benches run with `measure_pool` have one
        lines = [json.loads(line) for line in diagnosis.read_text().splitlines() if line.strip()]
        summary["diagnosis"] = arm_diagnosis(lines)
        table += diagnosis_markdown(summary["diagnosis"])
    drawn = Path(folder) / DRAWS
    if drawn.is_file():  # older benches have none
        lines = [json.loads(line) for line in drawn.read_text().splitlines() if line.strip()]
        summary["draws"] = arm_draws(lines)
        table += draws_markdown(summary["draws"])
    return summary, table + demo_note(summary, config.name)


# What the demonstration (`gaincurate bench curriculum --demo`) shows and what it does not, said under its tables.
PUBLISHED = 'docs/benchmarks.md, "The probe verdict"'


def demo_note(summary: dict[str, Any], name: str) -> str:
    """For the `demo` bench only: one sentence on what the run shows and does not (empty for any other bench)."""
    if name != "demo":
        return ""
    baseline = summary["baseline"]
    seeds = len(summary["strategies"].get(baseline, {}).get("seeds", []))
    arms = []
    for arm, entry in summary["strategies"].items():
        ratio = ((entry["vs_baseline"] or {}).get("rollouts") or {}).get("mean")
        spent = ((entry["vs_baseline"] or {}).get("compute") or {}).get("mean")
        if ratio is not None:
            missed = f", {entry['censored']} seed(s) never reaching it" if entry["censored"] else ""
            first = "" if spent is None else f"{spent:.2f}x {baseline}'s compute and "
            arms.append(f"{arm} needed {first}{ratio:.2f}x {baseline}'s rollouts to reach the target{missed}")
    shown = "; ".join(arms) or f"no arm reached the target on both sides of a pair with {baseline}"
    return (
        f"\nWhat this shows: on {seeds} seed(s) of cpu-arith on this machine, {shown} (compute and rollouts to target: "
        f"the tables' columns; curves.png plots accuracy per rollout spent). What it does not: it is a demonstration "
        f"on a few seeds, too few for a sign-flip test to reach 5%, not the published verdict (12 seeds, an analysis "
        f"declared before the runs: {PUBLISHED}).\n"
    )


def whole_groups_line(points: list[dict[str, Any]], order: list[str]) -> str:
    """Each arm's zero-variance share of whole trained groups, as the bench counted them between evaluation points
    (mean over its points), in `order`. The readout's share (below) reads the curriculum's feedback, which leaves
    out rows a trainer reused from a pilot; this count keeps them."""
    shares: dict[str, list[float]] = {}
    for point in points:
        if point.get("zero_variance_fraction") is not None:
            shares.setdefault(point["strategy"], []).append(float(point["zero_variance_fraction"]))
    if not shares:
        return ""
    arms = [arm for arm in order if arm in shares]  # the tables' order
    cells = ", ".join(f"{arm} {sum(shares[arm]) / len(shares[arm]):.0%}" for arm in arms)
    return f"\nZero-variance share of whole trained groups (the bench's count, reused pilot rows included): {cells}.\n"


def publish(out: Path, folder: Path) -> None:
    """Copy a bench's small outputs (not its assets, pairs or plots) into a results folder, with its summary
    recomputed by this code, so the kept summary.json is what `report` re-derives."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*FILES[:3], READOUTS, DIAGNOSIS, DRAWS):
        if name in (READOUTS, DIAGNOSIS, DRAWS) and not (Path(out) / name).is_file():
            continue
        shutil.copyfile(Path(out) / name, folder / name)
    summary, _ = report(folder)
    kept = json.loads((Path(out) / "summary.json").read_text())
    summary["initial_sha256"] = kept.get("initial_sha256")
    atomic_write_bytes(folder / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _fmt(stats: dict[str, Any] | None, digits: int = 2) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    if stats.get("low") is None:
        return _number(stats["mean"], digits)
    return f"{_number(stats['mean'], digits)} [{_number(stats['low'], digits)}, {_number(stats['high'], digits)}]"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}" if value < 0.001 else f"{value:.3f}"


def _verdict_line(summary: dict[str, Any], key: str = "primary", unit: str = "rollouts") -> str:
    baseline, primary = summary["baseline"], summary[key]
    declared = summary.get("analysis", {}).get("primary")
    if not primary and declared:
        return (
            f"The declared primary arms ({', '.join(declared)}) have no pairs here, so no arm is tested against the "
            "baseline."
        )
    if not primary:
        return "No primary comparison was declared, so no arm is tested against the baseline."
    parts = []
    for arm, result in primary.items():
        parts.append(f"{arm} {result['verdict']} {baseline} ({result['ratio']:.2f}x its {unit}, Holm p = "
                     f"{_p(result['p_holm'])}, {result['censored']} censored)")  # fmt: skip
    winners = [arm for arm, result in primary.items() if result["verdict"] == "beats"]
    lead = (f"At the 5% level, after Holm's correction over {', '.join(primary)}: "
            + (f"{' and '.join(winners)} beat{'s' if len(winners) == 1 else ''} {baseline}." if winners
               else f"no arm beats {baseline}."))  # fmt: skip
    return lead + " " + "; ".join(parts) + "."


def _significant(value: float) -> str:
    return f"{value:.3g}"


def compute_lines(summary: dict[str, Any]) -> list[str]:
    """The compute account to the target, first: its paired ratio and Holm p, then tokens by kind, FLOPs and price.
    A bench run before the account was recorded says so, and its headline stays rollouts."""
    baseline, account, mark = summary["baseline"], summary.get("account"), included(summary)
    if account is None:
        return ["", "Compute account: not recorded. This bench predates the token counts (issue 57): its points hold "
                "generated tokens but not the prompts prefilled, trained, scoring or refresh tokens, so its headline "
                "is rollouts to the target, below."]  # fmt: skip
    lines = [
        "", f"Compute to the target, the headline: each pair's tokens by kind priced on {account['setup']} "
        f"(docs/benchmark-history.md, \"The compute account\"); the curriculum's scoring and refresh are charged, "
        f"evaluation and the oracle's measurement are not. Measured seconds (this machine) stand beside it as its "
        f"check.", "",
        f"| arm | seeds | censored | compute to target (GPU ms) | compute / {baseline} | p | Holm p "
        f"| seconds / {baseline} (measured{', ' + mark if mark else ''}) | rollouts / {baseline} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for arm, entry in summary["strategies"].items():
        versus = entry["vs_baseline"] or {}
        ratio, reached = versus.get("compute") or {}, entry["to_target"]["compute"]
        milliseconds = {k: (None if k == "n" or v is None else 1000 * v) for k, v in reached.items()}
        lines.append(
            f"| {arm} | {len(entry['seeds'])} | {(ratio or {}).get('censored', entry['censored'])} "
            f"| {_fmt(milliseconds, 3)} | {_fmt(ratio)} | {_p(ratio.get('p'))} "
            f"| {_p(summary['compute_primary'].get(arm, {}).get('p_holm'))} | {_fmt(versus.get('seconds'))} "
            f"| {_fmt(versus.get('rollouts'))} |"
        )
    lines += ["", _verdict_line(summary, "compute_primary", "compute")]
    said = seconds_line(summary)
    lines += ["", said] if said else []
    price = account["seconds_per_token"]
    lines += [
        "", f"Tokens per pair by kind over the whole run (mean over seeds), their model FLOPs (N = "
        f"{account['parameters']:,} matmul parameters: 2N per forward token, 6N per trained token) and their price "
        f"(GPU ns per token: generated {1e9 * price['tokens']:.3g} at a decode batch of {account['decode_batch']}, "
        f"prefilled {1e9 * price['prompt_tokens']:.3g}, trained {1e9 * price['trained_tokens']:.3g}):", "",
        "| arm | generated | prompts prefilled | trained | scoring | refresh | FLOPs | GPU ms | scoring share "
        "| refresh share | selection (measured s) |", "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for arm, row in account["arms"].items():
        kinds = " | ".join(f"{row[kind]:,.0f}" for kind in compute.KINDS)
        selection = summary["strategies"][arm]["costs"].get("select_seconds")
        lines.append(
            f"| {arm} | {kinds} | {row['flops']:.3g} | {_significant(1000 * row['gpu_seconds'])} "
            f"| {row['scoring_tokens_share']:.1%} | {row['refresh_tokens_share']:.1%} | {_number(selection, 1)} |"
        )
    refreshing = [(arm, row) for arm, row in account["arms"].items() if row["refresh_tokens"]]
    if refreshing:  # the refresh is bounded at 10% of its arm's compute in every seed: show that it keeps inside
        shares = ", ".join(f"{arm} {row['refresh_tokens_share']:.1%} ({row['refresh_tokens_share_max']:.1%})"
                           for arm, row in refreshing)  # fmt: skip
        lines += ["", f"The refresh's share of its arm's compute over the run, mean (highest seed): {shares}."]
    return [*lines, "", "Rollouts to the target, second:"]


def markdown_table(summary: dict[str, Any]) -> str:
    """The headline table, the verdict, the sensitivity table, the cost table and the headroom line."""
    headline, baseline, analysis = summary["headline"], summary["baseline"], summary["analysis"]
    mark = included(summary)
    budget = analysis["pauc_budget"]
    smoothing = "the raw curve" if analysis["smooth"] == 1 else f"a centred {analysis['smooth']}-point mean"
    lines = [
        f"Headline: held-out {headline} accuracy. Target {analysis['target']:.3f} ({analysis['target_rule']}); "
        f"crossings interpolated on {smoothing}; a seed that never reaches the target "
        f"is censored at its budget and counted. Intervals are 95% over seeds; ratios and differences are paired "
        f"against {baseline} by seed; p is an exact two-sided sign-flip test.",
        *compute_lines(summary),
        "",
        f"| arm | seeds | initial | final | censored | rollouts to target | rollouts / {baseline} | p | Holm p "
        f"| partial AUC - {baseline} ({_number(budget, 0)} rollouts) | steps / {baseline} | seconds / {baseline}"
        f"{f' ({mark})' if mark else ''} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, entry in summary["strategies"].items():
        versus = entry["vs_baseline"] or {}
        rollouts = versus.get("rollouts") or {}
        holm = summary["primary"].get(arm, {}).get("p_holm")
        lines.append(
            f"| {arm} | {len(entry['seeds'])} | {_fmt(entry['initial'], 3)} | {_fmt(entry['final'], 3)} "
            f"| {entry['censored']} | {_fmt(entry['to_target']['rollouts'], 0)} | {_fmt(rollouts)} "
            f"| {_p(rollouts.get('p'))} | {_p(holm)} | {_fmt(versus.get('pauc'), 3)} | {_fmt(versus.get('steps'))} "
            f"| {_fmt(versus.get('seconds'))} |"
        )
    lines += ["", _verdict_line(summary)]
    shares = {arm: e["oracle_share"] for arm, e in summary["strategies"].items() if e.get("oracle_share")}
    if shares:
        lines += ["", "Share of the oracle's saving captured: (1 - arm) / (1 - oracle) on the geometric-mean rollouts "
                  f"/ {baseline}, 95% bootstrap over seeds (1: all of it, 0: none, below 0: more than {baseline}):", "",
                  "| arm | share of the oracle's saving | seeds |", "|---|---|---|"]  # fmt: skip
        lines += [f"| {arm} | {_fmt(share)} | {share['n']} |" for arm, share in shares.items()]
    others = analysis["other_targets"]
    if others:
        lines += ["", f"Rollouts / {baseline} at other targets (sensitivity; censored seeds in brackets):", "",
                  "| arm | " + " | ".join(f"target {t:.3f}" for t in others) + " |",
                  "|---|" + "---|" * len(others)]  # fmt: skip
        for arm, entry in summary["strategies"].items():
            if arm == baseline:
                continue
            cells = []
            for target in others:
                ratio = (entry["sensitivity"].get(f"{target:g}") or {}).get("rollouts")
                cells.append(f"{_fmt(ratio)} ({ratio['censored']})" if ratio else "n/a")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "Costs per pair, mean over seeds, in seconds (measured with the load noted beside the table):", "",
              "| arm | scoring | first imports (not charged) | curriculum (re-score, select) | total "
              "| evaluation (not charged) | oracle measurement (not charged) |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm, entry in summary["strategies"].items():
        c = entry["costs"]
        measured = (f"{c['measure_rollouts']:,.0f} rollouts, {c['measure_seconds']:.0f} s"
                    if "measure_rollouts" in c else "")  # fmt: skip
        screening = f"; screening {c['screen_rollouts']:,.0f} rollouts (charged)" if c.get("screen_rollouts") else ""
        lines.append(
            f"| {arm} | {c.get('scoring_seconds', 0):.1f} | {first_import_cell(summary, arm)} "
            f"| {c.get('curriculum_seconds', 0):.1f} "
            f"({c.get('rescore_seconds', 0):.1f}, {c.get('select_seconds', 0):.1f}){screening} "
            f"| {c.get('total_seconds', 0):.0f} | {c.get('eval_seconds', 0):.0f} | {measured} |"
        )
    lines += ["", first_imports_line(summary)]
    if summary.get("headroom"):
        lines += ["", f"Headroom: {summary['headroom']['line']}."]
    targets = pilot_targets(summary)
    if targets:
        shares = ", ".join(f"{round(100 * share)}%: {value:.3f}" for share, value in targets.items())
        lines += ["", f"As a pilot: targets at a share of {baseline}'s mean gain over the run ({shares})."]
    return "\n".join(lines) + "\n"


PILOT_SHARES = (0.5, 0.75, 0.9)


def pilot_targets(summary: dict[str, Any]) -> dict[float, float]:
    """Absolute targets at shares of the baseline's mean gain (initial to final), rounded to 3 decimals: what a
    uniform-only pilot hands the config it precedes. Empty when the baseline did not run or did not gain."""
    entry = summary["strategies"].get(summary["baseline"])
    if not entry or entry["initial"]["mean"] is None:
        return {}
    start, end = entry["initial"]["mean"], entry["final"]["mean"]
    if end <= start:
        return {}
    return {share: round(start + share * (end - start), 3) for share in PILOT_SHARES}


def plot_results(folder: Path, path: Path) -> Path | None:
    """curves.png from a results folder's points (None without matplotlib)."""
    from gaincurate.lab.benchmarks.curriculum.plot import plot_curves

    config, points, _ = read_results(folder)
    return plot_curves(points, Path(path), title=config.name)
