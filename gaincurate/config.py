"""The scoring configuration: one frozen dataclass, built from defaults, then `--config FILE`, then flags.

Every field that can change a score is part of the fingerprint stored in the manifest, so a resumed
run can prove it computes the same thing, and a clashing run is refused instead of mixed in.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.prompts import DEFAULT_FEW_SHOT, DEFAULT_SYSTEM_PROMPT, PromptFormat

BACKENDS = ("auto", "torch", "triton")
DEBIAS = ("none", "length")

# Fields that only steer the run, not its result.
_OPERATIONAL = {"quiet", "overwrite", "out", "num_shards", "shard_index"}


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    dataset: str | None = None  # None: the bundled sample prompt set
    split: str | None = None
    prompt_column: str = "problem"
    answer_column: str | None = "answer"
    limit: int | None = None
    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    few_shot: tuple[dict[str, str], ...] = DEFAULT_FEW_SHOT
    chat_template: bool = True
    layer: int = -1
    site: str = "mlp-input"
    max_length: int | None = 4096
    batch_tokens: int | None = None  # None: 512 on CPU, 16384 on CUDA (see resolve_batch_tokens)
    prefix_cache: bool = True
    dtype: str = "auto"
    device: str = "auto"
    backend: str = "auto"
    inter_weight: float = 1.0
    debias: str = "none"
    embed: bool = False
    embed_layer: int | None = None  # None: the scoring layer
    shard_size: int = 1000
    num_shards: int | None = None  # array jobs: this process writes part `shard_index` of `num_shards`
    shard_index: int | None = None
    out: str = "scores"
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1; got {self.limit}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"--max-length must be at least 2; got {self.max_length}")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ConfigError(f"--batch-tokens must be positive; got {self.batch_tokens}")
        if self.shard_size < 1:
            raise ConfigError(f"--shard-size must be positive; got {self.shard_size}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}; got {self.backend}")
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
        """The fields that determine the scores (everything but output and display options)."""
        return {k: v for k, v in self.to_dict().items() if k not in _OPERATIONAL and k != "debias"}

    def replace(self, **changes: Any) -> ScoreConfig:
        return dataclasses.replace(self, **changes)


def load_config_file(path: str | None) -> dict[str, Any]:
    """Read `--config FILE` (JSON or TOML); unknown keys are an error, not silently ignored."""
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config {path} does not exist")
    try:
        if file.suffix == ".toml":
            import tomllib

            data = tomllib.loads(file.read_text())
        else:
            data = json.loads(file.read_text())
    except ValueError as error:
        raise ConfigError(f"--config {path} cannot be parsed ({error})") from None
    known = {f.name for f in dataclasses.fields(ScoreConfig)}
    keys = {key.replace("-", "_") for key in data}
    unknown = sorted(keys - known)
    if unknown:
        raise ConfigError(f"--config {path} has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    data = {key.replace("-", "_"): value for key, value in data.items()}
    if "few_shot" in data:
        data["few_shot"] = tuple(data["few_shot"])
    return data


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> ScoreConfig:
    """Defaults, then the config file, then the flags that were actually given (not None)."""
    merged = dict(file_values)
    merged.update({k: v for k, v in flag_values.items() if v is not None})
    return ScoreConfig(**merged)


def resolve_batch_tokens(batch_tokens: int | None, device: str) -> int:
    """The padded-token budget per forward batch.

    On CPU, with the shared prefix cached, 512 suffix tokens per batch measured about 30% faster than
    2,048 (cache-sized matmuls on 2 cores; docs/benchmarks.md); GPUs need far larger batches to fill.
    """
    if batch_tokens is not None:
        return batch_tokens
    return 16384 if device.startswith("cuda") else 512
