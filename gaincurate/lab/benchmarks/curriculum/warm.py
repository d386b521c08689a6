"""First imports, paid before any clock starts: the bench times what a long run pays, and states the rest apart.

A process pays once for importing the libraries and for the first load of a tokenizer and a model (transformers
builds its lazily imported modules then). A run of hours pays that once and never notices; a bench pair of a minute
would carry it as a large share of its seconds, and only the arms it is charged to. So:

* the pool's scoring pass (`assets.py`) runs first on the pool's first `WARM_UP_ROWS` rows, into a folder then
  removed; its seconds are kept as `scoring_first_import_seconds` (assets.json, and the costs of every arm the
  scoring pass is charged to), charged to no arm, and the scoring pass is timed after it, as a long run pays it;
* each process that trains pairs imports every module of the packages a pair's curriculum runs (its run, the
  strategies, the likelihood refresh's scoring code) and loads the initial model and tokenizer once, before the
  first pair's clock starts; the seconds are that pair's `warm_up_seconds` (0 for the process's later pairs), charged
  to no arm. So the refresh, too, is timed with its libraries already imported.

Both are listed apart in the report's costs table; older benches' records hold neither, and their scoring and total
seconds include them (`seconds.py` says so under their tables).

    first = scoring_first_import(score, pool_file, assets / WARM_UP)   # then time score(pool_file, ...) itself
    costs[WARM_UP_SECONDS] = warm_up_process(load_model_and_tokenizer)  # then start the pair's clock
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WARM_UP = "warm-up"  # the folder, inside the assets, of the scoring run that pays the first imports
SCORING_FIRST_IMPORT = "scoring_first_import_seconds"  # assets.json, and the costs of the arms charged the scoring
WARM_UP_SECONDS = "warm_up_seconds"  # every pair's costs: its process's first imports, paid before its clock
WARM_UP_ROWS = 2  # enough rows for every step of a scoring pass (batching, the embedding, the shards)
# What a pair's curriculum imports while it runs: the scheduler, its run and refresh, the scoring code the refresh
# calls, the lab's strategies and the trainer integration.
CURRICULUM_PACKAGES = ("gaincurate.schedule", "gaincurate.scoring", "gaincurate.lab.strategies",
                       "gaincurate.integrations.trl")  # fmt: skip

_warmed = False  # this process has paid its first imports


def scoring_first_import(score: Callable[[Path, Path], Any], pool_file: Path, folder: Path) -> float:
    """Seconds of `score(rows, out)` on the first `WARM_UP_ROWS` rows of `pool_file`, run in `folder` (removed
    after): the first import of the scoring libraries and the first load of the tokenizer and model."""
    rows = pool_file.read_text().splitlines(keepends=True)[:WARM_UP_ROWS]
    if folder.exists():
        shutil.rmtree(folder)  # left by a killed bench
    folder.mkdir(parents=True)
    (folder / pool_file.name).write_text("".join(rows))
    started = time.perf_counter()
    try:
        score(folder / pool_file.name, folder / "scores")
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder)


def warm_up_process(load: Callable[[], Any]) -> float:
    """Import every module of `CURRICULUM_PACKAGES` and call `load` (the initial model and tokenizer) once per
    process; returns the seconds that took (0.0 when this process already did)."""
    global _warmed
    if _warmed:
        return 0.0
    started = time.perf_counter()
    for name in CURRICULUM_PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, f"{name}."):
            importlib.import_module(module.name)
    load()
    _warmed = True
    return time.perf_counter() - started
