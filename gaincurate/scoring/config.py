"""The scoring configuration, built from defaults, then `--config FILE`, then flags.

Two frozen dataclasses, each field declared once with its help (`gaincurate.settings.setting`), from which
`gaincurate score`'s options are generated. `ScoreConfig` holds what the scores depend on; every field that can change a
score is part of the fingerprint stored in the manifest, so a resumed run can prove it computes the same
thing, and a clashing run is refused instead of mixed in. `RunOptions` only steers a run (where it writes,
whether it may replace, which array part this process is) and never changes a score.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass
from typing import Any

from gaincurate import errors
from gaincurate.columns import VERL_ANSWER_PATH, VERL_PROMPT_COLUMN
from gaincurate.config_file import describe, matches
from gaincurate.data import DEFAULT_ANSWER_COLUMN, DEFAULT_PROMPT_COLUMN
from gaincurate.errors import ConfigError
from gaincurate.model import MODEL_DTYPES, SITES
from gaincurate.prompts import DEFAULT_FEW_SHOT, DEFAULT_SYSTEM_PROMPT, PromptFormat
from gaincurate.settings import at_least, check_fields, device_name, setting
from gaincurate.shards import DEFAULT_SHARD_ROWS

BACKENDS = ("auto", "torch", "triton")
DEFAULT_MAX_LENGTH = 4096  # prompt tokens kept, capped at a shorter context window (`prompt_tokens`)
DEBIAS = ("none", "length")


@dataclass(frozen=True)
class Tolerance:
    """How far stored scores may move when only the cut of the work or the CPU's kernels change."""

    score: float  # absolute, on gc_intra, gc_inter and gc_score
    embedding: float  # on gc_embedding: |got - expected| / |expected| per row (L2 norms)


# By dtype, for --shard-rows, --batch-tokens, --threads, torchrun ranks and another x86 CPU: BLAS picks its kernel by
# the product's shape and the thread count, so bytes hold only for the same command on the same machine
# (docs/shards.md, "What the scores promise", gives the largest moves measured). float16 and int8: not measured.
SCORE_TOLERANCE = {"float32": Tolerance(score=1e-5, embedding=2e-3), "bfloat16": Tolerance(score=1e-2, embedding=5e-2)}


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    """What the scores depend on. Each field's help is `gaincurate score --help`'s (`gaincurate.settings.setting`)."""

    dataset: str | None = setting(
        None,
        "A .json/.jsonl/.parquet/.arrow/.csv file, a save_to_disk folder or a Hub id.",
        shown="the bundled sample math prompts",
    )
    split: str | None = setting(None, "Dataset split (Hub ids and saved DatasetDicts).")
    prompt_column: str = setting(
        DEFAULT_PROMPT_COLUMN,
        "Column holding the question; A.B reads field B of struct column A.",
        shown=f"{DEFAULT_PROMPT_COLUMN}; verl's: {VERL_PROMPT_COLUMN}",  # verl's when the file is verl's and lacks it
    )
    answer_column: str | None = setting(
        DEFAULT_ANSWER_COLUMN,
        "Column holding the reference answer (for trainer exports), or a struct's field (`reward_model.ground_truth`).",
        shown=f"{DEFAULT_ANSWER_COLUMN}; verl's layout: {VERL_ANSWER_PATH}",
    )
    limit: int | None = setting(None, "Score only the first N rows.", check=at_least(1))
    model: str | None = setting(
        None, "Hub id, local model folder, LoRA adapter folder or .gguf file.", shown="embedded SmolLM2-135M"
    )
    system_prompt: str | None = setting(
        DEFAULT_SYSTEM_PROMPT, "System prompt text.", shown="a step-by-step, \\boxed{} one"
    )
    few_shot: tuple[dict[str, str], ...] = setting(
        DEFAULT_FEW_SHOT, "JSON file: a list of {question, answer} turns.", shown="one worked example", cli="path"
    )
    chat_template: bool = setting(True, "Wrap prompts in the model's chat template; --no-chat-template renders plain "
                                  "'Question:/Answer:' text.", flags=("--no-chat-template",))  # fmt: skip
    layer: int = setting(-1, "Decoder layer of the site; negative counts from the end.")
    site: str = setting("mlp-input", "Where the hidden states are read.", choices=SITES)
    max_length: int | None = setting(DEFAULT_MAX_LENGTH, "Truncate prompts to N tokens, context first; at most the "
                                     "model's context window.", check=at_least(2))  # fmt: skip
    batch_tokens: int | None = setting(None, "Padded tokens per forward batch (rows of one width). Changes speed; "
                                       "scores only within the tolerance in docs/shards.md.", check=at_least(1),
                                       shown="measured on CPU, from free memory on CUDA")  # fmt: skip
    prefix_cache: bool = setting(True, "Run the shared system/few-shot prefix once and reuse it; --no-prefix-cache "
                                 "runs it for every row.", flags=("--no-prefix-cache",))  # fmt: skip
    dtype: str = setting("auto", "auto: on CPU, the fastest that ranks like float32, measured once here and cached "
                         "(the run prints it; pass it to pin it); int8: torchao's dynamic quantization of the linears.",
                         choices=(*MODEL_DTYPES, "int8"))  # fmt: skip
    device: str = setting("auto", "auto, cpu or cuda[:N].", check=device_name)
    backend: str = setting("auto", "Segment-sum backend.", choices=BACKENDS)
    inter_weight: float = setting(1.0, "w in score = intra + w * inter.")
    debias: str = setting("none", "length: rank by the residual after a log-length fit.", choices=DEBIAS)
    # probe, the default strategy, and dots read it; the same forward pass, so it costs only storage.
    embed: bool = setting(True, "Store the mean-pooled question embedding (dots needs it); --no-embed leaves it out "
                          "(2 bytes x hidden size per row).")  # fmt: skip
    embed_layer: int | None = setting(None, "Layer for --embed.", shown="the scoring layer")

    def __post_init__(self) -> None:
        check_types(self)
        check_fields(self)
        object.__setattr__(self, "inter_weight", float(self.inter_weight))  # 1 and 1.0 must fingerprint alike
        if not math.isfinite(self.inter_weight):
            raise ConfigError(f"--inter-weight must be a finite number; got {self.inter_weight}")
        # Normalise few-shot rows so equal configs compare (and hash) equal.
        object.__setattr__(self, "few_shot", tuple(dict(s) for s in self.few_shot))
        PromptFormat(system_prompt=self.system_prompt, few_shot=self.few_shot, chat_template=self.chat_template)

    @property
    def prompt_format(self) -> PromptFormat:
        return PromptFormat(system_prompt=self.system_prompt, few_shot=self.few_shot, chat_template=self.chat_template)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["few_shot"] = [dict(s) for s in self.few_shot]
        return data

    def result_fields(self) -> dict[str, Any]:
        """The fields that determine the stored scores: all but `debias`, which only re-ranks them afterwards."""
        return {k: v for k, v in self.to_dict().items() if k != "debias"}

    def replace(self, **changes: Any) -> ScoreConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How one run is carried out; none moves a score beyond SCORE_TOLERANCE, so none is fingerprinted."""

    out: str = setting("scores", "Output directory for shards and manifest.", flags=("--out", "-o"))
    overwrite: bool = setting(False, "Replace an existing scores directory.", flags=("--overwrite",))
    # The library never prints; kept so the manifest records how the run was asked for (the CLI's --quiet).
    quiet: bool = False
    num_shards: int | None = setting(
        None, "Array jobs: split the work into K parts (with --shard-index).", check=at_least(1)
    )
    shard_index: int | None = setting(
        None, "Array jobs: which part (0..K-1) this process writes; then `gaincurate merge`."
    )
    threads: int | None = setting(None, "Torch CPU threads.", check=at_least(1), shown="one per core")
    # The shard layout moves scores only within SCORE_TOLERANCE (a row's padding depends on its own length only:
    # engine.padded_width), so it is checked against the directory, not fingerprinted.
    shard_rows: int | None = setting(
        None,
        "Rows per shard: the unit of resume. Scores move only within the tolerance in docs/shards.md.",
        check=at_least(1),
        shown=f"the --out directory's, else {DEFAULT_SHARD_ROWS}",
    )
    allow_missing_answers: bool = setting(
        False,
        "Score rows without an answer (counted in the manifest) instead of refusing.",
        flags=("--allow-missing-answers",),
    )
    drop_duplicates: bool = setting(
        False,
        "Keep only the first row of each repeated prompt text (repeats are counted and warned about otherwise); "
        "gc_id then counts the rows kept.",
        flags=("--drop-duplicates",),
    )

    def __post_init__(self) -> None:
        check_types(self)
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> RunOptions:
        return dataclasses.replace(self, **changes)


def check_types(instance: Any) -> None:
    """Refuse a field value of the wrong type (say `"ten"` for `limit` from a config file or a manifest) in one line.

    The `--config FILE` type check (`config_file.matches`), so a field is judged the same from a file, a manifest
    or Python: strict like JSON, `true` is no number and `1.5` no whole number. `PromptFormat` checks the keys
    of `few_shot`'s tables.
    """
    hints = _hints(type(instance))
    for field in dataclasses.fields(instance):
        value, hint = getattr(instance, field.name), hints[field.name]
        if not matches(value, hint):
            shown = json.dumps(value, default=repr)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ConfigError(f"--{field.name.replace('_', '-')} must be {describe(hint)}; got {shown}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def manifest_config(config: ScoreConfig, options: RunOptions) -> dict[str, Any]:
    """The manifest's `config`: every setting of both, without the array-part split (one directory, many parts)."""
    return {**config.to_dict(), **options.replace(num_shards=None, shard_index=None).to_dict()}


def split_config(values: dict[str, Any]) -> tuple[ScoreConfig, RunOptions]:
    """A flat mapping (a manifest's `config`, a config file with flags applied) as `ScoreConfig` + `RunOptions`."""
    run_fields = {f.name for f in dataclasses.fields(RunOptions)}
    values = dict(values)
    if "few_shot" in values:
        values["few_shot"] = tuple(values["few_shot"])
    options = RunOptions(**{k: v for k, v in values.items() if k in run_fields})
    return ScoreConfig(**{k: v for k, v in values.items() if k not in run_fields}), options


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> tuple[ScoreConfig, RunOptions]:
    """Defaults, then the config file, then the flags that were actually given (not None)."""
    merged = dict(file_values)
    merged.update({k: v for k, v in flag_values.items() if v is not None})
    return split_config(merged)


def prompt_tokens(max_length: int | None, model_config: Any) -> int | None:
    """The tokens a prompt keeps: `max_length`, at most the model's context window (`max_position_embeddings`),
    past which the model has no positions. The default is capped at a shorter window; a `max_length` asked for
    beyond it is refused, since the model cannot read what it asks for."""
    window = getattr(model_config, "max_position_embeddings", None)
    if not window or (max_length is not None and max_length <= window):
        return max_length
    if max_length is not None and max_length != DEFAULT_MAX_LENGTH:
        raise ConfigError(
            f"{errors.setting('max_length', max_length)} is beyond the model's context window of {window} tokens, "
            f"past which it has no positions; use {errors.setting('max_length', window)} or less"
        )
    return window
