"""What `gaincurate rollout` is asked to do (`RolloutConfig`, checked on construction) and what it did."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.model import MODEL_DTYPES
from gaincurate.rollout.answers import ANSWER_FORMATS
from gaincurate.settings import at_least, check_fields, device_name, setting


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """What `gaincurate rollout` was asked to do (the settings a resume must match are in `OUT.rollout.json`); the
    command's options are these fields (`gaincurate.settings.setting`)."""

    scores: str = setting(help="A directory written by `gaincurate score`.")
    out: str = setting(help="Feedback JSON lines to write (resumed if present).", flags=("--out", "-o"), cli="path")
    model: str | None = setting(None, "Model to sample.", shown="the scores manifest's")
    samples: int = setting(4, "Rollouts per prompt.", check=at_least(1))
    reference_size: int | None = setting(
        None, "Roll out a seeded sample of K prompts.", check=at_least(1), shown="every prompt"
    )
    ids_file: str | None = setting(None, "File of gc_ids to roll out, one per line.", flags=("--ids",), cli="path")
    max_new_tokens: int = setting(256, "Longest completion in tokens.", check=at_least(1))
    temperature: float = setting(0.7, "Sampling temperature (0: greedy).", check=at_least(0))
    seed: int = setting(0, "Seed of the reference sample and of every rollout.", check=at_least(0))
    answer_column: str | None = setting(None, "Gold answers.", shown="the manifest's")
    answer_format: str = setting(  # see gaincurate.rollout.answers
        "boxed",
        "boxed: the last \\boxed{} is the answer (as GRPO rewards check); any: math-verify finds it (box, "
        "'the answer is', last expression).",
        choices=ANSWER_FORMATS,
    )
    # Sequences per generate call, rounded down to whole prompt groups.
    batch_size: int = setting(32, "Sequences per generate call (whole prompt groups).", check=at_least(1))
    dtype: str = setting(
        "auto",
        "auto: bfloat16 where the device runs it fast (CUDA without bf16: float16), else float32.",
        choices=MODEL_DTYPES,
    )
    device: str = setting("auto", "auto, cpu or cuda[:N].", check=device_name)
    threads: int | None = setting(  # torch intra-op threads while generating
        None,
        "CPU threads for torch (1 is often fastest on a busy shared CPU).",
        check=at_least(1),
        shown="torch's choice",
    )
    overwrite: bool = setting(False, "Start --out again instead of resuming.", flags=("--overwrite",))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.reference_size is not None and self.ids_file is not None:
            raise ConfigError("pass either --reference-size or --ids, not both")

    @property
    def prompts_per_batch(self) -> int:
        return max(1, self.batch_size // self.samples)


@dataclass
class RolloutResult:
    out: str
    prompts: int
    prompts_resumed: int
    rollouts_written: int
    mean_reward: float | None  # over the whole output file
    generated_tokens: int
    truncated_rollouts: int  # rollouts that reached max_new_tokens without stopping
    generate_seconds: float
    load_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float | None:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else None

    @property
    def rollouts_per_second(self) -> float | None:
        return self.rollouts_written / self.generate_seconds if self.generate_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_second": self.tokens_per_second,
            "rollouts_per_second": self.rollouts_per_second,
        }
