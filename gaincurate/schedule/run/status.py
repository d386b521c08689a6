"""Where a run directory stands, as JSON-ready data (`run_status`): what `schedule status` shows and `--json` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gaincurate.schedule.figures import drawn_figures
from gaincurate.schedule.readout import Thresholds, rewarned
from gaincurate.schedule.run import rundir
from gaincurate.schedule.strategies.registry import how_it_draws, top_level

PER_PROMPT_KEYS = ("subset_ids", "positions")  # a history line's lists of the epoch's prompts: status counts them


def run_status(run_dir: Path, thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """Where the run stands, as JSON-ready data: the current epoch, the numbers that draw it (`draw`: the strategy's
    `columns` declared `drawn`), how the strategy draws, and each epoch's history line (its prompts counted, not
    listed) with its readout's warnings under `thresholds`."""
    run_dir = Path(run_dir)
    run = rundir.load_run(run_dir)
    lines = rundir.read_history(run_dir)
    history = []
    for line, found in zip(lines, rewarned(lines, thresholds), strict=True):
        shown = {key: value for key, value in line.items() if key not in PER_PROMPT_KEYS}
        shown["subset_size"] = len(line.get("subset_ids", []))
        if "readout" in line:
            shown["readout"] = line["readout"] | {"warnings": found}
        history.append(shown)
    draw = drawn_figures(run.config.strategy_class.about.columns, run.schedule.memory)
    selection = run.schedule.selection
    return {
        "run": str(run_dir),
        "epoch": run.schedule.epoch,
        **top_level(draw, uses=True),  # `mu` and `uses_mu`, as docs/schedule.md shows them
        "draw": draw,
        "trained": run.trained,
        "epoch_file": str(rundir.epoch_path(run_dir, run.schedule.epoch)) if run.schedule.epoch >= 0 else None,
        "n_prompts": run.n_prompts,
        "scores_dir": run.scores_dir,
        "params": {
            **run.config.to_dict(),
            "subset_size": run.config.subset_count(run.n_prompts),
            **run.config.options.in_ranks(run.n_prompts),
        },
        "draws": how_it_draws(run.config),
        "history": history,
        "warnings": history[-1].get("readout", {}).get("warnings", []) if history else [],
        **({"selection": selection.figures} if selection is not None and selection.figures else {}),
    }


def estimates_all_equal(readout: dict[str, Any]) -> bool:
    """Whether the draw's estimates were all equal: uniform's "estimate" from them then describes no pool, so the
    status table says "no estimate" and the plot draws none."""
    return readout.get("estimate_spread") == 0.0
