"""The fidelity gate: a lossy dtype may be chosen by `--dtype auto` only if it ranks prompts like float32.

The check scores `GATE_PROMPTS` fixed prompts (the first rows of the bundled sample set, rendered with
the run's own prompt format, site and layer) once in float32 and once in the candidate dtype, and
requires both:

* the Spearman correlation of the two score vectors is at least `MIN_SPEARMAN` (0.995), and
* no prompt's score moves by more than `MAX_DIFF_FRACTION` (0.25) of the standard deviation of the
  float32 scores over the same prompts. A bound relative to the spread is what keeps the ranking and
  any threshold on the score meaningful; an absolute bound would be lax for one model and strict for
  another. With SmolLM2-135M that is 0.25 x 0.056 = 0.014: bf16 moved at most 0.005, int8 0.04.

The verdict is cached with the dtype timings (`gaincurate.scoring.tuning_cache`), so it runs once per
machine, model and prompt format.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from gaincurate.metrics import spearman
from gaincurate.prompts import EncodedPrompt, PromptEncoder
from gaincurate.scoring.config import ScoreConfig

GATE_PROMPTS = 64
GATE_BATCH_TOKENS = 512  # the gate compares dtypes, not batch sizes: one fixed size for both
MIN_SPEARMAN = 0.995
MAX_DIFF_FRACTION = 0.25


def verdict(reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """The gate figures for a candidate's scores against float32's on the same prompts."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    both = np.isfinite(reference) & np.isfinite(candidate)
    agree_on_nan = bool(np.array_equal(np.isfinite(reference), np.isfinite(candidate)))
    correlation = spearman(reference, candidate)
    max_diff = float(np.max(np.abs(reference[both] - candidate[both]))) if both.any() else float("nan")
    bound = MAX_DIFF_FRACTION * float(np.std(reference[both])) if both.any() else 0.0
    passed = agree_on_nan and correlation >= MIN_SPEARMAN and max_diff <= bound
    return {
        "passed": bool(passed),
        "spearman": correlation,
        "min_spearman": MIN_SPEARMAN,
        "max_abs_diff": max_diff,
        "bound": bound,
        "prompts": int(len(reference)),
    }


def gate_prompts(encoder: PromptEncoder) -> list[EncodedPrompt]:
    """The fixed gate prompts: the first `GATE_PROMPTS` rows of the bundled sample, in the run's format."""
    from gaincurate.data import load_sample

    return encoder.encode([row["problem"] for row in load_sample()[:GATE_PROMPTS]])


def gate_scores(model: Any, config: ScoreConfig, encoder: PromptEncoder, prompts: list[EncodedPrompt]) -> np.ndarray:
    """Scores of `prompts` through the same engine as a run; the model is left unpruned and unhooked."""
    from gaincurate.model import SiteForward
    from gaincurate.scoring.engine import Scorer, find_shared_prefix

    site = SiteForward(model, layer=config.layer, site=config.site, prune=False)
    try:
        prefix = find_shared_prefix(encoder) if config.prefix_cache else None
        scorer = Scorer(site, device="cpu", backend="torch", config=config.replace(embed=False), prefix=prefix,
                        batch_tokens=GATE_BATCH_TOKENS)  # fmt: skip
        return scorer.score(prompts)["score"]
    finally:
        site.close()


class FidelityGate:
    """`gate(dtype)`: the verdict for one lossy dtype; float32 scores are computed once, on first use."""

    def __init__(self, model: Any, config: ScoreConfig, encoder: PromptEncoder) -> None:
        self.model, self.config, self.encoder = model, config, encoder
        self._prompts: list[EncodedPrompt] | None = None
        self._reference: np.ndarray | None = None

    def __call__(self, dtype: str) -> dict[str, Any]:
        from gaincurate.scoring.dtype import convert_model

        if self._prompts is None:
            self._prompts = gate_prompts(self.encoder)
            self._reference = gate_scores(self.model, self.config, self.encoder, self._prompts)
        candidate = convert_model(copy.deepcopy(self.model), dtype)
        try:
            return verdict(self._reference, gate_scores(candidate, self.config, self.encoder, self._prompts))
        finally:
            del candidate
