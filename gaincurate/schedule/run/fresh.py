"""What the newest model says of the prompts a strategy asks about after an epoch: one home for every trainer path.

A strategy names the prompts (`Strategy.wants`) and what it needs of them (`about.needs`): fresh angle scores
(`FRESH_SCORES`: gain) and/or the policy's log-probability of each reference answer (`LIKELIHOOD`: probe). The
in-process curriculum (TRL, verl's sampler) measures with the live model, `schedule step` and verl's checkpoint hook
with the newest checkpoint; all of them call `measure` here.

    rescored = measure(strategy, scores_dir, ids, model=model, tokenizer=tokenizer)   # live
    rescored = measure(strategy, scores_dir, ids, checkpoint=path, nproc=2)           # a checkpoint folder
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.schedule.core import Rescored
from gaincurate.schedule.strategies.contract import FRESH_SCORES, LIKELIHOOD, Strategy

MEASURED = frozenset({FRESH_SCORES, LIKELIHOOD})  # what `measure` can give a strategy


def wants_fresh(strategy: Strategy) -> bool:
    """Whether the strategy reads anything the newest model says (fresh scores or answer likelihoods)."""
    return bool(strategy.about.needs & MEASURED)


def measure(
    strategy: Strategy,
    scores_dir: Path,
    ids: np.ndarray,
    *,
    model: Any = None,
    tokenizer: Any = None,
    checkpoint: str | Path | None = None,
    nproc: int = 1,
) -> Rescored:
    """Fresh scores and/or answer likelihoods of `ids` (gc_id) with the live model or a checkpoint, as `strategy`
    needs them."""
    from gaincurate import scoring

    ids = np.asarray(ids, dtype=np.int64)
    listed = [int(i) for i in ids]
    scores = likelihood = None
    if FRESH_SCORES in strategy.about.needs:
        scores = scoring.rescore(scores_dir, listed, checkpoint=checkpoint, model=model, tokenizer=tokenizer,
                                 nproc=nproc)  # fmt: skip
        scores = np.asarray(scores, dtype=np.float64)
    if LIKELIHOOD in strategy.about.needs:
        from gaincurate.scoring.likelihood import likelihoods

        template = strategy.about.answer_template
        likelihood = likelihoods(scores_dir, listed, checkpoint=checkpoint, model=model, tokenizer=tokenizer,
                                 template=template)  # fmt: skip
    return Rescored(ids, scores, likelihood)
