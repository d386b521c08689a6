"""Predict pass rates by attention over a reference set with measured pass rates (DOTS, arXiv 2506.05316).

For a prompt q with embedding z_q and reference prompts i with embeddings z_i and pass rates y_i:

    p_q = sum_i softmax_i( <z_q, z_i> / (sqrt(h) tau) + log w_i ) y_i

h is the embedding dimension and tau the attention temperature. w_i is an optional recency weight:
w_i = forget ** age_i, where age_i counts the epochs (or feedback files) since prompt i was last
measured; forget = 1 (the default) gives every reference prompt the same prior weight, which is the
paper's formula exactly. A prompt that is itself in the reference set never attends to itself when
its own value is predicted (leave-one-out), so its own label never leaks into its prediction.

Embeddings are prepared once by `prepare_embeddings`: centred on the mean embedding of the prompt set
and scaled to norm h^(1/4), so that <z_q, z_i> / sqrt(h) is exactly their cosine similarity and tau
is a temperature on cosines, the same for any model width. Raw mean-pooled hidden states share a few
huge directions (the same in every prompt), so without centring every prompt would look alike.

Pure numpy, float64, chunked over queries so N x R never has to fit in memory at once. A pool's prepared
embeddings need not be held either (`PreparedEmbeddings`: the stored float16 matrix and the centre, each block of
rows prepared when it is used, the same bits as `prepare_embeddings`), and callers bound R (`reference_limit`),
so a step costs N x R pairs with R fixed, not one that grows with every epoch.

The same bits on every CPU (the rule in docs/architecture.md, "Floats and the CPU"): prepared embeddings are
snapped to a grid of 2 ** -grid_bits(h), fine enough to move a cosine by under 1e-7 (h = 576) and coarse
enough that every product and partial sum of <z_q, z_i> is exact in float64 (|partial sum| <= |z_q| |z_i| =
sqrt(h)), so the matmul gives the same bits whatever BLAS kernel, order or thread count computes it. The
softmax's exp is `gaincurate.numerics.exp` and its sums are numpy's fixed-order ones, never BLAS's. That costs a
third more time than np.exp and BLAS sums (10k prompts against 10k measured, h = 576, one thread: 7.1 s, not 5.2).
"""

from __future__ import annotations

import math

import numpy as np

from gaincurate.numerics import exp

NORMALIZATIONS = ("cosine", "none")
QUERY_CHUNK = 1024


PREPARE_ROWS = 8192  # rows prepared at a time: a block's float64 temporaries stay a few tens of MB

# How many measured prompts a step attends to (docs/dots.md, "A bounded reference set"): a step costs N x R pairs at
# about 25 ns each on a 2-core machine, so R is REFERENCE_LIMIT up to PAIR_BUDGET pairs, fewer in larger pools, and
# never below REFERENCE_FLOOR, DOTS' own reference set size. Every pool up to 48,828 prompts keeps 2,048.
REFERENCE_LIMIT = 2048
REFERENCE_FLOOR = 256
PAIR_BUDGET = 100_000_000


def reference_limit(n_prompts: int) -> int:
    """The most measured prompts attention over a pool of `n_prompts` attends to: N x R within PAIR_BUDGET pairs,
    between REFERENCE_FLOOR and REFERENCE_LIMIT."""
    return max(REFERENCE_FLOOR, min(REFERENCE_LIMIT, PAIR_BUDGET // max(int(n_prompts), 1)))


def prepare_embeddings(raw: np.ndarray, *, center: np.ndarray | None = None, normalize: str = "cosine") -> np.ndarray:
    """Float64 embeddings for attention: centred and scaled to norm h^(1/4) (`cosine`), or as they are.

    `center` defaults to the mean of `raw`; pass the prompt set's mean to prepare a subset alike.
    Rows of NaN (prompts without an embedding) stay NaN.
    """
    prepared = PreparedEmbeddings.of(raw, center=center, normalize=normalize)
    result = np.empty(prepared.shape)
    for low in range(0, len(prepared), PREPARE_ROWS):
        result[low : low + PREPARE_ROWS] = prepared.rows(slice(low, low + PREPARE_ROWS))
    return result


def embedding_center(raw: np.ndarray) -> np.ndarray:
    """The float64 mean of the rows of `raw` with an embedding (zeros when none has), a block of rows at a time.

    numpy sums along the slow axis row after row (pairwise summation is for the fast axis only), so the running
    total added into each block's first row gives the bits of `raw[finite].astype(float64).mean(axis=0)` (as the
    total stacked on top of the block would, without copying the block again: 5.4 -> 2-3.5 s at a million rows).
    """
    total, count = None, 0
    for low in range(0, len(raw), PREPARE_ROWS):
        block = np.array(raw[low : low + PREPARE_ROWS], dtype=np.float64)  # a copy: its first row is added to
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            block = block[finite]
        if len(block):
            if total is not None:
                block[0] += total
            total = block.sum(axis=0)
            count += len(block)
    return np.zeros(np.shape(raw)[1]) if total is None else total / count


class PreparedEmbeddings:
    """A pool's prepared embeddings (`prepare_embeddings`) kept as the stored matrix plus its centre: each block of
    rows is prepared when it is used, with the same bits, so N x h float64 is never held (4.6 GB at 1M x 576)."""

    def __init__(self, raw: np.ndarray, center: np.ndarray | None, normalize: str) -> None:
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {normalize!r}")
        self.raw, self.normalize = raw, normalize
        self.center = None if center is None else np.asarray(center, dtype=np.float64)
        self.shape = raw.shape
        self.step = 2.0 ** -grid_bits(raw.shape[1])
        self.embedded = np.concatenate(
            [np.isfinite(raw[low : low + PREPARE_ROWS]).all(axis=1) for low in range(0, len(raw), PREPARE_ROWS)]
            or [np.zeros(0, dtype=bool)]
        )

    @classmethod
    def of(cls, raw: np.ndarray, *, center: np.ndarray | None = None, normalize: str = "cosine") -> PreparedEmbeddings:
        """`raw` (any float dtype, kept as it is) prepared on use; `center` defaults to its mean (embedding_center)."""
        if isinstance(raw, PreparedEmbeddings):
            return raw
        raw = np.asarray(raw)
        if center is None and normalize == "cosine":
            center = embedding_center(raw)
        return cls(raw, center, normalize)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, index: slice | np.ndarray) -> np.ndarray:
        """The prepared float64 rows `raw[index]`: centred, scaled to norm h^(1/4) and snapped to the grid."""
        matrix = np.asarray(self.raw[index], dtype=np.float64)
        if self.normalize == "none":
            return matrix.copy()
        centred = matrix - self.center
        norms = np.linalg.norm(centred, axis=1, keepdims=True)
        scale = matrix.shape[1] ** 0.25
        with np.errstate(invalid="ignore", divide="ignore"):
            prepared = np.where(norms > 0, centred / norms * scale, 0.0)
        prepared[~np.isfinite(matrix).all(axis=1)] = np.nan
        return np.rint(prepared / self.step) * self.step  # on the grid: dot products exact in any order (module doc)

    def subset(self, mask: np.ndarray) -> PreparedEmbeddings:
        """The rows where `mask` holds, prepared alike (the same centre)."""
        return PreparedEmbeddings(self.raw[mask], self.center, self.normalize)


def prepared_rows(matrix: np.ndarray | PreparedEmbeddings, index: slice | np.ndarray) -> np.ndarray:
    """Rows of a float64 matrix, or of prepared embeddings prepared now."""
    if isinstance(matrix, PreparedEmbeddings):
        return matrix.rows(index)
    return matrix[index]


def embedded_rows(matrix: np.ndarray | PreparedEmbeddings) -> np.ndarray:
    """Which rows have an embedding (no NaN)."""
    if isinstance(matrix, PreparedEmbeddings):
        return matrix.embedded
    return np.isfinite(matrix).all(axis=1)


def grid_bits(width: int) -> int:
    """G of the grid 2 ** -G prepared embeddings of width h lie on: a dot product's partial sums, at most
    sqrt(h) (norms h ** (1/4)) in units of 2 ** -2G, stay below 2 ** 52, so float64 holds every one exactly."""
    return (52 - math.ceil(math.log2(2.0 * math.sqrt(max(width, 1))))) // 2


def recency_log_weights(last_measured: np.ndarray, now: int, forget: float) -> np.ndarray | None:
    """log w_i = (now - last_i) log(forget); None when forget is 1 (no recency weighting)."""
    if forget == 1.0:
        return None
    if not 0.0 < forget <= 1.0:
        raise ValueError(f"forget must lie in (0, 1]; got {forget}")
    age = np.maximum(now - np.asarray(last_measured, dtype=np.float64), 0.0)
    return age * math.log(forget)


def attention_predict(
    queries: np.ndarray | PreparedEmbeddings,
    keys: np.ndarray,
    values: np.ndarray,
    *,
    tau: float,
    exclude: np.ndarray | None = None,
    key_log_weights: np.ndarray | None = None,
    scale_dim: int | None = None,
) -> np.ndarray:
    """p_q = sum_i softmax_i(<q, k_i> / (sqrt(h) tau) + log w_i) v_i for each query row.

    `exclude[q]` is the index of a key that query q must not attend to (itself), or -1 for none.
    `scale_dim` is the h in sqrt(h); it defaults to the keys' width. A query left with no key to
    attend to gets NaN. `queries` may be `PreparedEmbeddings`, prepared a block at a time.
    """
    if not isinstance(queries, PreparedEmbeddings):
        queries = np.asarray(queries, dtype=np.float64)
    keys = np.asarray(keys, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}")
    if len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys but {len(values)} values")
    result = np.full(len(queries), np.nan)
    if len(keys) == 0 or len(queries) == 0:
        return result
    factor = 1.0 / (math.sqrt(scale_dim or keys.shape[1]) * tau)
    bias = np.zeros(len(keys)) if key_log_weights is None else np.asarray(key_log_weights, dtype=np.float64)
    for low in range(0, len(queries), QUERY_CHUNK):
        high = min(low + QUERY_CHUNK, len(queries))
        logits = prepared_rows(queries, slice(low, high)) @ keys.T * factor + bias
        if exclude is not None:
            rows = np.arange(high - low)
            masked = np.asarray(exclude[low:high], dtype=np.int64)
            hit = masked >= 0
            logits[rows[hit], masked[hit]] = -np.inf
        top = logits.max(axis=1, keepdims=True)
        usable = np.isfinite(top[:, 0])
        weights = exp(logits[usable] - top[usable])  # not np.exp, nor BLAS below: their bits vary by CPU
        result[low:high][usable] = (weights * values).sum(axis=1) / weights.sum(axis=1)
    return result


def self_index(query_ids: np.ndarray, key_ids: np.ndarray) -> np.ndarray:
    """For each query id, the index of the same id among the keys, or -1 (for leave-one-out)."""
    query_ids = np.asarray(query_ids, dtype=np.int64)
    order = np.argsort(key_ids, kind="stable")
    sorted_keys = np.asarray(key_ids, dtype=np.int64)[order]
    if len(sorted_keys) == 0:
        return np.full(len(query_ids), -1, dtype=np.int64)
    found = np.clip(np.searchsorted(sorted_keys, query_ids), 0, len(sorted_keys) - 1)
    return np.where(sorted_keys[found] == query_ids, order[found], -1).astype(np.int64)


def predict_pass_rates(
    embeddings: np.ndarray | PreparedEmbeddings,
    gc_ids: np.ndarray,
    reference_ids: np.ndarray,
    reference_rates: np.ndarray,
    *,
    tau: float,
    reference_log_weights: np.ndarray | None = None,
    fallback: float | None = None,
) -> np.ndarray:
    """Predicted pass rate of every prompt (rows of `embeddings`, ids `gc_ids`), leave-one-out.

    Reference prompts are located by id among `gc_ids`; a reference prompt never attends to itself.
    Prompts without an embedding (NaN rows), and any prompt with nothing to attend to, get `fallback`
    (default: the mean reference pass rate of the other prompts, `others_mean`).
    """
    gc_ids = np.asarray(gc_ids, dtype=np.int64)
    reference_ids = np.asarray(reference_ids, dtype=np.int64)
    rows = self_index(reference_ids, gc_ids)
    if (rows < 0).any():
        raise ValueError(f"reference gc_id {int(reference_ids[rows < 0][0])} is not among the prompts")
    embedded = embedded_rows(embeddings)
    usable = embedded[rows]
    keys = prepared_rows(embeddings, rows[usable])
    values = np.asarray(reference_rates, dtype=np.float64)[usable]
    weights = None if reference_log_weights is None else np.asarray(reference_log_weights)[usable]
    exclude = self_index(gc_ids, reference_ids[usable])
    predicted = np.full(len(gc_ids), np.nan)
    everyone = bool(embedded.all())  # the usual case: the queries are the pool itself, never copied
    queries = embeddings if everyone else (
        embeddings.subset(embedded) if isinstance(embeddings, PreparedEmbeddings) else embeddings[embedded]
    )  # fmt: skip
    predicted[embedded] = attention_predict(
        queries, keys, values, tau=tau, exclude=exclude if everyone else exclude[embedded], key_log_weights=weights
    )
    guess = others_mean(gc_ids, reference_ids, reference_rates) if fallback is None else fallback
    return np.where(np.isfinite(predicted), predicted, guess)


def others_mean(gc_ids: np.ndarray, reference_ids: np.ndarray, reference_rates: np.ndarray) -> np.ndarray:
    """Per prompt, the mean reference pass rate of the other prompts (0.5 where no other is measured): a prompt's own
    label never reaches its leave-one-out prediction, not even through the mean it falls back on. Summed exactly, the
    same bits on every CPU."""
    rates = np.asarray(reference_rates, dtype=np.float64)
    if not len(rates):
        return np.full(len(gc_ids), 0.5)
    own = self_index(np.asarray(gc_ids, dtype=np.int64), np.asarray(reference_ids, dtype=np.int64))
    others = len(rates) - (own >= 0)
    sums = math.fsum(rates.tolist()) - np.where(own >= 0, rates[own], 0.0)  # own -1: rates[-1], dropped by where
    return np.where(others > 0, sums / np.maximum(others, 1), 0.5)
