"""verl's columns of an exported row: the user's own where the scored data has them, ours where it does not.

verl reads `data_source`, `prompt`, `ability`, `reward_model` and `extra_info` (the layout of its
`examples/data_preprocess` scripts). A column the user already has comes back exactly as it was (a missing
`data_source` value takes `--data-source`); a column they lack is filled: `data_source` lighteval/MATH,
`ability` "math", `reward_model` {"style": "rule", "ground_truth": the answer as text}. `extra_info` keeps every
key and value of the user's and gains `gc_id`, our id of the row, which the verl hooks read (verl's own
`extra_info.index` counts rows within one split, so it repeats when files are concatenated); `index`,
`split` = "train" and `dataset` are added only where the user's `extra_info` has no such key, as exports
before `gc_id` had them.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gaincurate.errors import ConfigError

logger = logging.getLogger(__name__)

VERL_ABILITY = "math"
EXTRA_INFO = "extra_info"
GC_ID_KEY = "gc_id"  # extra_info's key for our row id; never one of verl's preprocessing keys
REWARD_MODEL = pa.struct([pa.field("style", pa.string()), pa.field("ground_truth", pa.string())])
# Added to extra_info where the user's has no such key: verl's `index` is then the gc_id, as in older exports.
_DEFAULT_INFO = (pa.field("index", pa.int64()), pa.field("split", pa.string()), pa.field("dataset", pa.string()))
_PLAIN = {"data_source": pa.string(), "ability": pa.string(), "reward_model": REWARD_MODEL}


def verl_fields(inputs: pa.Schema) -> list[pa.Field]:
    """The schema of verl's columns but `prompt`: the user's field where `inputs` has the column, else ours."""
    fields = [inputs.field(name) if name in inputs.names else pa.field(name, kind) for name, kind in _PLAIN.items()]
    return [*fields, pa.field(EXTRA_INFO, pa.struct(_extra_info_fields(inputs)))]


def verl_arrays(rows: pa.Table, answers: list[Any], *, dataset: str, data_source: str) -> dict[str, Any]:
    """verl's columns but `prompt` for `rows` (scores-table rows with `gc_id`), by `verl_fields`' schema."""
    count = len(rows)
    names = rows.column_names
    columns: dict[str, Any] = {}
    if "data_source" in names:
        given = rows.column("data_source")
        string = pa.types.is_string(given.type) or pa.types.is_large_string(given.type)
        columns["data_source"] = pc.fill_null(given, pa.scalar(data_source, given.type)) if string else given
    else:
        columns["data_source"] = pa.array([data_source] * count, pa.string())
    columns["ability"] = rows.column("ability") if "ability" in names else pa.array([VERL_ABILITY] * count)
    if "reward_model" in names:
        columns["reward_model"] = rows.column("reward_model")
    else:
        truths = [{"style": "rule", "ground_truth": None if a is None else str(a)} for a in answers]
        columns["reward_model"] = pa.array(truths, REWARD_MODEL)
    columns[EXTRA_INFO] = _extra_info(rows, dataset)
    warn_unknown_data_sources(tuple(sorted(set(columns["data_source"].to_pylist()) - {None})))
    return columns


def _extra_info_fields(inputs: pa.Schema) -> list[pa.Field]:
    user = _user_info_type(inputs)
    kept = [field for field in user if field.name != GC_ID_KEY] if user is not None else []
    added = [field for field in _DEFAULT_INFO if user is None or user.get_field_index(field.name) < 0]
    return [*kept, *added, pa.field(GC_ID_KEY, pa.int64())]


def _user_info_type(inputs: pa.Schema) -> pa.StructType | None:
    if EXTRA_INFO not in inputs.names:
        return None
    kind = inputs.field(EXTRA_INFO).type
    if not pa.types.is_struct(kind):
        raise ConfigError(
            f"the scored data's extra_info column holds {kind}, but verl reads extra_info as an object of keys; "
            "rename that column or make it an object"
        )
    return kind


def _extra_info(rows: pa.Table, dataset: str) -> pa.StructArray:
    """The user's extra_info, key for key (a null row: every key null), plus `gc_id` and any missing defaults."""
    count = len(rows)
    gc_ids = rows.column("gc_id").combine_chunks().cast(pa.int64())
    user = _user_info_type(rows.schema)
    children: dict[str, pa.Array] = {}
    if user is not None:
        info = rows.column(EXTRA_INFO).combine_chunks()
        children = dict(zip([field.name for field in user], info.flatten(), strict=True))
    defaults = {"index": gc_ids, "split": pa.array(["train"] * count), "dataset": pa.array([dataset] * count)}
    fields = _extra_info_fields(rows.schema)
    arrays = [gc_ids if f.name == GC_ID_KEY else children.get(f.name, defaults.get(f.name)) for f in fields]
    return pa.StructArray.from_arrays(arrays, fields=fields)


@functools.cache
def warn_unknown_data_sources(sources: tuple[str, ...]) -> None:
    """Where verl is importable, warn once about data_sources its `default_compute_score` has no scorer for:
    verl's default reward would stop at the first such row."""
    try:
        from verl.utils.reward_score import default_compute_score
    except ImportError:  # no verl here (the export may be made on another machine than the training)
        return
    unknown = [source for source in sources if not _known_to_verl(default_compute_score, source)]
    if unknown:
        shown = ", ".join(repr(source) for source in unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        logger.warning(
            "verl's default_compute_score has no scorer for data_source %s, so verl's default reward stops at "
            "those rows; set reward.custom_reward_function (gaincurate's: path=pkg://gaincurate.integrations."
            "verl_reward name=compute_score, for boxed answers)",
            shown,
        )


def _known_to_verl(default_compute_score: Any, source: str) -> bool:
    """verl dispatches on data_source and raises NotImplementedError for one it does not know; any other outcome
    (a score, or an error from the scorer it chose on the empty probe) means it has a scorer."""
    try:
        default_compute_score(source, "", "")
    except NotImplementedError:
        return False
    except Exception:  # the chosen scorer refused the empty probe: it exists
        return True
    return True
