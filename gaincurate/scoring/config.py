"""The scoring configuration, built from defaults, then `--config FILE`, then flags.

Two frozen dataclasses. `ScoreConfig` holds what the scores depend on; every field that can change a
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

from gaincurate.config_file import describe, matches
from gaincurate.data import DEFAULT_ANSWER_COLUMN, DEFAULT_PROMPT_COLUMN
from gaincurate.errors import ConfigError
from gaincurate.prompts import DEFAULT_FEW_SHOT, DEFAULT_SYSTEM_PROMPT, PromptFormat

BACKENDS = ("auto", "torch", "triton")
DEBIAS = ("none", "length")
# Old setting names still read from config files and manifests: `shard_size` became `RunOptions.shard_rows`.
ALIASES = {"shard_size": "shard_rows"}
# auto: measured on CPU (gaincurate/scoring/dtype.py); int8 is torchao's dynamic quantization of the linears.
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    dataset: str | None = None  # None: the bundled sample prompt set
    split: str | None = None
    prompt_column: str = DEFAULT_PROMPT_COLUMN  # verl's `prompt` when the file is verl's and lacks it
    answer_column: str | None = DEFAULT_ANSWER_COLUMN  # a dotted path reads a struct's field
    limit: int | None = None
    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    few_shot: tuple[dict[str, str], ...] = DEFAULT_FEW_SHOT
    chat_template: bool = True
    layer: int = -1
    site: str = "mlp-input"
    max_length: int | None = 4096
    batch_tokens: int | None = None  # None: measured on CPU (scoring/batch_size.py), 16384 on CUDA
    prefix_cache: bool = True
    dtype: str = "auto"
    device: str = "auto"
    backend: str = "auto"
    inter_weight: float = 1.0
    debias: str = "none"
    embed: bool = True  # dots, the default strategy, reads it; the same forward pass, so it costs only storage
    embed_layer: int | None = None  # None: the scoring layer

    def __post_init__(self) -> None:
        check_types(self)
        object.__setattr__(self, "inter_weight", float(self.inter_weight))  # 1 and 1.0 must fingerprint alike
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1; got {self.limit}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"--max-length must be at least 2; got {self.max_length}")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ConfigError(f"--batch-tokens must be positive; got {self.batch_tokens}")
        if not math.isfinite(self.inter_weight):
            raise ConfigError(f"--inter-weight must be a finite number; got {self.inter_weight}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}; got {self.backend}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}; got {self.dtype}")
        if self.debias not in DEBIAS:
            raise ConfigError(f"--debias must be one of {', '.join(DEBIAS)}; got {self.debias}")
        if self.site not in ("mlp-input", "residual"):
            raise ConfigError(f"--site must be mlp-input or residual; got {self.site}")
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
    """How one run is carried out; none of these changes a score, so none is fingerprinted."""

    out: str = "scores"
    overwrite: bool = False
    quiet: bool = False  # the library never prints; kept so the manifest records how the run was asked for
    num_shards: int | None = None  # array jobs: this process writes part `shard_index` of `num_shards`
    shard_index: int | None = None
    threads: int | None = None  # torch CPU threads; None: torch's default (one per core)
    # Rows per shard, the unit of resume; None: what the --out directory was started with, else 1,000.
    # The shard layout changes no score, so it is checked against the directory, not fingerprinted.
    shard_rows: int | None = None
    # Score rows whose answer is missing (counted in the manifest's `answers`) instead of refusing the dataset.
    allow_missing_answers: bool = False

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("threads", "shard_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1; got {value}")

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
    for old, new in ALIASES.items():  # manifests and config files written before the rename
        if old in values:
            values.setdefault(new, values.pop(old))
    if "few_shot" in values:
        values["few_shot"] = tuple(values["few_shot"])
    options = RunOptions(**{k: v for k, v in values.items() if k in run_fields})
    return ScoreConfig(**{k: v for k, v in values.items() if k not in run_fields}), options


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> tuple[ScoreConfig, RunOptions]:
    """Defaults, then the config file, then the flags that were actually given (not None)."""
    merged = dict(file_values)
    merged.update({k: v for k, v in flag_values.items() if v is not None})
    return split_config(merged)


def resolve_batch_tokens(batch_tokens: int | None, device: str) -> int:
    """The padded-token budget per forward batch when it is not measured.

    A single CPU run measures it instead (gaincurate/scoring/batch_size.py); this fixed value serves GPUs,
    which need large batches to fill, and split CPU runs, whose parts must agree without measuring. On a
    2-core EPYC, 512 suffix tokens per batch ran about 30% faster than 2,048 (docs/benchmarks.md).
    """
    if batch_tokens is not None:
        return batch_tokens
    return 16384 if device.startswith("cuda") else 512
