"""The scheduler: a pure state machine from feedback (and the model's fresh scores) to the next epoch's prompts.

No files, no models: a trainer callback can drive it in process, and `gaincurate.schedule.run.run` wraps
it with a run directory. One step consumes the latest epoch's feedback through the strategy's `observe`
(`gaincurate.schedule.strategies.contract.Strategy`, with what the newest model said: `Fresh`) and draws the next
epoch with `numpy.random.default_rng([seed, epoch])`, so the same config, seed and feedback always give the same
epochs.

    scheduler = Scheduler(ScheduleConfig(strategy="gain", seed=1), prompts)
    first = scheduler.step().plan  # epoch 0, mu = 0 (gain's drawn number)
    step = scheduler.step(feedback=scheduler.summarize(rollouts), ang=mean_fresh_score)
    step.record.update["delta"], step.plan.gc_ids               # how gain moved mu; epoch 1's prompts
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gaincurate.feedback_lines import checked_rollout, parse_record
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.feedback import Feedback, summarize_feedback
from gaincurate.schedule.gate import AIMING, LEVEL_WORDS, PAUSED, Evidence, Gate, advance
from gaincurate.schedule.readout import drawn, epoch_evidence, epoch_readout
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import (
    FRESH_SCORES,
    LIKELIHOOD,
    POLICY,
    EpochEnd,
    Fresh,
    PolicyAt,
    PromptSet,
    RankingContext,
    Report,
    Strategy,
    StrategyInputs,
    Wants,
    draw_info,
    observed,
)
from gaincurate.schedule.strategies.filters import Filter, chosen_through, described
from gaincurate.schedule.strategies.registry import build_filters, build_strategy


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's prompts: rank positions (ascending) and their gc_ids, and the strategy's numbers about the
    draw (`draw`: gain's mu), which the epoch file's metadata keeps."""

    epoch: int
    positions: np.ndarray
    gc_ids: np.ndarray
    draw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rescored:
    """What the newest model says of some prompts: fresh gc_scores (`gaincurate.scoring.rescore`) and/or its
    log-probability of each one's reference answer (`gaincurate.scoring.likelihood`), as the strategy needs."""

    gc_ids: np.ndarray
    scores: np.ndarray | None
    likelihood: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("scores", "likelihood"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.gc_ids):
                raise ValueError(f"Rescored has {len(self.gc_ids)} ids but {len(values)} {name}")


@dataclass(frozen=True)
class EpochRecord:
    """What an epoch's feedback did: one line of history.jsonl."""

    epoch: int
    positions: np.ndarray
    gc_ids: np.ndarray
    feedback: Feedback
    update: dict[str, Any] = field(default_factory=dict)  # the strategy's numbers (gain: mu, ang, delta, mu_next)
    selection: dict[str, Any] | None = None  # how the strategy drew the epoch (skips, posteriors), if it says
    reference: dict[str, Any] | None = None  # a fresh reference set rolled after the epoch: what it cost
    readout: dict[str, Any] | None = None  # the savings readout (`gaincurate.schedule.readout`)
    control: tuple[int, ...] | None = None  # gc_ids of the epoch's uniform slice: the readout's control, auditable

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "subset_ids": [int(i) for i in self.gc_ids],
            "positions": [int(p) for p in self.positions],
            **({"control_ids": list(self.control)} if self.control is not None else {}),
            **self.feedback.to_dict(),
            **self.update,
            **({"selection": self.selection} if self.selection is not None else {}),
            **({"reference": self.reference} if self.reference is not None else {}),
            **({"readout": self.readout} if self.readout is not None else {}),
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


class Scheduler:
    """A curriculum over a fixed prompt set; `state` is all that changes."""

    def __init__(
        self,
        config: ScheduleConfig,
        prompts: PromptSet,
        state: ScheduleState | None = None,
        *,
        strategy: Strategy | None = None,
        filters: tuple[Filter, ...] = (),
        scores: Any = None,
    ) -> None:
        """`scores` (a `ScoresInput`): the scores table a strategy may need (dots: embeddings); `strategy`: one
        built by the caller (a bench's oracle) instead of the config's, under `filters` (none unless given)."""
        self.config = config if strategy is not None else config.resolved(scores.manifest if scores is not None else {})
        self.prompts = prompts
        self.n_prompts = len(prompts)
        self.subset_size = config.subset_count(len(prompts))
        if strategy is None:
            inputs = StrategyInputs(
                prompts=prompts, subset_size=self.subset_size, seed=config.seed, reward_min=config.reward_min,
                reward_max=config.reward_max, band=config.band, scores=scores, initial=state is None,
            )  # fmt: skip
            strategy = build_strategy(self.config, inputs)
            filters = build_filters(self.config, strategy, inputs)
        self.strategy = strategy
        self.filters = tuple(filters)  # steps over the strategy's draw (`Filter`), in `registry.FILTERS` order
        self.policy: Any = None  # what a strategy that needs `POLICY` measures with (`hand_policy`)
        self.reported: Report | None = None  # the strategy's own report of the latest draw (not kept in the state)
        if state is None:
            order, memory = self.strategy.start(prompts)
            for step in self.filters:
                memory = step.initial_memory(memory)
            state = ScheduleState(ranking=prompts.gc_ids[order], scores=prompts.scores[order], memory=memory)
        elif not np.array_equal(np.sort(state.ranking), prompts.gc_ids):
            raise ValueError("the state's ranking does not hold the same gc_ids as the prompt set")
        self.state = state.resolved(prompts.gc_ids, prompts.scores)  # state.json keeps only what differs from them

    @property
    def current(self) -> EpochPlan | None:
        """The latest emitted epoch, or None before epoch 0."""
        if self.state.epoch < 0:
            return None
        state = self.state
        return EpochPlan(state.epoch, state.positions, state.subset_ids, draw_info(self.strategy, state.memory))

    def hand_policy(self, at: PolicyAt) -> None:
        """Give a strategy that needs `POLICY` the policy being trained, where it is, from now on (others: nothing)."""
        about = self.strategy.about
        if POLICY in about.needs:
            if about.measure is None:
                raise ValueError(f"the {self.strategy.name} strategy needs the policy and declares no `about.measure`")
            self.policy = about.measure(at)

    def wants(self, feedback: Feedback | Iterable[Any] | None = None) -> Wants:
        """What the strategy asks of the newest model after the current epoch (nothing before epoch 0), given the
        epoch's `feedback` (None: asked ahead, before the rollouts are in; the answer is what it may ask for)."""
        if self.state.epoch < 0:
            return Wants()
        if feedback is None:
            return self.strategy.wants(self.state) if (self.state.gate or Gate()).asks_model else Wants()
        feedback = feedback if isinstance(feedback, Feedback) else self.summarize(feedback)
        evidence = epoch_evidence(self.state.selection, self.state.subset_ids, feedback)
        if not self._gate_after(self.state, evidence)[0].asks_model:  # paused: the run spends what uniform would
            return Wants()
        return self.strategy.wants(self.state, EpochEnd(feedback, lambda: self._upcoming(feedback)))

    def rescore_ids(self, feedback: Feedback | Iterable[Any] | None = None) -> np.ndarray | None:
        """gc_ids (ascending) the strategy wants re-scored after the current epoch (`wants`), or None: none due."""
        return self.wants(feedback).rescore

    def summarize(self, records: Iterable[Any], *, checked: bool = False) -> Feedback:
        """Reduce the current epoch's rollout records ({"gc_id", "reward"|"correct"}) to a `Feedback`; `checked`:
        `(gc_id, reward)` pairs whose rewards were checked when handed in (`Run.record`), not checked again."""
        if self.state.epoch < 0:
            raise ValueError("no epoch has been drawn yet, so there is no feedback to summarize")
        return summarize_feedback(
            records,
            epoch_ids=self.state.subset_ids,
            known_ids=self.state.ranking,
            reward_max=self.config.reward_max,
            reward_min=self.config.reward_min,
            parse=checked_rollout if checked else parse_record,
        )

    def step(
        self,
        *,
        feedback: Feedback | Iterable[Any] | None = None,
        ang: float | None = None,
        rescored: Rescored | None = None,
        reference: FreshReference | None = None,
    ) -> EpochStep:
        """Draw epoch 0 (no arguments), or consume the current epoch's feedback and draw the next.

        `reference` (dots) adds a fresh reference set, measured after the current epoch, to the pass rates: taken
        only when the strategy asks for one now (`Wants.reference`). `ang` (the epoch's mean angle score under the
        live model) and `rescored` (fresh scores from the newest checkpoint) are the model's signal, which a
        strategy that needs fresh scores (gain) reads in `observe` (through `Fresh`).
        """
        state = self.state
        if state.epoch < 0:
            if feedback is not None or ang is not None or rescored is not None:
                raise ValueError("epoch 0 is drawn without feedback; call step() with no arguments first")
            return EpochStep(self._draw(state), None)
        if feedback is None:
            raise ValueError(f"epoch {state.epoch} needs its feedback before the next epoch can be drawn")
        if not isinstance(feedback, Feedback):
            feedback = self.summarize(feedback)
        # The strategy folds the epoch's feedback and what the newest model said into its memory; then each filter
        # adds its own keys beside the strategy's.
        if reference is not None and not self.wants(feedback).reference:
            strategy = self.config.strategy
            raise ValueError(f"the {strategy} strategy asks for no fresh reference set after epoch {state.epoch}")
        fresh = Fresh(
            ang, *(() if rescored is None else (rescored.gc_ids, rescored.scores, rescored.likelihood)),
            reference=None if reference is None else reference.per_prompt, policy=self.policy,
        )  # fmt: skip
        following, update, readout = self._following(state, feedback, fresh)
        record = EpochRecord(
            epoch=state.epoch,
            positions=state.positions,
            gc_ids=state.subset_ids,
            feedback=feedback,
            update=update,
            selection=(state.selection.figures or None) if state.selection is not None else None,
            reference=None if reference is None else reference.info,
            readout=readout,
            control=state.selection.control if state.selection is not None else None,
        )
        return EpochStep(self._draw(following), record)

    def _following(self, state: ScheduleState, feedback: Feedback, fresh: Fresh) -> tuple[ScheduleState, Any, Any]:
        """The state the next epoch is drawn from, after the current epoch's `feedback` and `fresh` (the strategy's
        memory, then each filter's keys beside it); the numbers its update gives the history line; the readout."""
        learnt = observed(self.strategy.observe(state, feedback, fresh))
        memory = learnt.memory
        for step in self.filters:
            memory = step.observe(state, feedback, memory)
        readout, tally, evidence = epoch_readout(state.selection, state.subset_ids, feedback, state.tally)
        gate, change = self._gate_after(state, evidence)
        if gate.level != AIMING or change:  # a run that never pauses says nothing of it
            readout |= {"aim": LEVEL_WORDS[gate.level], **({"aim_change": change} if change else {})}
        following = replace(
            state,
            epoch=state.epoch + 1,
            memory=memory,
            ranking=state.ranking if learnt.ranking is None else learnt.ranking,
            scores=state.scores if learnt.scores is None else learnt.scores,
            tally=tally,
            gate=gate if self.config.pause and gate != Gate() else None,  # kept once there is evidence
        )
        return following, learnt.numbers, readout

    def _gate_after(self, state: ScheduleState, evidence: Evidence) -> tuple[Gate, str | None]:
        """Whether aiming is paused after the epoch's groups as arms (`evidence`; `gaincurate.schedule.gate`), and
        what changed, in words. Off (`--no-pause`): always aiming."""
        gate = state.gate or Gate()
        if not self.config.pause:
            return Gate(), None
        refreshes = bool(self.strategy.about.needs & {LIKELIHOOD, FRESH_SCORES})
        return advance(gate, evidence, refreshes=refreshes)

    def _upcoming(self, feedback: Feedback) -> np.ndarray:
        """The gc_ids (ascending) `step` would draw next were nothing measured after the epoch (the state is kept)."""
        following = self._following(self.state, feedback, Fresh(policy=self.policy))[0]
        chosen = self._choose(following)[2]
        return np.sort(following.ranking[np.asarray(chosen.positions, dtype=np.int64)])

    def _choose(self, state: ScheduleState) -> tuple[ScheduleState, RankingContext, Any]:
        state = replace(state, epoch=state.epoch if state.epoch >= 0 else 0)
        context = RankingContext(state.ranking, state.scores, self.subset_size, self.policy)
        rng = np.random.default_rng([self.config.seed, state.epoch])
        return state, context, chosen_through(self.strategy, self.filters, state, context, rng)

    def _draw(self, state: ScheduleState) -> EpochPlan:
        state, context, chosen = self._choose(state)
        if state.gate is not None and state.gate.level == PAUSED:  # uniformly, by a stream seeded by (seed, epoch)
            rng = np.random.default_rng([self.config.seed, state.epoch, PAUSED])
            positions = np.sort(rng.permutation(context.n_prompts)[: self.subset_size]).astype(np.int64)
            # The filters' figures describe the draw trained on, not the aimed one set aside (which kept, skipped).
            info = described(self.filters, context, positions, chosen.estimates) if self.filters else chosen.info
            chosen = replace(chosen, positions=positions, control=None, info=info)
        positions = np.asarray(chosen.positions, dtype=np.int64)
        # What the strategy says of the draw, as it stood: kept in the state until the epoch's history line is written.
        report = self.reported = self.strategy.report(state, context, chosen)
        for step in self.filters:
            report = step.aim(report)
        control = None if chosen.control is None else tuple(int(i) for i in state.ranking[chosen.control])
        record = drawn(report, positions, control)
        self.state = replace(state, positions=positions, selection=record)
        return EpochPlan(state.epoch, positions, state.ranking[positions], draw_info(self.strategy, self.state.memory))
