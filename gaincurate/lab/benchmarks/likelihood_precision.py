"""How far a half dtype moves the answer likelihood the probe reads, against float32 (a check, not a test).

    python -m gaincurate.lab.benchmarks.likelihood_precision                # the embedded model on this CPU, bfloat16
    python -m gaincurate.lab.benchmarks.likelihood_precision --device cuda  # the same on a GPU

The embedded model with its real weights scores the likelihood of each bundled problem's reference answer (the
bundled 320, as `probe --likelihood` measures it: `scoring.likelihood.answer_logprobs`), once in float32 and once in
`--dtype`. It prints how far the half dtype moved them against how far they differ between problems: the median and
largest change in nats, the interquartile spread, and the Spearman correlation of the two. docs/strategies.md ("The
answer's likelihood on a GPU") keeps the figures.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def measure(device: str, dtype: str, model_folder: str | None = None) -> dict[str, float]:
    """The comparison on `device`, with the embedded model or the model in `model_folder`."""
    from gaincurate.data import load_sample
    from gaincurate.metrics import spearman
    from gaincurate.model import load_embedded, load_model, load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.config import ScoreConfig
    from gaincurate.scoring.likelihood import answer_ids, answer_logprobs

    def load(each: str) -> tuple:
        if model_folder is None:
            return load_embedded(dtype=each, device=device)
        source = resolve_source(model_folder)
        return load_model(source, dtype=each, device=device), load_tokenizer(source)

    rows, values = load_sample(), {}
    for each in ("float32", dtype):
        model, tokenizer = load(each)
        config = ScoreConfig()
        prompts = PromptEncoder(tokenizer, config.prompt_format, config.max_length).encode([r["problem"] for r in rows])
        completions = answer_ids(tokenizer, [r["answer"] for r in rows])
        values[each] = answer_logprobs(model, tokenizer, [p.input_ids for p in prompts], completions)
    exact, half = values["float32"], values[dtype]
    moved = np.abs(half - exact)
    low, high = np.percentile(exact, [25, 75])
    return {"device": device, "dtype": dtype, "rows": len(rows), "median_change": float(np.median(moved)),
            "largest_change": float(moved.max()), "interquartile_spread": float(high - low),
            "spearman": spearman(exact, half)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    args = parser.parse_args()
    print(json.dumps(measure(args.device, args.dtype)))


if __name__ == "__main__":
    main()
