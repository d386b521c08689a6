"""The `gain` strategy (GAIN-RL, arXiv 2506.02281) and `length`: a Gaussian over a ranking, centred on mu.

`gain` ranks by angle concentration, highest first, and draws `subset_size` positions without replacement
from a Gaussian of width sigma around mu (Gumbel-top-k, `gaincurate.schedule.strategies.contract`). After each epoch mu
moves by the GAIN-RL update (`gaincurate.schedule.strategies.gain.update`):

    delta     = clamp(n * tanh(alpha * (acc - beta)) + n * tanh(alpha * signal), adj_min, adj_max)
    mu_next   = clamp(mu + delta, 0, N - 1)

where `signal` is the angle term: the mean fresh score of the epoch's prompts under the newest model (`--rescore`),
or an `ang` given in process; without either the angle term is off and mu moves by accuracy alone. mu lives in
this strategy's memory (state.json), and each epoch's history line keeps mu, ang, its source, the signal, delta
and mu_next. `length` is the same schedule over a shortest-question-first ranking (the confound baseline).

The defaults are the released hyperparameters (n=500, sigma=1000, adj_max=1000) divided by 7,500, the size of
the MATH training set they were tuned on (`gaincurate.schedule.sizes`), so at N=7,500 they are exactly the
released numbers. gain's ablation options (docs/strategies.md, "GAIN-RL ablation options") each replace one part
of the published schedule:

* `ranking`: "score" (published) or "random": a permutation seeded by the run's seed, fixed for the run, so the
  accuracy-driven centre runs over an order that knows nothing of the prompts (the controller alone);
* `mu_control`: "feedback" (published) or "sweep": mu moves `sweep_rate` ranks every epoch whatever the feedback
  (the order alone); left out, the sweep rate is the step size n, the step the published update takes when
  accuracy sits at beta and the raw angle term is saturated (n tanh(0) + n tanh(2 x 1.4) = 0.993 n);
* `direction`: "high-first" (published) or "auto": the first epoch's pass rates keep or reverse the ranking
  (`gaincurate.schedule.strategies.gain.direction`);
* a negative `adj_min` lets the feedback update move mu back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.errors import ConfigError, setting
from gaincurate.metrics import apply_debias
from gaincurate.schedule import sizes
from gaincurate.schedule.options import NON_NEGATIVE, RATE, Options, option, size, whole
from gaincurate.schedule.strategies import contract
from gaincurate.schedule.strategies.gain.direction import orient
from gaincurate.schedule.strategies.gain.update import (
    MU_COLUMNS,
    angle_signal,
    angle_source_note,
    mu_delta,
    mu_drawn,
    mu_moved,
    next_mu,
    positions_of,
)

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

RESCORE_MODES = ("none", "subset", "window", "full")
ANGLE_SIGNALS = ("raw", "centered")
RANKINGS = ("score", "random")
MU_CONTROLS = ("feedback", "sweep")
DIRECTIONS = ("high-first", "auto")
WINDOW_SIGMAS = 3.0  # `--rescore window` re-scores positions within mu +- 3 sigma
# `gain --ranking random`: its permutation's stream in the seed sequence, apart from the draws seeded by
# (seed, epoch) and the training-order shuffle's (seed, epoch, 1) (gaincurate.schedule.order).
RANKING_STREAM = 2
SHARE = " A number is ranks; a share of the prompt count N is a percentage, e.g. 2%."


@dataclass(frozen=True, kw_only=True)
class LengthOptions(Options):
    """The published GAIN-RL schedule: the Gaussian, the update of mu, and where its angle term comes from."""

    sigma: float | str | None = option(
        None, "Gaussian width." + SHARE, size("sigma"), cli="size", shown=sizes.default_text("sigma")
    )
    step_size: float | str | None = option(
        None, "n, the step scale of mu." + SHARE, size("step_size"), cli="size", shown=sizes.default_text("step_size")
    )
    alpha: float = option(2.0, "tanh sharpness of the update of mu.", NON_NEGATIVE)
    beta: float = option(0.5, "Target accuracy of the update of mu.", RATE)
    adj_min: float | str | None = option(
        0.0, "Lower clamp of a step of mu (below 0 mu can move back)." + SHARE, size("adj_min"), cli="size"
    )
    adj_max: float | str | None = option(
        None, "Upper clamp of a step of mu." + SHARE, size("adj_max"), cli="size", shown=sizes.default_text("adj_max")
    )
    rescore: str = option(
        "subset",
        "Re-score from checkpoints for the angle term: the epoch's prompts, mu +- 3 sigma, every prompt "
        "(and re-rank), or none (no angle term).",
        choices=RESCORE_MODES,
    )
    rescore_every: int = option(1, "Re-score every K epochs.", whole(1))
    angle_signal: str = option(
        "raw",
        "Angle term: the raw fresh score, or centered on the fresh scores (needs --rescore window or full).",
        choices=ANGLE_SIGNALS,
    )

    def in_ranks(self, n_prompts: int) -> dict[str, Any]:
        return {k: v for k, v in vars(resolve_sizes(self, n_prompts)).items() if k != "n_prompts"}

    def __post_init__(self) -> None:
        super().__post_init__()
        low, high = self.adj_min, self.adj_max  # in ranks they compare now; shares of N when N is known
        if isinstance(low, float) and isinstance(high, float) and low > high:
            raise ConfigError(f"{setting('adj_min', low)} is above {setting('adj_max', high)}; swap them")
        if self.angle_signal == "centered" and self.rescore in ("none", "subset"):
            # Centring needs the mean and spread of fresh scores beyond the epoch's own prompts: centred on itself,
            # the subset's mean is always 0; centred on the stored scores, it mixes two models' scales.
            raise ConfigError(
                f"{setting('angle_signal', 'centered')} compares the epoch's fresh scores with fresh scores around "
                f"it; with {setting('rescore', self.rescore)} there are none. Pass {setting('rescore', 'window')} "
                f"or {setting('rescore', 'full')}, or {setting('angle_signal', 'raw')}"
            )


@dataclass(frozen=True, kw_only=True)
class GainOptions(LengthOptions):
    """gain's options: the published schedule, and the ablation options (each default is the published one)."""

    ranking: str = option("score", "Rank by angle score, or by a permutation seeded by --seed.", choices=RANKINGS)
    mu_control: str = option(
        "feedback", "Move mu by the GAIN-RL update, or sweep it --sweep-rate ranks an epoch.", choices=MU_CONTROLS
    )
    sweep_rate: float | str | None = option(
        None, "--mu-control sweep: ranks mu moves per epoch." + SHARE, size("sweep_rate"), cli="size",
        shown="--step-size",
    )  # fmt: skip
    direction: str = option(
        "high-first",
        "Highest score first, or auto: reversed when the first epoch's pass rates fall with the score.",
        choices=DIRECTIONS,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sweep_rate is not None and self.mu_control != "sweep":
            raise ConfigError(
                f"{setting('sweep_rate')} is how far mu moves each epoch under {setting('mu_control', 'sweep')}; "
                f"pass {setting('mu_control', 'sweep')} or drop {setting('sweep_rate')}"
            )
        if self.direction == "auto" and self.rescore == "full":
            raise ConfigError(
                f"{setting('direction', 'auto')} with {setting('rescore', 'full')}: each full re-score re-ranks "
                f"highest score first and would undo a reversal; pass {setting('rescore', 'subset')} or "
                f"{setting('rescore', 'window')}"
            )
        if self.direction == "auto" and self.ranking == "random":
            raise ConfigError(
                f"{setting('direction', 'auto')} orients the angle ranking, and a random ranking has no direction to "
                f"take from the data; pass {setting('ranking', 'score')} or drop {setting('direction', 'auto')}"
            )


@dataclass(frozen=True)
class Sizes:
    """gain's sizes resolved in ranks for N prompts."""

    n_prompts: int
    sigma: float
    step_size: float
    adj_min: float
    adj_max: float
    sweep_rate: float


def resolve_sizes(options: LengthOptions, n_prompts: int) -> Sizes:
    def absolute(name: str) -> float:
        return sizes.absolute(name, getattr(options, name), n_prompts)

    adj_min, adj_max = absolute("adj_min"), absolute("adj_max")
    if adj_min > adj_max:
        raise ConfigError(
            f"{setting('adj_min')} resolves to {adj_min:g}, above {setting('adj_max', adj_max)} for N={n_prompts}; "
            "swap them"
        )
    sweep = getattr(options, "sweep_rate", None)
    return Sizes(
        n_prompts=n_prompts,
        sigma=absolute("sigma"),
        step_size=absolute("step_size"),
        adj_min=adj_min,
        adj_max=adj_max,
        sweep_rate=absolute("step_size") if sweep is None else sizes.absolute("sweep_rate", sweep, n_prompts),
    )


class LengthStrategy(contract.Strategy):
    """gain's schedule over the question lengths: shortest question first, for the length confound."""

    name = "length"
    about = contract.About(
        options=LengthOptions,
        summary="gain's schedule over a shortest-question-first ranking (the length confound)",
        draws="a Gaussian around mu over the shortest-question-first ranking; mu moves with each epoch's accuracy",
        needs=frozenset({contract.SCORES, contract.FRESH_SCORES}),
        columns=MU_COLUMNS,  # mu (drawn, so the epoch file keeps it), acc, ang, delta, mu next
        update_words=mu_moved,
        draw_words=mu_drawn,
    )

    def __init__(
        self, options: LengthOptions | None = None, n_prompts: int = 1, prompts: contract.PromptSet | None = None
    ) -> None:
        """`n_prompts` resolves the sizes given as shares of N (and the defaults); `prompts` allows a re-rank."""
        options = options if options is not None else self.about.options()
        self.options = options
        self.sizes = resolve_sizes(options, n_prompts)
        resolved = options.in_ranks(n_prompts)
        self.about = replace(
            self.about,
            needs=self.about.needs - ({contract.FRESH_SCORES} if options.rescore == "none" else set()),
            settings={**options.to_dict(), **resolved},
            notes=(angle_source_note(options),),
        )
        self.prompts = prompts  # for a re-rank from fresh scores (`--rescore full`)

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> LengthStrategy:
        assert isinstance(options, LengthOptions)
        return cls(options, len(inputs.prompts), inputs.prompts)

    def start(self, prompts: contract.PromptSet) -> tuple[np.ndarray, dict[str, Any]]:
        return self.rank(prompts), {"mu": 0.0}

    def rank(self, prompts: contract.PromptSet) -> np.ndarray:
        return np.lexsort((prompts.gc_ids, prompts.question_tokens)).astype(np.int64)

    @staticmethod
    def mu(state: ScheduleState) -> float:
        return float((state.memory or {})["mu"])

    def choose(self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator) -> np.ndarray:
        return contract.draw_order(
            contract.gaussian_log_weights(context.n_prompts, self.mu(state), self.sizes.sigma), rng
        )

    def wants(self, state: ScheduleState, end: contract.EpochEnd = contract.AHEAD) -> contract.Wants:
        options = self.options
        if options.rescore == "none" or state.epoch < 0 or (state.epoch + 1) % options.rescore_every:
            return contract.Wants()
        if options.rescore == "full":
            return contract.Wants(np.sort(state.ranking))
        positions = state.positions
        if options.rescore == "window":
            reach, mu = WINDOW_SIGMAS * self.sizes.sigma, self.mu(state)
            low, high = max(0, math.ceil(mu - reach)), min(len(state.ranking) - 1, math.floor(mu + reach))
            positions = np.union1d(positions, np.arange(low, high + 1))
        return contract.Wants(np.sort(state.ranking[positions]))

    def observe(
        self, state: ScheduleState, feedback: Feedback, fresh: contract.Fresh = contract.NOTHING_FRESH
    ) -> contract.Observed:
        following, numbers = self.update(state, replace(state, epoch=state.epoch + 1), feedback, fresh)
        return contract.Observed(following.memory, numbers, following.ranking, following.scores)

    def update(
        self, state: ScheduleState, following: ScheduleState, feedback: Feedback, fresh: contract.Fresh
    ) -> tuple[ScheduleState, dict[str, Any]]:
        """mu moved by the epoch's accuracy and angle term; fresh scores kept (window, full) or re-ranked (full)."""
        scores, refreshed = state.scores, np.zeros(len(state.scores), dtype=bool)
        if fresh.gc_ids is not None:
            scores = scores.copy()
            positions = positions_of(state.ranking, fresh.gc_ids)
            scores[positions] = np.asarray(fresh.scores, dtype=np.float64)
            refreshed[positions] = True
        ang, source, signal = self._angle(state, fresh, scores, refreshed)
        delta = self._delta(feedback.accuracy, signal)
        mu = next_mu(self.mu(state), delta, self.sizes.n_prompts)
        ranking, kept, reranked = state.ranking, state.scores, False
        if fresh.gc_ids is not None and self.options.rescore in ("window", "full"):
            kept = scores
        if fresh.gc_ids is not None and self.options.rescore == "full" and refreshed.all():
            ranking, kept = self._rerank(state.ranking, scores)
            reranked = True
        memory = {**(following.memory or {}), "mu": mu}
        following = replace(following, ranking=ranking, scores=kept, memory=memory)
        record = {
            "mu": self.mu(state),
            "ang": ang if ang is not None and math.isfinite(ang) else None,
            "ang_source": source,
            "signal": signal,
            "delta": delta,
            "mu_next": mu,
            "reranked": reranked,
        }
        return following, record

    def _delta(self, accuracy: float, signal: float) -> float:
        resolved, options = self.sizes, self.options
        return mu_delta(
            accuracy, signal, step_size=resolved.step_size, alpha=options.alpha, beta=options.beta,
            adj_min=resolved.adj_min, adj_max=resolved.adj_max,
        )  # fmt: skip

    def _angle(
        self, state: ScheduleState, fresh: contract.Fresh, scores: np.ndarray, refreshed: np.ndarray
    ) -> tuple[float | None, str, float]:
        """(ang, its source, the signal fed to tanh) for the current epoch.

        Only fresh scores move mu: `centered` standardises with the mean and spread of the same fresh scores,
        never with stored ones, which a different model produced on a different scale.
        """
        positions, mode = state.positions, self.options.angle_signal
        values = None if fresh.scores is None else np.asarray(fresh.scores, dtype=np.float64)
        values = None if values is None else values[np.isfinite(values)]
        mean, std = (None, None) if values is None or not len(values) else (float(values.mean()), _spread(values))
        if fresh.ang is not None:
            if mode == "centered" and mean is None:
                raise ValueError("--angle-signal centered needs the fresh scores ang is centred on: pass rescored=")
            source, value = "given", float(fresh.ang)
        else:
            own = positions[refreshed[positions]]  # the epoch's prompts that have a fresh score
            own = own[np.isfinite(scores[own])]
            stored = scores[positions][np.isfinite(scores[positions])]
            if not len(own):  # no model signal: the stored mean is logged, the angle term is off
                return (float(stored.mean()) if len(stored) else None), "stored", 0.0
            source, value = "rescored", float(scores[own].mean())
        return value, source, angle_signal(value, mode=mode, score_mean=mean, score_std=std)

    def _rerank(self, ranking: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new ranking from fresh scores (given per rank position), with the prompt set's debias."""
        prompts = self.prompts
        if prompts is None:
            raise ValueError("a re-rank needs the prompt set the strategy was built with")
        by_id = scores[np.argsort(ranking, kind="stable")]  # the ranking sorted is the prompt set's gc_id order
        fresh = replace(
            prompts, scores=by_id, ranking_scores=apply_debias(by_id, prompts.question_tokens, prompts.debias)
        )
        order = self.rank(fresh)
        return prompts.gc_ids[order], by_id[order]


class GainStrategy(LengthStrategy):
    """GAIN-RL's schedule: `LengthStrategy`'s Gaussian over the angle-concentration ranking, mu fed by the angle."""

    name = "gain"
    about = replace(
        LengthStrategy.about,
        options=GainOptions,
        summary="GAIN-RL: a Gaussian around mu over the angle ranking (lost to uniform on both bench tasks)",
        draws="a Gaussian around mu over the angle-concentration ranking, highest first; mu moves with each epoch's "
        "accuracy and angle; it keeps no pass-rate estimate",
    )

    def __init__(
        self,
        options: GainOptions | None = None,
        n_prompts: int = 1,
        prompts: contract.PromptSet | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(options, n_prompts, prompts)
        self.seed = seed

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> GainStrategy:
        assert isinstance(options, GainOptions)
        return cls(options, len(inputs.prompts), inputs.prompts, inputs.seed)

    def rank(self, prompts: contract.PromptSet) -> np.ndarray:
        if self.options.ranking == "random":  # fixed for the run: a rerank (--rescore full) gives the same order
            return np.random.default_rng([self.seed, 0, RANKING_STREAM]).permutation(len(prompts)).astype(np.int64)
        return contract.rank_by_score(prompts)

    def _delta(self, accuracy: float, signal: float) -> float:
        if self.options.mu_control == "sweep":  # the order alone: no feedback, and no adj clamp
            return self.sizes.sweep_rate
        return super()._delta(accuracy, signal)

    def update(
        self, state: ScheduleState, following: ScheduleState, feedback: Feedback, fresh: contract.Fresh
    ) -> tuple[ScheduleState, dict[str, Any]]:
        following, record = super().update(state, following, feedback, fresh)
        if self.options.direction == "auto":  # the first epoch's pass rates keep or reverse the ranking
            following, decision = orient(state, following, feedback)
            if decision is not None:
                record["direction"] = decision
        return following, record


def _spread(values: np.ndarray) -> float:
    """The standard deviation of `values`; 0 where they are all equal, not the rounding of their mean (about 1e-16,
    which would standardise an equal set into a full angle signal of either sign)."""
    return float(values.std()) if np.ptp(values) > 0 else 0.0
