"""The `probe` strategy: each prompt's pass rate under the current policy, predicted by a fit across prompts.

Every trained group is a measurement: its mean reward, with its size as weight, aged by `--forget` per epoch (the
policy has moved since). A ridge regression across the measured prompts maps features to pass rates,
and predicts the rest of the pool; each epoch draws near `--target` from those predictions, with a uniform slice
(`--uniform-share`) so that its own measurements keep covering the pool (fed only the prompts it aims at, a fit
loses sight of the rest; docs/strategies.md, "probe").

Features, per prompt:
* the scoring pass's question embedding (`gc_embedding`; no extra cost), standardised over the pool; an embedding
  wider than `--width` is projected to that width by a seeded sign matrix (entries -1, 0, +1: the products of float16
  values and signs sum exactly in float64, so the projection is the same on every CPU whatever BLAS does). Only the
  measured prompts' features are built; the pool is predicted through the raw embedding (`probe.features`);
* with the likelihood, the current policy's log-probability of the prompt's reference answer and that probability
  (`gaincurate.scoring.likelihood`), refreshed after each epoch from the live model or the newest checkpoint
  (`wants` / `observe`), only what a draw can use (`wants`; `probe.refresh`). Where the reward checks a
  short exact answer at temperature 1 it *is* the pass rate; on a chain-of-thought task a proxy, so the fit weighs
  it: its two columns, like the intercept, are not penalised, the embedding's are.

The fit: labels y (mean reward of a group, in [0, 1]), weights (group size * forget ** age), each row's features
as they stood when the group was drawn. The penalty is chosen each epoch from `ridge.STRENGTHS` by the weighted
error on the newest epoch's groups when fitted on the older ones (`gaincurate.difficulty.ridge`), then the fit is
made on all. Estimates are the fit's predictions clipped to [0, 1].

The draw: epoch 0 (nothing measured yet) is uniform. Then `uniform_share` of the epoch uniformly from the whole pool,
whatever the aim picks (the run's control: `gaincurate.schedule.control`), and the rest by a Gumbel-top-k draw with
log-weight -|estimate - target| / tau from the prompts the slice left; seeded by (seed, epoch). Every float that
reaches the draw is the same on every CPU (docs/architecture.md): the ridge uses no BLAS, exp is
`gaincurate.numerics.exp`, ageing is `int_powers`, and model outputs go through `recorded` before use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.difficulty import ridge
from gaincurate.difficulty.reference import embeddings_from_table
from gaincurate.errors import ConfigError
from gaincurate.numerics import exp, int_powers, recorded
from gaincurate.schedule.options import POSITIVE, RATE, Options, boolean, option, optional, whole
from gaincurate.schedule.strategies import contract
from gaincurate.schedule.strategies.probe.features import EmbeddingFeatures
from gaincurate.schedule.strategies.probe.memory import Measured

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

LOGP_FLOOR = -30.0  # a log-probability below this says "never": clipped, so one hopeless prompt does not set the scale
FIGURE_NAMES = {"strength": "fit penalty", "strength_at_edge": "penalty at its range's limit",
                "likelihood_groups": "groups with a likelihood", "likelihood_weighed": "likelihood used"}  # fmt: skip
FREE_COLUMNS = 3  # intercept, answer probability, its log: not penalised (the likelihood columns may be all zero)
LIKELIHOOD_NOTE = (
    "answer likelihood on (every prompt has an answer; --no-likelihood: off), measured after an epoch with the newest "
    "model (live, or --checkpoint) where a draw can use it; until then, and for prompts never measured, the fit uses "
    "the embedding alone. Where the answer follows reasoning it is a proxy: the run's uniform control says whether "
    "aiming saves, and the refresh pauses while it does not (--no-pause: never)"
)
NO_ANSWERS_NOTE = "answer likelihood off: not every prompt has a reference answer (score with --answer-column)"


def likelihood_scale(pool_logps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and spread (1 where there is none) of the likelihood columns over the pool's measured prompts; None
    when none was measured (or the probe reads no likelihood)."""
    if pool_logps is None or not np.isfinite(pool_logps).any():
        return None
    reference = likelihood_columns(pool_logps[np.isfinite(pool_logps)])
    # A column of equal values standardises to exactly 0: its computed mean and spread are only rounding's (a spread
    # of 1e-29), which would make the column mark the measured prompts, unpenalised, as a feature of its own.
    constant = np.ptp(reference, axis=0) == 0
    mean = np.where(constant, reference[0], reference.mean(axis=0))
    centred = reference - mean
    spread = np.sqrt((centred * centred).mean(axis=0))
    return mean, np.where(constant | ~(spread > 0), 1.0, spread)


def check_answers(scores: Any) -> None:
    """Refuse, before the first step, a scores directory without a reference answer for every prompt: the likelihood
    measures the policy's probability of that answer after each epoch."""
    from gaincurate.columns import column_values, has_column, missing_answers

    column = scores.prompt_config.get("answer_column")
    why = "--likelihood measures the policy's probability of each prompt's reference answer, but"
    fix = "score the data again with --answer-column NAME (the column holding the answers), or drop --likelihood"
    if not column:
        raise ConfigError(f"{why} {scores.directory} names no answer column; {fix}")
    if not has_column(scores.table, column):
        names = ", ".join(name for name in scores.table.column_names if not name.startswith("gc_"))
        raise ConfigError(f"{why} {scores.directory} has no {column!r} column (its columns: {names}); {fix}")
    missing = missing_answers(column_values(scores.table, column))
    if missing:
        first, rows = scores.table.column("gc_id")[missing[0]].as_py(), scores.table.num_rows
        raise ConfigError(
            f"{why} {len(missing)} of {rows} prompts in {scores.directory} have no {column!r} answer "
            f"(first: gc_id {first}); drop those rows and score again, or name another column: {fix}"
        )


def _answer_template(name: str, value: Any) -> str:
    whole = isinstance(value, str) and "{answer}" in value
    try:  # formatted with the answer alone at every measurement: another field or a lone brace fails there
        whole = whole and value.format(answer="") is not None
    except (KeyError, IndexError, ValueError):
        whole = False
    if not whole:
        raise ConfigError(
            f"{name} must be text holding {{answer}}, where the reference answer goes, and no other {{field}} (a "
            f"literal brace is written {{{{ or }}}}); got {value!r}"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class ProbeOptions(Options):
    target: float = option(0.5, contract.TARGET_HELP, RATE)
    tau: float = option(0.05, "Selection temperature: log-weight -|estimate - target| / tau.", POSITIVE)
    forget: float = option(0.8, "Weight a measured group keeps per epoch of age (1: never ages).", RATE)
    # 0.1: chosen over 0.3 by the rule declared before the trial runs (docs/benchmark-history.md, the probe's).
    uniform_share: float = option(
        0.1, "Share of each epoch drawn uniformly from the whole pool: the run's control, and the fit's coverage.", RATE
    )
    # On where every prompt has an answer: on the second CPU's warm starts it saved 0.08 more than the embedding alone
    # on cpu-mult, within 0.05 on the others (docs/benchmark-history.md, "The likelihood as the default where rows carry
    # answers"). None: decided from the scores once (`resolved`), and stored so.
    likelihood: bool | None = option(
        None, "Add the policy's log-probability of the reference answer (after reasoning a proxy the fit weighs).",
        optional(boolean), cli="flag", shown="on when every prompt has a reference answer")  # fmt: skip
    answer_template: str = option(
        "{answer}", "The completion whose probability is measured; {answer} is the reference answer.", _answer_template,
        cli="text",
    )  # fmt: skip
    refresh: float = option(3.0, "Likelihoods measured after an epoch, at most, a multiple of its prompts.", POSITIVE)
    width: int = option(256, "Embedding columns used; a wider embedding is projected to this width.", whole(1))

    def resolved(self, manifest: dict[str, Any]) -> ProbeOptions:
        """Unset, the likelihood is on where the manifest records an answer for every prompt."""
        answers = manifest.get("answers") or {}
        on = answers.get("present") is True and answers.get("missing") == 0
        return replace(self, likelihood=on) if self.likelihood is None else self


WEIGHED, EQUAL_REWARDS, NONE_CARRIED = "weighed", "equal rewards", "none carried"


def reaches_draw(groups: dict[str, np.ndarray]) -> str:
    """Whether a fit on `groups` (those it weighs, `ProbeStrategy.weighed`) can give the answer likelihood weight:
    `WEIGHED`; else why not: `EQUAL_REWARDS` (every group's mean reward is the same, so nothing relates the
    likelihood to the reward) or `NONE_CARRIED` (no group's prompt had its likelihood measured before its epoch)."""
    labels = groups["sums"] / groups["counts"]
    if not len(labels) or labels.min() == labels.max():
        return EQUAL_REWARDS
    return WEIGHED if np.isfinite(groups["logps"]).any() else NONE_CARRIED


def likelihood_columns(logps: np.ndarray) -> np.ndarray:
    """[N, 2]: the answer's probability and its log-probability (floored), NaN where unmeasured."""
    floored = np.maximum(logps, LOGP_FLOOR)  # NaN stays NaN
    measured = np.isfinite(floored)
    probability = np.full(len(logps), np.nan)
    probability[measured] = exp(floored[measured])  # not np.exp: its bits vary by CPU
    return np.stack([probability, floored], axis=1)


def aimed_order(
    rates: np.ndarray, options: ProbeOptions, subset_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The probe's draw over `rates` (positions, int64), and its uniform slice: `options.uniform_share` of
    `subset_size` drawn uniformly from the whole pool first, then the rest by Gumbel-top-k with log-weight
    -|rate - target| / tau from the positions the slice left."""
    control = contract.draw_order(np.zeros(len(rates)), rng)[: int(options.uniform_share * subset_size + 0.5)]
    aimed = contract.draw_order(-np.abs(rates - options.target) / options.tau, rng)
    return np.concatenate([control, aimed[~np.isin(aimed, control)]]).astype(np.int64), control


@dataclass(frozen=True)
class Estimate:
    """Every prompt's estimated pass rate (gc_id order) and how the fit that made it went."""

    rates: np.ndarray
    figures: dict[str, Any]


class ProbeStrategy(contract.Strategy):
    """Pass rates predicted by a ridge fit across every measured group (the embedding, with the likelihood the
    policy's probability of each reference answer); the epoch is drawn near the target, plus a uniform slice."""

    name = "probe"
    about = contract.About(
        options=ProbeOptions,
        summary="pass rates predicted by a ridge fit across prompts on the embedding and, where every prompt has a "
        "reference answer, the policy's probability of it (over eight warm starts a task on one CPU, twice: 0.33x "
        "and 0.37x uniform's compute on cpu-chain, 0.47x and 0.46x on cpu-arith, 0.68x and 0.76x on cpu-mult)",
        draws="epoch 0 is uniform; then near the target pass rate by a ridge fit across every measured group (the "
        "embedding, and with the likelihood the policy's probability of each answer), plus a uniform slice",
        needs=frozenset({contract.EMBEDDINGS, contract.ROLLOUTS}),
        estimates=True,
        figure_names=FIGURE_NAMES,
    )

    def __init__(
        self, gc_ids: np.ndarray, embeddings: np.ndarray, options: ProbeOptions, *, subset_size: int = 1, seed: int = 0
    ) -> None:
        self.gc_ids = np.asarray(gc_ids, dtype=np.int64)
        self.options, self.subset_size, self.seed = options, subset_size, seed  # the last two: the refresh's
        # `EmbeddingRows` (read when sliced) or a matrix: read by the fit (measured rows) and the pool's predictions
        self.features = EmbeddingFeatures(embeddings, options.width)
        self.about = replace(
            self.about,
            needs=self.about.needs | ({contract.LIKELIHOOD} if options.likelihood else set()),
            settings={"feature_columns": self.features.width + (2 if options.likelihood else 0)},
            notes=(LIKELIHOOD_NOTE,) if options.likelihood else (),
            answer_template=options.answer_template,
        )
        self._last: tuple[ScheduleState, Estimate | None] | None = None

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> ProbeStrategy:
        assert isinstance(options, ProbeOptions)
        if inputs.scores is None:
            raise ValueError("the probe strategy needs the scores table's embeddings: StrategyInputs(scores=)")
        if options.likelihood:
            check_answers(inputs.scores)
        prompts = embeddings_from_table(inputs.scores.table, str(inputs.scores.directory), blocks=True)
        strategy = cls(prompts.gc_ids, prompts.embeddings, options, subset_size=inputs.subset_size, seed=inputs.seed)
        if inputs.initial and not options.likelihood and not ProbeOptions().resolved(inputs.scores.manifest).likelihood:
            strategy.about = replace(strategy.about, notes=(NO_ANSWERS_NOTE,))
        return strategy

    def start(self, prompts: contract.PromptSet) -> tuple[np.ndarray, dict[str, Any]]:
        return contract.Strategy.start(self, prompts)[0], Measured(None).to_memory()

    def observe(
        self, state: ScheduleState, feedback: Feedback, fresh: contract.Fresh = contract.NOTHING_FRESH
    ) -> dict[str, Any]:
        """The memory with the epoch's groups and the answer likelihoods measured after it (the next draw's)."""
        measured = Measured(state.memory)
        measured.add_groups(contract.per_prompt_feedback(feedback, self.name), state.epoch)
        if fresh.likelihood is not None and fresh.gc_ids is not None:
            measured.add_likelihood(np.asarray(fresh.gc_ids, dtype=np.int64), np.asarray(fresh.likelihood), state.epoch)
        return measured.to_memory()

    def wants(self, state: ScheduleState, end: contract.EpochEnd = contract.AHEAD) -> contract.Wants:
        """The prompts whose answer likelihood to measure after this epoch: only what a draw can use. Given the epoch's
        feedback: nothing while the next fit's groups all have the same mean reward (no fit weighs it); the next draw's
        prompts while none carries one (that draw is the same whatever is measured, and each of its groups then
        carries the likelihood of the model that trains it). Otherwise, or asked ahead: the budget (`probe.refresh`)."""
        if not self.options.likelihood:
            return contract.Wants()
        measured = Measured(state.memory)
        if end.feedback is not None:  # the next fit's groups: the epoch's added (the newest likelihoods unchanged)
            measured.add_groups(contract.per_prompt_feedback(end.feedback, self.name), state.epoch)
            why = reaches_draw(self.weighed(measured, now=state.epoch))
            if why == EQUAL_REWARDS:
                return contract.Wants()
            if why == NONE_CARRIED and end.upcoming is not None:
                return contract.Wants(np.asarray(end.upcoming(), dtype=np.int64))
        from gaincurate.schedule.strategies.probe.refresh import chosen  # only with --likelihood: off the product path

        return contract.Wants(chosen(self, state, measured.latest))

    def weighed(self, measured: Measured, *, now: int) -> dict[str, np.ndarray]:
        """The groups that a fit before drawing epoch `now + 1` gives a weight above 0 (size * forget ** age)."""
        kept = int_powers(self.options.forget, np.maximum(now - measured.groups["epochs"], 0)) > 0
        return {key: value[kept] for key, value in measured.groups.items()}

    def estimate(self, state: ScheduleState) -> Estimate | None:
        """Every prompt's estimate before drawing epoch `state.epoch`; None before any group was measured."""
        if self._last is not None and self._last[0] is state:
            return self._last[1]
        result = self._fit(Measured(state.memory), now=state.epoch - 1)
        self._last = (state, result)
        return result

    def _fit(self, measured: Measured, *, now: int) -> Estimate | None:
        groups = measured.groups
        if not len(groups["gc_ids"]):
            return None
        rows = np.searchsorted(self.gc_ids, groups["gc_ids"])
        pool_logps = measured.logps_of(self.gc_ids) if self.options.likelihood else None
        # Where the likelihood cannot be weighed, its columns stay 0 (their coefficients are 0 in exact arithmetic
        # too), so that nothing measured after the epoch changes the draw: the refresh relies on it.
        weighs = pool_logps is not None and reaches_draw(self.weighed(measured, now=now)) == WEIGHED
        scale = likelihood_scale(pool_logps) if weighs else None
        features = self._design(rows, groups["logps"], scale)
        weights = groups["counts"] * int_powers(self.options.forget, np.maximum(now - groups["epochs"], 0))
        labels = groups["sums"] / groups["counts"]
        held_out = groups["epochs"] == now
        choice, system = ridge.choose_strength(features, weights, labels, held_out, free=FREE_COLUMNS)
        strength = ridge.DEFAULT_STRENGTH if choice is None else choice.strength
        beta = ridge.solve(system, ridge.penalty_vector(features.shape[1], free=FREE_COLUMNS, strength=strength))
        rates = beta[0] + self.features.predict(beta[FREE_COLUMNS:])  # the pool's, without its features
        if scale is not None:
            rates += ridge.predict(self._likelihood_design(pool_logps, scale), beta[1:FREE_COLUMNS])
        edge = bool(choice.at_edge) if choice else None
        info = {"strength": strength, "strength_at_edge": edge, "measured_groups": len(labels)}
        if pool_logps is not None:  # the fit's groups whose prompt had one measured before; whether it weighs it
            info["likelihood_groups"] = int(np.isfinite(groups["logps"]).sum())
            info["likelihood_weighed"] = bool(scale is not None and np.any(beta[1:FREE_COLUMNS] != 0.0))
        return Estimate(np.clip(rates, 0.0, 1.0), info)

    def _design(self, rows: np.ndarray, logps: np.ndarray | None, scale: tuple | None) -> np.ndarray:
        """[intercept, probability, log-probability, embedding columns] of `rows`; the likelihood columns
        standardised by `scale` (`likelihood_scale`), 0 where unmeasured (and everywhere without it)."""
        columns = np.zeros((len(rows), FREE_COLUMNS + self.features.width), dtype=np.float32)
        columns[:, 0] = 1.0
        if logps is not None and scale is not None:
            columns[:, 1:FREE_COLUMNS] = self._likelihood_design(logps, scale)
        columns[:, FREE_COLUMNS:] = self.features.rows(rows)
        return columns

    @staticmethod
    def _likelihood_design(logps: np.ndarray, scale: tuple) -> np.ndarray:
        """The two likelihood columns standardised by `scale`, 0 where unmeasured, float32."""
        values = (likelihood_columns(logps) - scale[0]) / scale[1]
        return np.where(np.isfinite(values), values, 0.0).astype(np.float32)

    def choose(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> contract.Priority:
        """The uniform slice first, drawn from the whole pool (the run's control), then the rest by Gumbel-top-k near
        the target from the prompts it left; epoch 0, with nothing measured, wholly uniform (and no control)."""
        estimate = self.estimate(state)
        if estimate is None:
            return contract.Priority(contract.draw_order(np.zeros(context.n_prompts), rng))
        rates = estimate.rates[np.searchsorted(self.gc_ids, context.gc_ids)]
        order, control = aimed_order(rates, self.options, context.subset_size, rng)
        return contract.Priority(order, rates, np.sort(control) if len(control) else None)

    def describe(self, state: ScheduleState, context: contract.RankingContext, positions: np.ndarray) -> dict[str, Any]:
        """How the fit went (penalty, at the grid's edge, groups fitted) and the picked prompts' mean estimate."""
        estimate = self.estimate(state)
        if estimate is None:
            return {}
        picked = estimate.rates[np.searchsorted(self.gc_ids, context.gc_ids)[positions]]
        mean = recorded(math.fsum(picked.tolist()) / len(picked)) if len(picked) else None
        return {**estimate.figures, "estimate_mean": mean}

    def report(
        self, state: ScheduleState, context: contract.RankingContext, drawn: contract.Selection
    ) -> contract.Report:
        estimates = drawn.estimates
        likelihood = " and the policy's answer likelihood" if self.options.likelihood else ""
        source = "probe: ridge across prompts on the embedding" + likelihood
        figures = self.describe(state, context, drawn.positions) | drawn.info
        note = None
        if figures.get("likelihood_weighed") is False:
            from gaincurate.schedule.strategies.probe.refresh import unshaped  # only with --likelihood

            measured = Measured(state.memory)
            equal = reaches_draw(self.weighed(measured, now=state.epoch - 1)) == EQUAL_REWARDS
            note = unshaped(state.epoch, figures, equal, len(measured.latest["gc_ids"]))
        return contract.Report(estimates, source if estimates is not None else "no estimate yet",
                             contract.target_band(self.options.target), figures, note)  # fmt: skip
