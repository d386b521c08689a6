"""What each candidate feature of the probe says of the pool's measured pass rates.

On a task whose rows carry a reference solution (the chain task), the pool instrument (`diagnosis.PoolInstrument`)
also measures, at every draw and with the current policy, each likelihood the probe can read
(`gaincurate.scoring.likelihood.KINDS`: the bare answer, the reference solution per token, the answer after the
reference solution), and holds each against the measured pass rates:

* `spearman`: the feature's own rank correlation with the measured rates (the embedding has no single value: None);
* `fit_spearman`, `fit_auc`, `fit_aimed`: the epoch diagnosis (`diagnosis.epoch_diagnosis`: Spearman, the
  informative AUC, the aimed share) of the probe's fit cross-fitted on the pool: the probe's design (intercept, the
  likelihood's probability and log, free; the standardised embedding, penalised, the penalty chosen by
  `ridge.choose_strength`), fitted on the prompts at even gc_id positions with their measured rates and predicting
  the odd ones, and the other way round. It is the fit the probe would make had it measured half the pool, so the
  candidates are compared on equal data; `embedding` is that fit without a likelihood.

On every task the same instrument holds the angle score against the measurement, as a free column of the same fit
in place of a likelihood (each column standardised over the pool): `angle`, the scores folder's `gc_score` (what
the warm start's scoring pass gave, as `schedule` reads it without a refresh); `angle-parts`, its two parts
`gc_intra` and `gc_inter` as two columns; `angle-live`, `gc_score` re-scored with the live policy at each draw (what
the refresh would give). On a task whose rows carry no reference solution the only likelihood is `answer`.

And the embedding itself, re-computed with the live policy at each draw (the scoring pass's mean hidden state, its
layer and span, as `live_scores` computes it): `embedding-live`, the fit on it in place of the stored one;
`embedding-both`, the fit on both, each projected and standardised as the probe's features are.

Nothing here is charged to the arm (the instrument runs off the clock) and nothing changes a draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gaincurate.difficulty import ridge
from gaincurate.lab.benchmarks.curriculum.diagnosis import epoch_diagnosis, pearson_r, ranks
from gaincurate.schedule.strategies.probe import FREE_COLUMNS, likelihood_columns, likelihood_scale

EMBEDDING = "embedding"  # the fit on the embedding alone
# The chain task's completion (chain.completion): the steps, "=", the answer.
CHAIN_TEMPLATE = "{solution}={answer}"


def candidate_figures(
    likelihoods: dict[str, np.ndarray],
    embedding: np.ndarray,
    rates: np.ndarray,
    positions: np.ndarray,
    target: float,
    columns: dict[str, np.ndarray] | None = None,
    embeddings: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Per candidate (each likelihood, each of `columns`' free columns, each of `embeddings` in the embedding's place,
    and the embedding alone): the raw Spearman (a single value's only) and the cross-fitted fit's figures, for one
    drawn epoch (`rates`: the pool's measured pass rates in gc_id order; `columns`: a name to its [N] or [N, k]
    values, the angle score's; `embeddings`: a name to its [N, d] features)."""
    rates = np.asarray(rates, dtype=np.float64)
    out: dict[str, Any] = {}
    features = [(EMBEDDING, None, None, embedding),
                *((name, values, None, embedding) for name, values in likelihoods.items()),
                *((name, None, values, embedding) for name, values in (columns or {}).items()),
                *((name, None, None, values) for name, values in (embeddings or {}).items())]  # fmt: skip
    for name, logps, extra, fitted in features:
        single = logps if extra is None or np.ndim(extra) != 1 else extra
        raw = None
        if single is not None:
            raw = pearson_r(ranks(np.asarray(single, dtype=np.float64).tolist()), ranks(rates.tolist()))
        fit = epoch_diagnosis(0, cross_fitted(fitted, logps, rates, extra), name, rates, positions, target)
        out[name] = {"spearman": raw, "fit_spearman": fit["spearman"], "fit_auc": fit["informative_auc"],
                     "fit_aimed": fit["aimed_informative"]}  # fmt: skip
    return out


def cross_fitted(
    embedding: np.ndarray, logps: np.ndarray | None, rates: np.ndarray, extra: np.ndarray | None = None
) -> np.ndarray:
    """Each prompt's pass rate predicted by the probe's design fitted on the other half of the pool (by position
    parity), clipped to [0, 1]. `extra`: further free columns ([N] or [N, k]), standardised over the pool, NaN as 0."""
    rows = np.arange(len(rates))
    scale = likelihood_scale(None if logps is None else np.asarray(logps, dtype=np.float64))
    added = np.zeros((len(rates), 0)) if extra is None else standardised(np.asarray(extra, dtype=np.float64))
    free = FREE_COLUMNS + added.shape[1]
    design = np.zeros((len(rates), free + embedding.shape[1]))
    design[:, 0] = 1.0
    if scale is not None:
        values = (likelihood_columns(np.asarray(logps, dtype=np.float64)) - scale[0]) / scale[1]
        design[:, 1:FREE_COLUMNS] = np.where(np.isfinite(values), values, 0.0)
    design[:, FREE_COLUMNS:free] = added
    design[:, free:] = embedding
    out = np.empty(len(rates))
    for fold in (0, 1):
        train, test = rows % 2 != fold, rows % 2 == fold
        features, labels = design[train], rates[train]
        weights = np.ones(len(labels))
        held_out = np.arange(len(labels)) % 2 == 1  # the penalty chosen within the fitted half
        choice, system = ridge.choose_strength(features, weights, labels, held_out, free=free)
        strength = ridge.DEFAULT_STRENGTH if choice is None else choice.strength
        beta = ridge.solve(system, ridge.penalty_vector(design.shape[1], free=free, strength=strength))
        out[test] = ridge.predict(design[test], beta)
    return np.clip(out, 0.0, 1.0)


def standardised(values: np.ndarray) -> np.ndarray:
    """[N, k]: each column less its mean over its finite values, over their spread (1 where none), NaN as 0."""
    columns = values.reshape(len(values), -1)
    out = np.zeros_like(columns)
    for j in range(columns.shape[1]):
        finite = np.isfinite(columns[:, j])
        if not finite.any():
            continue
        kept = columns[finite, j]
        mean = math.fsum(kept.tolist()) / len(kept)  # fsum: the same bits whatever the SIMD path
        spread = math.sqrt(math.fsum(((kept - mean) ** 2).tolist()) / len(kept))
        out[finite, j] = (kept - mean) / (spread if spread > 0 else 1.0)
    return out


def live_candidates(pair: Any, chain: bool) -> Callable[[np.ndarray, np.ndarray, np.ndarray, float], dict[str, Any]]:
    """The pool instrument's hook (`diagnosis.Candidates`) for a bench pair (`harness.PairRun`): at each draw, every
    likelihood the probe could read (on the chain task each kind, elsewhere the answer's) and the angle score and
    the embedding re-computed, measured with the pair's live model (its tokens counted as no kind of the arm's), the
    scores folder's angle score and its parts, and the probe's standardised embedding, held against the draw's
    measured rates in gc_id order (so the cross-fit's halves do not follow the arm's ranking)."""
    from gaincurate.difficulty.reference import embeddings_from_table
    from gaincurate.schedule.strategies.probe import ProbeStrategy
    from gaincurate.schedule.strategies.probe.features import EmbeddingFeatures
    from gaincurate.scoring.likelihood import KINDS, likelihoods
    from gaincurate.shards import read_scores

    scores_dir = pair.assets.scores_dir
    table = read_scores(scores_dir)
    embedding = embeddings_from_table(table, str(scores_dir)).embeddings
    every = np.arange(len(embedding))
    width = ProbeStrategy.about.options().width
    features = EmbeddingFeatures(embedding, width).rows(every).astype(np.float64)
    row_of = {int(gc_id): row for row, gc_id in enumerate(table.column("gc_id").to_pylist())}
    stored = {name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
              for name in ("gc_score", "gc_intra", "gc_inter")}  # fmt: skip
    kinds = KINDS if chain else ("answer",)

    def figures(ranking: np.ndarray, rates: np.ndarray, positions: np.ndarray, target: float) -> dict[str, Any]:
        order = np.argsort(ranking, kind="stable")
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        ids = [int(i) for i in ranking[order]]
        rows = np.asarray([row_of[i] for i in ids], dtype=np.int64)
        with pair.token_counter.during(None):
            measured = {kind: likelihoods(scores_dir, ids, model=pair.model, tokenizer=pair.tokenizer, of=kind,
                                          template="{answer}" if kind == "answer" else CHAIN_TEMPLATE,
                                          solution_column="solution") for kind in kinds}  # fmt: skip
            live, live_embedding = live_scores(scores_dir, ids, pair.model, pair.tokenizer)
        columns = {"angle": stored["gc_score"][rows],
                   "angle-parts": np.stack([stored["gc_intra"][rows], stored["gc_inter"][rows]], axis=1),
                   "angle-live": live}  # fmt: skip
        refreshed = EmbeddingFeatures(live_embedding, width).rows(np.arange(len(ids))).astype(np.float64)
        embeddings = {"embedding-live": refreshed, "embedding-both": np.concatenate([features[rows], refreshed], 1)}
        picked = position[np.asarray(positions, dtype=np.int64)]
        return candidate_figures(measured, features[rows], np.asarray(rates)[order], picked, target, columns,
                                 embeddings)  # fmt: skip

    return figures


def live_scores(scores_dir: Any, ids: list[int], model: Any, tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The angle score [N] and the embedding [N, hidden] (float32) of rows `ids` (gc_id) re-computed with a live
    model as the scores folder's pass computed them: its prompt format, layer, site and embedding layer."""
    from gaincurate.model import SiteForward
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.config import prompt_tokens
    from gaincurate.scoring.engine import Scorer, find_shared_prefix
    from gaincurate.scoring.rescore import prompt_format, questions_and_answers

    config, fmt = prompt_format(scores_dir)
    questions = questions_and_answers(scores_dir, ids, config.prompt_column)[0]
    site = SiteForward(model, layer=config.layer, site=config.site, prune=False, embed_layer=config.embed_layer)
    was_training = model.training
    model.eval()
    try:
        encoder = PromptEncoder(tokenizer, fmt, prompt_tokens(config.max_length, model.config))
        prefix = find_shared_prefix(encoder) if config.prefix_cache else None
        scorer = Scorer(site, device=str(next(model.parameters()).device), backend=config.backend,
                        config=config.replace(embed=True), prefix=prefix, batch_tokens=config.batch_tokens)  # fmt: skip
        result = scorer.score(encoder.encode(questions))
    finally:
        site.close()
        model.train(was_training)
    width = model.config.hidden_size
    rows = [np.full(width, np.nan, np.float32) if row is None else np.asarray(row, np.float32) for row in
            result["embedding"]]  # fmt: skip
    return np.asarray(result["score"], dtype=np.float64), np.stack(rows)
