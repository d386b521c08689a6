"""Read a scores directory (written by `gaincurate score`) into what the scheduler needs.

`load_scores(DIR)` returns the manifest, the full table (every input column plus gc_*, in gc_id order)
and a `PromptSet` of numpy arrays for the pure scheduler. The reading itself is
`gaincurate.shards`'s; this module only checks that the directory is usable for a schedule.

`scores_fingerprint(manifest)` is what a run records of the scores it starts on (the model, the scoring config, the
shards' checksums), and `check_unchanged` refuses, in one line, scores that differ from it in any of those.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate.errors import InputError
from gaincurate.schedule.strategies.contract import PromptSet


@dataclass(frozen=True)
class ScoresInput:
    directory: Path
    manifest: dict[str, Any]
    table: pa.Table
    prompts: PromptSet

    @property
    def prompt_config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    def rows_of(self, gc_ids: np.ndarray) -> np.ndarray:
        """Table row indices of `gc_ids` (the table is sorted by gc_id)."""
        return np.searchsorted(self.prompts.gc_ids, np.asarray(gc_ids, dtype=np.int64))


def load_scores(scores_dir: Path, *, recorded: bool = False) -> ScoresInput:
    """`recorded`: `scores_dir` is the folder a run's state.json records, where a missing one is put back."""
    from gaincurate import shards

    scores_dir = Path(scores_dir)
    if recorded and not scores_dir.exists():
        raise InputError(
            f"{scores_dir}, this run's scores folder (recorded in its state.json by `schedule init`), is not there; "
            "put the scores back at that path (move or copy the folder there), then run the same command again"
        )
    manifest = shards.read_manifest(scores_dir)
    table = shards.read_scores(scores_dir)
    expected = manifest.get("rows")
    if expected is not None and table.num_rows != expected:
        raise InputError(
            f"{scores_dir} holds {table.num_rows} scored rows but its manifest says {expected}; "
            "re-run the same `gaincurate score` command to finish it"
        )
    if table.num_rows == 0:
        raise InputError(f"{scores_dir} holds no scored rows; score a non-empty dataset first")
    gc_ids = table.column("gc_id").to_numpy(zero_copy_only=False).astype(np.int64)
    if np.any(np.diff(gc_ids) <= 0):
        raise InputError(f"{scores_dir} has repeated gc_id values; re-score it into an empty --out directory")
    scores = _floats(table, "gc_score")
    prompts = PromptSet(
        gc_ids=gc_ids,
        scores=scores,
        ranking_scores=np.asarray(shards.ranking_scores(table, manifest), dtype=np.float64),
        question_tokens=table.column("gc_question_tokens").to_numpy(zero_copy_only=False).astype(np.int64),
        debias=manifest.get("debias"),
    )
    return ScoresInput(scores_dir, manifest, table, prompts)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    return np.asarray(column.to_pylist() if column.null_count else column.to_numpy(), dtype=np.float64)


# Keys of the manifest's fingerprint that are not what the scores mean: the model's (its own part), the dataset's (a run
# checks its prompts by the dataset fingerprint, with its own message), and the speed settings, which
# a re-scoring may tune otherwise: where they changed a score's bits, the shards' checksums tell.
_NOT_SCORING = frozenset({"model", "model_fingerprint", "dataset", "dataset_fingerprint"})
_SPEED = frozenset({"batch_tokens", "prefix_cache", "device", "backend"})


def scores_fingerprint(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """What identifies a scores directory's scores: the model (id and fingerprint), the scoring config (with
    the length debias a ranking applies) and one digest of the shards' checksums. Each part the manifest holds is
    kept; None when it holds none of them (made by hand, or by a gaincurate that wrote none), so nothing is checked."""
    parts: dict[str, Any] = {}
    model, config, checksums = manifest.get("model"), manifest.get("fingerprint"), manifest.get("checksums")
    if isinstance(model, dict):
        parts["model"] = {"id": model.get("id"), "fingerprint": model.get("fingerprint")}
    if isinstance(config, dict):
        settings = {key: value for key, value in config.items() if key not in _NOT_SCORING | _SPEED}
        parts["config"] = dict(sorted({**settings, "debias": manifest.get("debias")}.items()))
    if isinstance(checksums, dict):
        parts["shards"] = hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest()[:16]
    return parts or None


def check_unchanged(recorded: dict[str, Any] | None, manifest: dict[str, Any], scores_dir: str | Path) -> None:
    """Refuse scores that differ from those a run recorded at its start (`recorded`), naming each part that changed.

    A run recorded before runs kept a fingerprint (None) is not checked, nor is a part it did not record.
    """
    if not recorded:
        return
    now = scores_fingerprint(manifest) or {}
    changes = {}
    if "model" in recorded:
        changes["model"] = _model_change(recorded["model"], now.get("model") or {})
    if "config" in recorded:
        changes["config"] = _config_change(recorded["config"], now.get("config") or {})
    if "shards" in recorded and recorded["shards"] != now.get("shards"):
        changes["shards"] = "shards: other bytes than the run started on"
    changes = {part: words for part, words in changes.items() if words}
    if set(changes) == {"model"} and "shards" in recorded:
        # The same shard bytes under the same settings are the same scores, whichever copy of the model made them
        # (its fingerprint is its files' sizes and times): the model is named only beside a change it explains.
        return
    if changes:
        raise InputError(
            f"the scores in {scores_dir} changed since this run started ({'; '.join(changes.values())}), and the "
            "run's ranking and draws come from the scores it started on; put those scores back (score again with "
            "the run's model and settings), or start a new run on these in another directory: "
            f"`gaincurate schedule init --scores {scores_dir} --run NEW_RUN`"
        )


def _model_change(then: dict[str, Any], now: dict[str, Any]) -> str | None:
    if then.get("id") != now.get("id"):
        return f"model {then.get('id')} -> {now.get('id')}"
    before, after = then.get("fingerprint"), now.get("fingerprint")
    return None if before == after else f"model {then.get('id')}: its files changed (fingerprint {before} -> {after})"


def _config_change(then: dict[str, Any], now: dict[str, Any]) -> str | None:
    """`scoring config: layer -1 -> 1, ...`: a value shown where it is short, a system prompt or few-shot turns by
    name only; three settings at most, the rest counted."""
    keys = sorted(key for key in then.keys() | now.keys() if then.get(key) != now.get(key))
    shown = []
    for key in keys[:3]:
        before, after = json.dumps(then.get(key)), json.dumps(now.get(key))
        shown.append(f"{key} {before} -> {after}" if len(before) + len(after) <= 60 else key)
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return f"scoring config: {', '.join(shown)}{more}" if keys else None
