"""The scheduler: a pure state machine from (feedback, angle) to the next epoch's prompts.

No files, no models: a trainer callback can drive it in process, and `gaincurate.schedule.driver` wraps
it with a run directory. One step consumes the latest epoch's feedback, moves mu (DESIGN section 4)
and draws the next epoch with `numpy.random.default_rng([seed, epoch])`, so the same config, seed
and feedback always give the same epochs.

    scheduler = Scheduler(ScheduleConfig(seed=1), prompts)
    first = scheduler.next_epoch().plan                         # epoch 0, mu = 0
    step = scheduler.next_epoch(feedback=scheduler.summarize(rollouts), ang=mean_fresh_score)
    step.record.delta, step.plan.gc_ids                         # how mu moved; epoch 1's prompts
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gaincurate.metrics import apply_debias
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.feedback import Feedback, summarize_feedback
from gaincurate.schedule.registry import prompt_strategy
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies import PromptSet, RankingContext, Selection, Strategy
from gaincurate.schedule.update import angle_signal, mu_delta, next_mu

WINDOW_SIGMAS = 3.0  # `--rescore window` re-scores positions within mu +- 3 sigma


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's prompts: rank positions (ascending) and their gc_ids, drawn around `mu`."""

    epoch: int
    mu: float
    positions: np.ndarray
    gc_ids: np.ndarray


@dataclass(frozen=True)
class Rescored:
    """Fresh gc_scores of some prompts under the newest model (from `gaincurate.scoring.rescore`)."""

    gc_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if len(self.gc_ids) != len(self.scores):
            raise ValueError(f"Rescored has {len(self.gc_ids)} ids but {len(self.scores)} scores")


@dataclass(frozen=True)
class EpochRecord:
    """What happened to mu after an epoch: one line of history.jsonl."""

    epoch: int
    mu: float
    positions: np.ndarray
    gc_ids: np.ndarray
    feedback: Feedback
    ang: float | None
    ang_source: str  # "given", "rescored" or "stored"
    signal: float
    delta: float
    mu_next: float
    reranked: bool
    selection: dict[str, Any] | None = None  # how the strategy drew the epoch (skips, posteriors), if it says
    reference: dict[str, Any] | None = None  # a fresh reference set rolled after the epoch: what it cost
    direction: dict[str, Any] | None = None  # gain --direction auto: the ranking kept or reversed after this epoch

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "mu": self.mu,
            "subset_ids": [int(i) for i in self.gc_ids],
            "positions": [int(p) for p in self.positions],
            **self.feedback.to_dict(),
            "ang": self.ang,
            "ang_source": self.ang_source,
            "signal": self.signal,
            "delta": self.delta,
            "mu_next": self.mu_next,
            "reranked": self.reranked,
            **({"selection": self.selection} if self.selection is not None else {}),
            **({"reference": self.reference} if self.reference is not None else {}),
            **({"direction": self.direction} if self.direction is not None else {}),
        }


@dataclass(frozen=True)
class FreshReference:
    """Rollouts of a fresh reference set, rolled with the newest checkpoint after the current epoch (dots).

    `per_prompt` holds {gc_id: (sum of correctness, rollouts)}; `info` what it cost (prompts, rollouts, seconds),
    which the epoch's history line keeps, since those rollouts are spent beside training's.
    """

    per_prompt: dict[int, tuple[float, int]]
    info: dict[str, Any]


@dataclass(frozen=True)
class EpochStep:
    plan: EpochPlan  # the epoch just drawn
    record: EpochRecord | None  # the update from the previous epoch; None for epoch 0


def innermost(strategy: Any, attribute: str) -> Any:
    """`attribute` of the strategy, or of the base under its filters (--band, --skip-zero-variance); else None."""
    while strategy is not None:
        found = getattr(strategy, attribute, None)
        if found is not None:
            return found
        strategy = getattr(strategy, "base", None)
    return None


class Scheduler:
    """GAIN-RL-style curriculum over a fixed prompt set; `state` is all that changes."""

    def __init__(
        self,
        config: ScheduleConfig,
        prompts: PromptSet,
        state: ScheduleState | None = None,
        *,
        strategy: Strategy | None = None,
    ) -> None:
        self.config = config
        self.params = config.resolve(len(prompts))
        self.prompts = prompts
        # A strategy that needs more than the prompt set (dots: embeddings) is built by the caller.
        self.strategy = strategy if strategy is not None else prompt_strategy(prompts, config)
        if state is None:
            order = self.strategy.rank(prompts)
            initial_memory = getattr(self.strategy, "initial_memory", None)
            state = ScheduleState(
                ranking=prompts.gc_ids[order],
                scores=prompts.scores[order],
                memory=initial_memory() if initial_memory is not None else None,
            )
        elif not np.array_equal(np.sort(state.ranking), prompts.gc_ids):
            raise ValueError("the state's ranking does not hold the same gc_ids as the prompt set")
        self.state = state
        self._order = np.argsort(state.ranking, kind="stable")

    @property
    def current(self) -> EpochPlan | None:
        """The latest emitted epoch, or None before epoch 0."""
        if self.state.epoch < 0:
            return None
        return EpochPlan(self.state.epoch, self.state.mu, self.state.positions, self.state.subset_ids)

    def rescore_due(self) -> bool:
        """Whether the config asks for fresh scores after the current epoch."""
        params = self.params
        return params.rescore != "none" and self.state.epoch >= 0 and (self.state.epoch + 1) % params.rescore_every == 0

    def rescore_ids(self) -> np.ndarray | None:
        """gc_ids (ascending) to re-score after the current epoch, or None when none are due."""
        if not self.rescore_due():
            return None
        state, mode = self.state, self.params.rescore
        if mode == "full":
            return np.sort(state.ranking)
        positions = state.positions
        if mode == "window":
            reach = WINDOW_SIGMAS * self.params.sigma
            low, high = max(0, math.ceil(state.mu - reach)), min(len(state.ranking) - 1, math.floor(state.mu + reach))
            positions = np.union1d(positions, np.arange(low, high + 1))
        return np.sort(state.ranking[positions])

    def summarize(self, records: Iterable[Any]) -> Feedback:
        """Reduce the current epoch's rollout records ({"gc_id", "reward"|"correct"}) to a `Feedback`."""
        if self.state.epoch < 0:
            raise ValueError("no epoch has been drawn yet, so there is no feedback to summarize")
        return summarize_feedback(
            records,
            epoch_ids=self.state.subset_ids,
            known_ids=self.state.ranking,
            reward_max=self.params.reward_max,
            reward_min=self.params.reward_min,
        )

    def next_epoch(
        self,
        *,
        feedback: Feedback | Iterable[Any] | None = None,
        ang: float | None = None,
        rescored: Rescored | None = None,
        reference: FreshReference | None = None,
    ) -> EpochStep:
        """Draw epoch 0 (no arguments), or consume the current epoch's feedback and draw the next.

        `reference` (dots) adds a fresh reference set, measured after the current epoch, to the pass rates.

        The angle term carries model signal only: `ang` (an in-process caller that scored the epoch's prompts
        with the live model), or else the mean fresh score of the epoch's prompts in `rescored`. Without
        either, the stored mean is logged but the angle term is off, and mu moves by accuracy alone.
        """
        state = self.state
        if state.epoch < 0:
            if feedback is not None or ang is not None or rescored is not None:
                raise ValueError("epoch 0 is drawn without feedback; call next_epoch() with no arguments first")
            return EpochStep(self._draw(state), None)
        if feedback is None:
            raise ValueError(f"epoch {state.epoch} needs its feedback before the next epoch can be drawn")
        if not isinstance(feedback, Feedback):
            feedback = self.summarize(feedback)

        scores, refreshed = state.scores, np.zeros(len(state.scores), dtype=bool)
        if rescored is not None:
            scores = scores.copy()
            positions = self._positions_of(rescored.gc_ids)
            scores[positions] = np.asarray(rescored.scores, dtype=np.float64)
            refreshed[positions] = True
        ang_value, source, signal = self._angle(ang, rescored, scores, refreshed)
        delta = mu_delta(feedback.accuracy, signal, self.params)
        mu = next_mu(state.mu, delta, self.params.n_prompts)

        ranking, kept_scores, reranked = state.ranking, state.scores, False
        if rescored is not None and self.params.rescore in ("window", "full"):
            kept_scores = scores
        if rescored is not None and self.params.rescore == "full" and refreshed.all():
            ranking, kept_scores = self._rerank(scores)
            reranked = True
        record = EpochRecord(
            epoch=state.epoch,
            mu=state.mu,
            positions=state.positions,
            gc_ids=state.subset_ids,
            feedback=feedback,
            ang=ang_value if ang_value is not None and math.isfinite(ang_value) else None,
            ang_source=source,
            signal=signal,
            delta=delta,
            mu_next=mu,
            reranked=reranked,
            selection=(state.memory or {}).get("selection"),
            reference=None if reference is None else reference.info,
        )
        following = replace(state, epoch=state.epoch + 1, mu=mu, ranking=ranking, scores=kept_scores)
        observe = getattr(self.strategy, "observe", None)
        if observe is not None:  # a stateful strategy folds the epoch's per-prompt feedback into its memory
            following = replace(following, memory=observe(state, feedback))
        if reference is not None:
            # dots keeps the pass rates, also under the --band and --skip-zero-variance filters (its `base`).
            measure = innermost(self.strategy, "measure")
            if measure is None:
                raise ValueError(f"the {self.strategy.name} strategy keeps no pass rates for a fresh reference set")
            following = replace(following, memory=measure(following, reference.per_prompt, time=state.epoch))
        orient = innermost(self.strategy, "orient")
        if orient is not None:  # gain --direction auto: the first epoch's pass rates keep or reverse the ranking
            following, direction = orient(state, following, feedback)
            record = record if direction is None else replace(record, direction=direction)
        return EpochStep(self._draw(following), record)

    def _angle(
        self, ang: float | None, rescored: Rescored | None, scores: np.ndarray, refreshed: np.ndarray
    ) -> tuple[float | None, str, float]:
        """(ang, its source, the signal fed to tanh) for the current epoch.

        Only fresh scores move mu: `centered` standardises with the mean and spread of the same fresh scores
        (`rescored`), never with stored ones, which a different model produced on a different scale.
        """
        positions = self.state.positions
        fresh = None if rescored is None else np.asarray(rescored.scores, dtype=np.float64)
        fresh = None if fresh is None else fresh[np.isfinite(fresh)]
        mean, std = (None, None) if fresh is None or not len(fresh) else (float(fresh.mean()), float(fresh.std()))
        if ang is not None:
            if self.params.angle_signal == "centered" and mean is None:
                raise ValueError("--angle-signal centered needs the fresh scores ang is centred on: pass rescored=")
            source, value = "given", float(ang)
        else:
            own = positions[refreshed[positions]]  # the epoch's prompts that have a fresh score
            own = own[np.isfinite(scores[own])]
            stored = scores[positions][np.isfinite(scores[positions])]
            if not len(own):  # no model signal: the stored mean is logged, the angle term is off
                return (float(stored.mean()) if len(stored) else None), "stored", 0.0
            source, value = "rescored", float(scores[own].mean())
        return value, source, angle_signal(value, mode=self.params.angle_signal, score_mean=mean, score_std=std)

    def _draw(self, state: ScheduleState) -> EpochPlan:
        epoch = state.epoch if state.epoch >= 0 else 0
        state = replace(state, epoch=epoch)
        context = RankingContext(gc_ids=state.ranking, scores=state.scores, params=self.params)
        rng = np.random.default_rng([self.params.seed, epoch])
        chosen = self.strategy.select(state, context, rng)
        if isinstance(chosen, Selection):  # kept in the state until the epoch's history line is written
            state = replace(state, memory={**(state.memory or {}), "selection": chosen.info})
            chosen = chosen.positions
        positions = np.asarray(chosen, dtype=np.int64)
        self.state = replace(state, positions=positions)
        self._order = np.argsort(state.ranking, kind="stable")
        return EpochPlan(epoch, state.mu, positions, state.ranking[positions])

    def _positions_of(self, gc_ids: np.ndarray) -> np.ndarray:
        gc_ids = np.asarray(gc_ids, dtype=np.int64)
        sorted_ids = self.state.ranking[self._order]
        found = np.clip(np.searchsorted(sorted_ids, gc_ids), 0, len(sorted_ids) - 1)
        unknown = gc_ids[sorted_ids[found] != gc_ids]
        if len(unknown):
            raise ValueError(f"re-scored gc_id {int(unknown[0])} is not in the prompt set")
        return self._order[found]

    def _rerank(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new ranking from fresh scores (given per rank position), with the prompt set's debias."""
        by_id = scores[self._order]  # the ranking sorted is the prompt set's gc_id order
        prompts = self.prompts
        fresh = PromptSet(
            gc_ids=prompts.gc_ids,
            scores=by_id,
            ranking_scores=apply_debias(by_id, prompts.question_tokens, prompts.debias),
            question_tokens=prompts.question_tokens,
            debias=prompts.debias,
        )
        order = self.strategy.rank(fresh)
        return prompts.gc_ids[order], by_id[order]
