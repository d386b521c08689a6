"""The `predict` strategy: a predictor learned across prompts of whether a prompt's next group can teach.

A GRPO group teaches nothing when its rollouts all agree. On a pool whose prompts are each all right or all wrong
(the bench's `cpu-mult`), a pass-rate estimate that averages a family sits near 0.5 and points at prompts that are
not at the frontier (docs/strategies.md, "Why dots and mopps save nothing on `cpu-mult`"). So this strategy predicts
the thing itself: the chance that a prompt's next group has nonzero reward variance (it is *informative*), learned
from every group the run has trained, for every prompt of the pool, those never trained on too.

Evidence: each trained group is one observation y (1: informative, 0: all alike), weighted by its age in epochs
(measurements age): forget ** age, or forget_solved ** age for a group all right, since the policy
improves and what it solved tends to stay solved while what it failed may come into play. Per prompt q: I_q = the
weighted sum of y, G_q = the sum of the weights. Then

    K(q, j) = exp((cos(z_q, z_j) - 1) / bandwidth)                    a kernel on the scoring pass's embeddings
    m_q     = (A + sum_{j != q} K(q, j) I_j) / (A + B + sum_{j != q} K(q, j) G_j)    the neighbours' rate
    a_q     = neighbours * m_q + I_q,    b_q = neighbours * (1 - m_q) + G_q - I_q

m_q is Nadaraya-Watson over the other prompts with a Beta(A, B) prior (`--informative-prior`), so an empty
neighbourhood gives A / (A + B); a prompt's own groups count one each and its neighbours' rate as `--neighbours`
groups, so its own evidence dominates once it has some, and ages back to its neighbours' when it stops being
measured. The prediction is a_q / (a_q + b_q).

Each epoch draws theta_q ~ Beta(a_q / explore, b_q / explore) (`default_rng([seed, epoch])`) and takes the
`subset_size` largest (ties by a second seeded draw): a Thompson draw whose spread `--explore` narrows (1: the
posterior itself, which in the simulation strays too often; 0: the highest predictions), so prompts with little
evidence, whose posteriors are wide, still get drawn now and then. Before any feedback every prompt sits at the
same prior, so epoch 0 is a uniform draw.

The same kernel over correctness gives a pass-rate estimate that the savings readout reads (`report`); the draw
never does. The history line's `selection` keeps the predicted informative share of the picked prompts and of the
pool, to set beside the zero-variance share the readout measures.

The same bits on every CPU (docs/architecture.md, "Floats and the CPU"): embeddings are prepared and snapped to
dots' grid (`gaincurate.difficulty.predict.prepare_embeddings`), so every dot product is exact whatever BLAS does;
the kernel's exp is `gaincurate.numerics.exp`, ageing is `int_powers`, sums are numpy's fixed-order ones, and the
figures a history line keeps go through `recorded`. No live policy is needed: it reads feedback and embeddings only,
so every trainer path runs it unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.difficulty.predict import (
    QUERY_CHUNK,
    PreparedEmbeddings,
    embedded_rows,
    prepared_rows,
    reference_limit,
    self_index,
)
from gaincurate.difficulty.reference import PassRates, embeddings_from_table
from gaincurate.numerics import exp, int_powers, recorded
from gaincurate.schedule.feedback import EXACT
from gaincurate.schedule.options import POSITIVE, RATE, Options, option, positive_pair
from gaincurate.schedule.strategies import contract

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

# Chosen with tests/simulation.py (docs/strategies.md, "predict"); the bench's pilot seeds are the coordinator's.
PREDICT_FORGET = 0.9
PREDICT_FORGET_SOLVED = 1.0
PREDICT_BANDWIDTH = 0.05
PREDICT_NEIGHBOURS = 4.0
PREDICT_PRIOR = (1.0, 1.0)
PREDICT_EXPLORE = 0.1


@dataclass(frozen=True, kw_only=True)
class PredictOptions(Options):
    forget: float = option(PREDICT_FORGET, "Weight an observation keeps per epoch of age (1: never ages).", RATE)
    forget_solved: float = option(
        PREDICT_FORGET_SOLVED,
        "Weight an all-right group keeps per epoch of age (1: what was solved stays solved).",
        RATE,
    )
    bandwidth: float = option(
        PREDICT_BANDWIDTH, "Kernel bandwidth: a neighbour at cosine c weighs exp((c - 1) / bandwidth).", POSITIVE
    )
    neighbours: float = option(
        PREDICT_NEIGHBOURS, "How many of a prompt's own groups its neighbours' informative rate weighs.", POSITIVE
    )
    informative_prior: tuple[float, float] = option(
        PREDICT_PRIOR, "Beta prior A,B of a group being informative where no neighbour was measured.", positive_pair,
        cli="pair",
    )  # fmt: skip
    explore: float = option(
        PREDICT_EXPLORE,
        "Width of the Thompson draw: 1 draws from the posterior, 0 takes the highest predictions.",
        RATE,
    )


@dataclass(frozen=True)
class Prediction:
    """Per prompt (gc_id order): the Beta(alpha, beta) of its next group being informative, the neighbours' rate
    m_q, and the kernel's pass-rate estimate (for the readout only)."""

    alpha: np.ndarray
    beta: np.ndarray
    neighbour: np.ndarray
    pass_rate: np.ndarray

    @property
    def rate(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)


def group_outcomes(feedback: Feedback, strategy: str) -> tuple[dict, dict]:
    """Each trained prompt's group in the epoch as two observations for `PassRates.add`: ({gc_id: (1.0 if its
    rewards differed else 0.0, 0 if all right else 1)}, {gc_id: (1.0 if all right else 0.0, 1)})."""
    per_prompt = contract.per_prompt_feedback(feedback, strategy)
    extremes = feedback.extremes or {}
    informative, solved = {}, {}
    for gc_id, (total, count) in per_prompt.items():
        if gc_id in extremes:
            low, high = extremes[gc_id]
        elif EXACT * count < total < count - EXACT * count:  # reduced to sums: only 0/1 rewards tell their variance
            low, high = 0.0, 1.0
        else:
            low = high = total / count
        varied, right = high - low > EXACT, low >= 1.0 - EXACT
        informative[gc_id] = (1.0 if varied else 0.0, 0 if right else 1)
        solved[gc_id] = (1.0 if right else 0.0, 1)
    return informative, solved


@dataclass(frozen=True)
class Evidence:
    """What the run measured, per trained prompt, each as `PassRates` (aged sums, gc_ids and last epochs shared):
    `informative` sums its informative groups over its groups not all right (aged by `--forget`), `solved` its
    all-right groups (aged by `--forget-solved`), `correct` its correctness over its rollouts (by `--forget`)."""

    informative: PassRates
    solved: PassRates
    correct: PassRates

    KEYS = ("informative", "solved", "pass_rates")  # their keys in the strategy's memory

    @classmethod
    def empty(cls) -> Evidence:
        return cls(PassRates.empty(), PassRates.empty(), PassRates.empty())

    @classmethod
    def from_memory(cls, memory: dict[str, Any] | None) -> Evidence:
        memory = memory or {}
        if cls.KEYS[0] not in memory:
            return cls.empty()
        return cls(*(PassRates.from_json(memory[key]) for key in cls.KEYS))

    def to_memory(self) -> dict[str, Any]:
        kept = (self.informative, self.solved, self.correct)
        return {key: rates.to_json() for key, rates in zip(self.KEYS, kept, strict=True)}

    def add(self, feedback: Feedback, strategy: str, *, time: int, options: PredictOptions) -> Evidence:
        informative, solved = group_outcomes(feedback, strategy)
        forget = options.forget
        return Evidence(
            self.informative.add(informative, time=time, forget=forget),
            self.solved.add(solved, time=time, forget=options.forget_solved),
            self.correct.add(contract.per_prompt_feedback(feedback, strategy), time=time, forget=forget),
        )


def kernel_sums(
    embeddings: np.ndarray | PreparedEmbeddings, rows: np.ndarray, values: np.ndarray, *, bandwidth: float
) -> np.ndarray:
    """[N, V]: for each prompt q, sum over keys j != q of K(q, j) * values[j], K = exp((cos - 1) / bandwidth).

    `embeddings` are prepared (on the grid: exact dot products); `rows[j]` is key j's row among them (its own row
    is left out of its sum). A prompt or key without an embedding adds nothing and gets nothing.
    """
    embedded = embedded_rows(embeddings)
    keep = embedded[rows]
    keys, key_rows, key_values = prepared_rows(embeddings, rows[keep]), rows[keep], values[keep]
    sums = np.zeros((len(embeddings), values.shape[1]))
    if not len(key_rows):
        return sums
    queries = np.flatnonzero(embedded)
    factor = 1.0 / math.sqrt(embeddings.shape[1])  # prepared norms are h ** (1/4): <z_q, z_j> / sqrt(h) is the cosine
    for low in range(0, len(queries), QUERY_CHUNK):
        chunk = queries[low : low + QUERY_CHUNK]
        block = prepared_rows(embeddings, chunk)
        kernel = exp((block @ keys.T * factor - 1.0) / bandwidth)  # not np.exp: its bits vary by CPU
        hit = self_index(chunk, key_rows)
        kernel[np.flatnonzero(hit >= 0), hit[hit >= 0]] = 0.0  # leave one out: a prompt is not its own neighbour
        for column in range(values.shape[1]):
            sums[chunk, column] = (kernel * key_values[:, column]).sum(axis=1)  # numpy's fixed order, not BLAS
    return sums


def predict_informative(
    embeddings: np.ndarray | PreparedEmbeddings,
    gc_ids: np.ndarray,
    evidence: Evidence,
    *,
    now: int,
    options: PredictOptions,
    limit: int = 0,
) -> Prediction:
    """The module docstring's formulas for every prompt at epoch `now` (the newest feedback's epoch); the kernel's
    neighbours are `limit` measured prompts sampled by their weight forget ** age (0: all of them)."""
    n = len(gc_ids)
    own = np.zeros((n, 4))  # I_q, G_q, correct, rollouts, each aged as of `now`
    if len(evidence.informative):
        informative, solved, correct = evidence.informative, evidence.solved, evidence.correct
        rows = self_index(informative.gc_ids, gc_ids)
        age = np.maximum(now - informative.last, 0)  # the three share their prompts and epochs
        aged = int_powers(options.forget, age)  # the same bits on every CPU (numerics)
        groups = informative.counts * aged + solved.sums * int_powers(options.forget_solved, age)
        own[rows] = np.stack([informative.sums * aged, groups, correct.sums * aged, correct.counts * aged], axis=1)
        # The neighbours: at most `limit` measured prompts, sampled by their weight forget ** age (dots' bound); every
        # prompt's own evidence counts.
        sampled = informative.sample(limit, now=now, forget=options.forget).gc_ids
        keys = rows[np.isin(informative.gc_ids, sampled, assume_unique=True)]
        sums = kernel_sums(embeddings, keys, own[keys], bandwidth=options.bandwidth)
    else:
        sums = np.zeros((n, 4))
    a0, b0 = options.informative_prior
    neighbour = (a0 + sums[:, 0]) / (a0 + b0 + sums[:, 1])
    k = options.neighbours
    alpha = k * neighbour + own[:, 0]
    beta = k * (1.0 - neighbour) + (own[:, 1] - own[:, 0])
    neighbour_pass = (0.5 + sums[:, 2]) / (1.0 + sums[:, 3])  # half a rollout right of one: 0.5 where none measured
    pass_rate = (k * neighbour_pass + own[:, 2]) / (k + own[:, 3])
    return Prediction(alpha, np.maximum(beta, 0.0), neighbour, pass_rate)


def thompson(alpha: np.ndarray, beta: np.ndarray, explore: float, rng: np.random.Generator) -> np.ndarray:
    """One draw per prompt from Beta(alpha / explore, beta / explore): the posterior's mean, its spread scaled by
    about sqrt(explore) (1: the posterior itself); explore 0 gives the mean, with no draw."""
    if explore == 0:
        return alpha / (alpha + beta)
    return rng.beta(alpha / explore, beta / explore)


def mean(values: np.ndarray) -> float | None:
    """The mean as a file records it: `math.fsum` (no SIMD order), then `recorded`."""
    return recorded(math.fsum(values.tolist()) / len(values)) if len(values) else None


class PredictStrategy(contract.Strategy):
    """A Thompson draw of each prompt's chance that its next group has nonzero reward variance, from its own groups
    and its embedding neighbours'."""

    name = "predict"
    about = contract.About(
        options=PredictOptions,
        summary="the chance a prompt's next group is informative (0 < p < 1), learned across prompts from embeddings",
        draws="epoch 0 is uniform; then by a Thompson draw of each prompt's chance that its group has nonzero reward "
        "variance, from its own groups and its embedding neighbours'",
        needs=frozenset({contract.EMBEDDINGS, contract.ROLLOUTS}),
    )

    def __init__(self, gc_ids: np.ndarray, embeddings: np.ndarray, options: PredictOptions) -> None:
        self.gc_ids = np.asarray(gc_ids, dtype=np.int64)  # ascending, as in PromptSet
        self.embeddings = PreparedEmbeddings.of(embeddings)  # centred, on dots' grid, a block of rows when used
        self.options = options
        self._last: tuple[ScheduleState, Prediction] | None = None

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> PredictStrategy:
        assert isinstance(options, PredictOptions)
        if inputs.scores is None:
            raise ValueError(
                "the predict strategy needs the scores table's embeddings: build it with StrategyInputs(scores=)"
            )
        prompts = embeddings_from_table(inputs.scores.table, str(inputs.scores.directory))
        return cls(prompts.gc_ids, prompts.embeddings, options)

    def start(self, prompts: contract.PromptSet) -> tuple[np.ndarray, dict[str, Any]]:
        return contract.Strategy.start(self, prompts)[0], Evidence.empty().to_memory()

    def observe(
        self, state: ScheduleState, feedback: Feedback, fresh: contract.Fresh = contract.NOTHING_FRESH
    ) -> dict[str, Any]:
        """The memory after epoch `state.epoch`: one observation per trained group, older ones aged."""
        evidence = Evidence.from_memory(state.memory).add(feedback, self.name, time=state.epoch, options=self.options)
        return {**(state.memory or {}), **evidence.to_memory()}

    def prediction(self, state: ScheduleState) -> Prediction:
        """Every prompt's prediction (gc_id order) before drawing epoch `state.epoch`."""
        if self._last is not None and self._last[0] is state:  # the same draw asks again (report)
            return self._last[1]
        evidence = Evidence.from_memory(state.memory)
        now = state.epoch - 1  # the epoch whose feedback is the newest
        # The kernel's neighbours: a sample of at most reference_limit(N) measured prompts, as dots' (docs/dots.md).
        limit = reference_limit(len(self.gc_ids))
        result = predict_informative(self.embeddings, self.gc_ids, evidence, now=now, options=self.options, limit=limit)
        self._last = (state, result)  # states are frozen: the same object always gives the same prediction
        return result

    def _rows(self, context: contract.RankingContext) -> np.ndarray:
        return np.searchsorted(self.gc_ids, context.gc_ids)

    def choose(self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator) -> np.ndarray:
        """Every rank position, the largest Thompson draw of the informative chance first, ties by a seeded draw."""
        prediction = self.prediction(state)
        rows = self._rows(context)
        draws = thompson(prediction.alpha[rows], prediction.beta[rows], self.options.explore, rng)
        ties = rng.random(len(rows))
        return np.lexsort((ties, -draws)).astype(np.int64)

    def describe(self, state: ScheduleState, context: contract.RankingContext, positions: np.ndarray) -> dict[str, Any]:
        """The predicted informative share of the picked prompts and of the pool, and the picked prompts' evidence."""
        prediction = self.prediction(state)
        rows = self._rows(context)
        picked = rows[positions]
        return {
            "informative_estimate": mean(prediction.rate[picked]),
            "pool_informative_estimate": mean(prediction.rate[rows]),
            "evidence": mean(prediction.alpha[picked] + prediction.beta[picked]),
        }

    def report(
        self, state: ScheduleState, context: contract.RankingContext, drawn: contract.Selection
    ) -> contract.Report:
        """The kernel's pass-rate estimate of every prompt, for the readout; the informative figures in `drawn`."""
        estimates = self.prediction(state).pass_rate[self._rows(context)]
        figures = self.describe(state, context, drawn.positions) | drawn.info
        return contract.Report(
            estimates, "pass rate by the predict kernel (it draws by informativeness)", None, figures
        )
