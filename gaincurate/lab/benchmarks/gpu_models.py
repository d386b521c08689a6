"""The models `gaincurate bench gpu` scores and how it scores them: random-weight Qwen2 configs saved with the
embedded model's tokenizer (nothing is downloaded), and a scoring run timed after a warm-up.

Shared by `gpu` (the scoring cases) and `gpu_paths` (rollout, likelihood, packed against padded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY = {"tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2)}  # fmt: skip
# SmolLM2-135M's shape, the embedded default: the bundled prompts scored cold show what a first run pays.
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3)  # fmt: skip


def bench_tokenizer(folder: str | None) -> Any:
    """The tokenizer the bench's models take: the one saved in `folder`, else the embedded model's (a GPU machine
    that cannot carry the embedded GGUF takes its tokenizer as a saved folder)."""
    from gaincurate.model import ModelSource, load_tokenizer, resolve_source

    return load_tokenizer(resolve_source(None) if folder is None else ModelSource("folder", folder, None, folder))


def build_model_folder(folder: Path, shape: dict, dtype_name: str, device: str = "cpu",
                       tokenizer: str | None = None) -> Path:  # fmt: skip
    """A random-weight model of `shape` saved in `folder` with `bench_tokenizer(tokenizer)`, initialised on `device`
    (a 7B-class model takes minutes to initialise on a CPU, seconds on a GPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = bench_tokenizer(tokenizer)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config(shape, tokenizer), dtype=getattr(torch, dtype_name))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # scoring reads the memory free when it starts: hand these weights' memory back
    return folder


def model_config(shape: dict, tokenizer: Any) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=8192, tie_word_embeddings=True, **shape)


WARMUP_ROWS = 8


def warm_score(config: Any, out: Path) -> dict:
    """`config` scored into `out` after its first WARMUP_ROWS rows (compile, allocator, caches): the manifest."""
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions

    score(config.replace(limit=WARMUP_ROWS), RunOptions(out=str(out.with_name(out.name + "-warmup")), quiet=True))
    return score(config, RunOptions(out=str(out), quiet=True))
