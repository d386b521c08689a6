"""Benchmark: generated tokens and wall-clock per step of GRPO with and without rollout replay.

Trains the same tiny random Llama twice in one process on CPU, first with TRL's plain GRPOTrainer
and then with ReplayGRPOTrainer, from the same seed and data, and prints a table (stdout); `--out`
also writes the numbers as JSON. Steps before the buffer first fills (warm-up) are reported apart.

    gaincurate bench replay --steps 12 --out bench.json

The workload (a word-level tokenizer, a random Llama, plain-text prompts and a parity reward) is built
here, offline; the replay tests (tests/replay/) train on the same builders.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gaincurate.errors import OptionValueError
from gaincurate.errors import setting as setting_name
from gaincurate.settings import at_least, setting

WORDS = tuple(f"w{i}" for i in range(60))
_SPECIAL = ("<pad>", "<eos>", "<unk>")


def build_tokenizer():
    """A word-level tokenizer over `WORDS`, built offline; pad id 0, eos id 1, the words from id 3."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(_SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_model(tokenizer, *, hidden_size: int = 32, layers: int = 2, seed: int = 0):
    """A random Llama small enough for CPU tests."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def build_prompts(count: int, words_per_prompt: int = 3):
    """`count` distinct plain-text prompts of `WORDS`."""
    from datasets import Dataset

    prompts = [" ".join(WORDS[(i + k * 7) % len(WORDS)] for k in range(words_per_prompt)) for i in range(count)]
    return Dataset.from_dict({"prompt": prompts})


def parity_reward(completion_ids: list[list[int]], **_: Any) -> list[float]:
    """1 when the completion's token ids sum to an odd number: varied rewards from a random model."""
    return [float(sum(ids) % 2) for ids in completion_ids]


class _GenerationCounter:
    """Mixin recording, per generation call, the trainer step, prompt rows, generated tokens and seconds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generation_calls: list[dict[str, Any]] = []

    def _generate(self, prompts: list):
        start = time.perf_counter()
        result = super()._generate(prompts)
        completion_ids = result[1]
        self.generation_calls.append(
            {
                "step": self.state.global_step,
                "rows": len(prompts),
                "tokens": sum(len(ids) for ids in completion_ids),
                "seconds": time.perf_counter() - start,
            }
        )
        return result


class _LogpsTimer:
    """Mixin timing replay's own log-prob forward passes (mu for fresh rows, pi_old for replayed ones)."""

    def _policy_logps(self, *args: Any, **kwargs: Any):
        start = time.perf_counter()
        result = super()._policy_logps(*args, **kwargs)
        step = self.state.global_step
        self.logps_seconds[step] = self.logps_seconds.get(step, 0.0) + time.perf_counter() - start
        return result


HEADS = 2  # the random Llama's attention heads (`build_model`)


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    # Two steps at least: the baseline's first step (its compile and warm-up) is left out of its summary.
    steps: int = setting(12, "Optimizer steps per run.", check=at_least(2))
    batch_prompts: int = setting(8, "Prompts per step.", check=at_least(1))
    num_generations: int = setting(4, "Completions per prompt.", check=at_least(2))
    completion_length: int = setting(64, "Most tokens per completion.", check=at_least(1))
    hidden_size: int = setting(128, "The random Llama's width: a multiple of 4.", check=at_least(2 * HEADS))
    layers: int = setting(4, "The random Llama's depth.", check=at_least(1))
    fresh_fraction: float = setting(0.5, "Replay's share of fresh prompts per step, in (0, 1].")
    # One thread: on a shared 2-core machine a second thread mostly measures contention.
    threads: int = setting(1, "Torch CPU threads.", check=at_least(1))
    seed: int = setting(0, "Seed of the model, data and both runs.")

    def __post_init__(self) -> None:
        for field in fields(self):
            check = field.metadata.get("check")
            if check is not None:
                check(setting_name(field.name), getattr(self, field.name))
        if self.hidden_size % (2 * HEADS):
            # Each head's width is even, as rotary embeddings rotate its halves.
            raise OptionValueError(
                f"{setting_name('hidden_size', self.hidden_size)} must be a multiple of {2 * HEADS}: the model has "
                f"{HEADS} attention heads, each of an even width"
            )
        if not 0 < self.fresh_fraction <= 1:
            raise OptionValueError(
                f"{setting_name('fresh_fraction', self.fresh_fraction)} is outside (0, 1]; 0.5 generates half of each "
                "step's prompts fresh, 1 replays nothing"
            )


def _train(config: BenchConfig, replay: bool, output_dir: Path) -> dict[str, Any]:
    import torch
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from gaincurate.integrations.trl.replay import ReplayConfig, ReplayGRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self._start)

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, hidden_size=config.hidden_size, layers=config.layers, seed=config.seed)
    args = GRPOConfig(
        output_dir=str(output_dir),
        use_cpu=True,
        per_device_train_batch_size=config.batch_prompts * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=config.completion_length,
        max_steps=config.steps,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=False,  # fp32: the plain CPU path, the same for both runs
        seed=config.seed,
    )
    timer = StepTimer()
    common = {
        "model": model,
        "reward_funcs": parity_reward,
        "args": args,
        "train_dataset": build_prompts(4 * config.batch_prompts * config.steps),
        "processing_class": tokenizer,
        "callbacks": [timer],
    }
    torch.manual_seed(config.seed)
    if replay:
        trainer_class = type("CountingReplayTrainer", (_GenerationCounter, _LogpsTimer, ReplayGRPOTrainer), {})
        trainer = trainer_class(
            **common,
            replay_config=ReplayConfig(replay_fresh_fraction=config.fresh_fraction, replay_seed=config.seed),
        )
    else:
        trainer = type("CountingTrainer", (_GenerationCounter, GRPOTrainer), {})(**common)
    trainer.remove_callback(PrinterCallback)  # stdout carries the table only
    trainer.logps_seconds = {}
    trainer.train()

    calls = {call["step"]: call for call in trainer.generation_calls}
    per_step = [
        {
            "step": step,
            "seconds": seconds,
            "generation_seconds": calls[step]["seconds"],
            "replay_logps_seconds": trainer.logps_seconds.get(step, 0.0),
            "fresh_prompts": calls[step]["rows"] // config.num_generations,
            "generated_tokens": calls[step]["tokens"],
        }
        for step, seconds in enumerate(timer.seconds)
    ]
    full = config.batch_prompts
    warm = [s for s in per_step if s["fresh_prompts"] < full] if replay else per_step[1:]
    return {"per_step": per_step, "steady": _summary(warm), "all": _summary(per_step)}


def _summary(steps: list[dict[str, Any]]) -> dict[str, float]:
    if not steps:
        return {"steps": 0}
    return {
        "steps": len(steps),
        "fresh_prompts": statistics.mean(s["fresh_prompts"] for s in steps),
        "generated_tokens": statistics.mean(s["generated_tokens"] for s in steps),
        "seconds_mean": statistics.mean(s["seconds"] for s in steps),
        "seconds_median": statistics.median(s["seconds"] for s in steps),
        "generation_seconds_mean": statistics.mean(s["generation_seconds"] for s in steps),
        "replay_logps_seconds_mean": statistics.mean(s["replay_logps_seconds"] for s in steps),
    }


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Train without and with replay; return both runs' per-step numbers and summaries."""
    import torch
    import transformers
    import trl

    torch.set_num_threads(config.threads)
    machine = {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_before": os.getloadavg()[0],
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
    }
    with tempfile.TemporaryDirectory() as scratch:
        baseline = _train(config, replay=False, output_dir=Path(scratch) / "baseline")
        replay = _train(config, replay=True, output_dir=Path(scratch) / "replay")
    machine["load_average_after"] = os.getloadavg()[0]
    return {"config": asdict(config), "machine": machine, "baseline": baseline, "replay": replay}


def format_table(result: dict[str, Any]) -> str:
    base, replay = result["baseline"]["steady"], result["replay"]["steady"]
    lines = [
        "run       steps  fresh prompts/step  gen tokens/step  s/step mean  s/step median  generate s/step"
        "  replay logp s/step",
        *[
            f"{name:<9} {s['steps']:>5}  {s['fresh_prompts']:>18.1f}  {s['generated_tokens']:>15.1f}  "
            f"{s['seconds_mean']:>11.3f}  {s['seconds_median']:>13.3f}  {s['generation_seconds_mean']:>15.3f}"
            f"  {s['replay_logps_seconds_mean']:>18.3f}"
            if s["steps"]
            else f"{name:<9} {0:>5}  (no steps to summarise)"
            for name, s in (("baseline", base), ("replay", replay))
        ],
    ]
    if base["steps"] and replay["steps"]:
        lines.append(
            f"replay / baseline: tokens {replay['generated_tokens'] / base['generated_tokens']:.2f}x, "
            f"median step time {replay['seconds_median'] / base['seconds_median']:.2f}x "
            "(baseline: steps after the first; replay: steps after warm-up)"
        )
    else:  # replay fresh on every step (--fresh-fraction 1, or a buffer never filled) has no replayed step
        lines.append("replay / baseline: no comparison, as one run has no steps past its warm-up; raise --steps")
    return "\n".join(lines)
