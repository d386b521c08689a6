"""The `pilot` strategy: pilot candidates a pass-rate prior points at, then commit the ones that can teach.

Pilot-Commit (arXiv 2605.26606) and SPEED-RL (arXiv 2506.09016) measure candidates with a few rollouts of the
current policy before committing a full group. `screen` does that over uniformly drawn candidates and throws its
measurements away; here the candidates come from a prior that already points near the frontier, and every pilot
measurement is kept. Each prompt keeps mopps' discounted Beta posterior (`mopps`: the same update, `--prior`
and `--forget`), fed by the trainer's feedback AND by the pilots. Each epoch:

1. draw k x m candidates by the posterior: one Thompson draw per prompt (`default_rng([seed, epoch, 41])`), the
   draws nearest `--target` first;
2. pilot each with r rollouts of the current policy, through screen's `Screener` (the live model in process,
   `gaincurate rollout` on the newest checkpoint out of process), and fold the results into the posterior;
3. commit the m candidates whose pilot rate is in the band (default 0 < p < 1: the pilot saw both a right and a
   wrong answer; `--band LO,HI`: LO <= p <= HI), nearest the target first, ties by the Thompson draw; when fewer
   are in the band, the nearest of the rest fill the epoch, so it keeps its size.

Where the pilot runs. The pilot of epoch t + 1 runs in `observe`, after epoch t's feedback, with the policy that
trained epoch t (the one screen's draw would use at that moment), so its measurements go into the memory
(state.json) and survive a restart; `choose` then commits from them. Epoch 0 has no step before it: its pilot runs
in `choose`, which cannot write the memory, so epoch 0's pilot chooses that epoch but is not in the posterior.

Cost. k x r rollouts per trained prompt, every one charged, kept or not: `Metered.spent` (the bench charges it) and the
epoch's history line (`selection`: piloted, pilot_rollouts, pilot_tokens). The seconds are in the scheduler's
`Metered` screener only, so state.json stays byte-identical across runs. In TRL in process the committed prompts'
pilot completions join their trained group (`pilot_measure`; `pilot_reuse`): the trainer rolls n - r fresh
rollouts for each. Through `--trainer-cmd` and verl the trainer rolls a full group of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.errors import ConfigError
from gaincurate.lab.strategies.screen import in_band, keep_order
from gaincurate.lab.strategies.screening import Metered, Screener, Screening, screener_for
from gaincurate.numerics import recorded
from gaincurate.schedule.options import RATE, Options, is_number, option, positive_pair, whole
from gaincurate.schedule.strategies import contract
from gaincurate.schedule.strategies.mopps import (
    DEFAULT_FORGET,
    MEMORY_KEY,
    MoppsStrategy,
    posterior_mean,
    update_posterior,
)

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

PILOT_KEY = "pilot"  # the memory's pilot of the epoch about to be drawn
CANDIDATE_STREAM = 41  # the candidates' Thompson draw, apart from the stream `choose` gets
# Candidates per epoch prompt: the prior already points near the frontier, so fewer than screen's uniform 2 would
# leave little to choose from when a pilot disagrees with it; 2 keeps one spare per committed prompt.
PILOT_FACTOR = 2.0
# Rollouts per candidate: a quarter of a group of 8, as Pilot-Commit's released recipe pilots a quarter of its group
# (16 of 64, 32 of 128); one right and one wrong answer already prove that the group can teach.
PILOT_ROLLOUTS = 2


def factor_check(name: str, value: Any) -> float:
    if not is_number(value) or value < 1:
        raise ConfigError(f"{name} must be a number 1 or more (candidates per epoch prompt); got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class PilotOptions(Options):
    target: float = option(0.5, contract.TARGET_HELP, RATE)
    prior: tuple[float, float] = option((1.0, 1.0), "Beta prior A,B of every pass rate.", positive_pair, cli="pair")
    forget: float = option(DEFAULT_FORGET, "Weight old evidence keeps at each update (1: never forget).", RATE)
    pilot_factor: float = option(
        PILOT_FACTOR, "Candidates piloted per epoch prompt, k (drawn by the posterior).", factor_check
    )
    pilot_rollouts: int = option(PILOT_ROLLOUTS, "Pilot rollouts per candidate with the current policy, r.", whole(1))


@dataclass(frozen=True)
class Pilot:
    """One epoch's pilot: the candidates (rows in gc_id order, in the order drawn) and what they measured."""

    epoch: int
    rows: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    tokens: int

    @property
    def rates(self) -> np.ndarray:
        return Screening(self.sums, self.counts).rates

    def to_json(self, gc_ids: np.ndarray) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "gc_ids": gc_ids[self.rows].tolist(),
            "sums": [float(s) for s in self.sums],
            "counts": [int(c) for c in self.counts],
            "tokens": self.tokens,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], gc_ids: np.ndarray) -> Pilot:
        rows = np.searchsorted(gc_ids, np.asarray(data["gc_ids"], dtype=np.int64))
        sums, counts = np.asarray(data["sums"], dtype=np.float64), np.asarray(data["counts"], dtype=np.int64)
        return cls(int(data["epoch"]), rows.astype(np.int64), sums, counts, int(data["tokens"]))


def thompson_candidates(
    alpha: np.ndarray, beta: np.ndarray, count: int, target: float, rng: np.random.Generator
) -> np.ndarray:
    """`count` rows: one Thompson draw per prompt, the draws nearest `target` first (ties by row)."""
    draws = rng.beta(alpha, beta)
    return np.argsort(np.abs(draws - target), kind="stable")[:count].astype(np.int64)


def commit_order(rates: np.ndarray, band: tuple[float, float] | None, target: float) -> np.ndarray:
    """Indices of the candidates (in the order drawn), in-band first, nearest `target` next, then by the draw."""
    return keep_order(rates, band, target, np.arange(len(rates), dtype=np.float64))


def pilot_measure(at: contract.PolicyAt) -> Metered:
    """What pilot measures with: in TRL the live policy, its completions kept for the trained groups when the trainer
    can weigh them (`pilot_reuse`); otherwise what screen measures with."""
    if at.trainer is not None:
        from gaincurate.lab.strategies.pilot_reuse import reusing_screener

        return reusing_screener(at)
    return screener_for(at)


class PilotStrategy(MoppsStrategy):
    """`MoppsStrategy`'s posterior draws the candidates, a few rollouts of the current policy pilot them, and those
    in the band are committed; the pilots feed the posterior."""

    name = "pilot"
    about = replace(
        MoppsStrategy.about,
        options=PilotOptions,
        summary="candidates drawn by a pass-rate posterior, piloted with the current policy, the teachable committed",
        draws="candidates drawn by each prompt's posterior near the target, measured with a few rollouts of the "
        "current policy, the ones in the band committed; the pilots feed the posterior",
        needs=frozenset({contract.POLICY, contract.ROLLOUTS}),
        measure=pilot_measure,
        ordered=False,
        keeps_zero_variance=False,
        own_band=True,
    )

    def __init__(
        self, gc_ids: np.ndarray, options: PilotOptions, *, seed: int = 0, band: tuple[float, float] | None = None
    ) -> None:
        super().__init__(gc_ids, target=options.target, prior=options.prior, forget=options.forget)
        self.factor, self.rollouts, self.seed, self.band = options.pilot_factor, options.pilot_rollouts, seed, band
        self._drawn: tuple[int, np.ndarray, np.ndarray] | None = None  # the last draw's (epoch, positions, rates)

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> PilotStrategy:
        assert isinstance(options, PilotOptions)
        return cls(inputs.prompts.gc_ids, options, seed=inputs.seed, band=inputs.band)

    def pilot(
        self, alpha: np.ndarray, beta: np.ndarray, epoch: int, subset_size: int, screener: Screener | None
    ) -> Pilot:
        """Draw epoch `epoch`'s candidates by the posterior (alpha, beta in gc_id order) and roll each r times with
        the current policy (`screener`, which the scheduler holds and meters)."""
        if screener is None:
            raise ConfigError(
                "the pilot strategy measures candidates with the current policy, and no model was given to pilot "
                "with; drive it through `gaincurate schedule`, GainCurriculum or the verl sampler"
            )
        count = min(math.ceil(self.factor * subset_size), len(self.gc_ids))
        rng = np.random.default_rng([self.seed, epoch, CANDIDATE_STREAM])
        rows = thompson_candidates(alpha, beta, count, self.target, rng)
        screening = screener(self.gc_ids[rows], int(epoch), self.rollouts)
        if len(screening.sums) != len(rows):
            raise ValueError(f"the screener measured {len(screening.sums)} of {len(rows)} candidates")
        counts = np.asarray(screening.counts, dtype=np.int64)
        return Pilot(int(epoch), rows, np.asarray(screening.sums, dtype=np.float64), counts, int(screening.tokens))

    def _memory(self, state: ScheduleState, alpha: np.ndarray, beta: np.ndarray, measured: set[int]) -> dict:
        """The memory with the posteriors of the `measured` gc_ids (the others sit at the prior), pilot dropped."""
        kept = np.searchsorted(self.gc_ids, np.array(sorted(measured), dtype=np.int64))
        stored = {"gc_ids": self.gc_ids[kept].tolist(), "alpha": alpha[kept].tolist(), "beta": beta[kept].tolist()}
        memory = {key: value for key, value in (state.memory or {}).items() if key != PILOT_KEY}
        return {**memory, MEMORY_KEY: stored}

    def _measured(self, state: ScheduleState) -> set[int]:
        return {int(i) for i in (state.memory or {}).get(MEMORY_KEY, {}).get("gc_ids", [])}

    def _stored_pilot(self, state: ScheduleState) -> Pilot | None:
        """The pilot kept for `state`'s epoch (None at epoch 0, whose pilot runs at its draw)."""
        data = (state.memory or {}).get(PILOT_KEY)
        if data is None or int(data["epoch"]) != state.epoch:
            return None
        return Pilot.from_json(data, self.gc_ids)

    def observe(
        self, state: ScheduleState, feedback: Feedback, fresh: contract.Fresh = contract.NOTHING_FRESH
    ) -> dict[str, Any]:
        """Fold the epoch's feedback in, then pilot the next epoch's candidates with the policy that trained this
        one (`fresh.policy`) and keep what they measured."""
        following = replace(state, epoch=state.epoch + 1, memory=self.fold_feedback(state, feedback))
        return self._piloted(state, following, fresh.policy)

    def fold_feedback(self, state: ScheduleState, feedback: Feedback) -> dict[str, Any]:
        """The memory with the epoch's feedback; a prompt piloted for this epoch was discounted then, so not again."""
        per_prompt = contract.per_prompt_feedback(feedback, self.name)
        alpha, beta = self.posterior(state)
        measured = self._measured(state)
        stored = self._stored_pilot(state)
        piloted = set() if stored is None else {int(i) for i in self.gc_ids[stored.rows]}
        for again in (False, True):
            ids = np.array(sorted(i for i in per_prompt if (int(i) in piloted) == again), dtype=np.int64)
            if not len(ids):
                continue
            rows = np.searchsorted(self.gc_ids, ids)
            sums = np.array([per_prompt[int(i)][0] for i in ids], dtype=np.float64)
            counts = np.array([per_prompt[int(i)][1] for i in ids], dtype=np.float64)
            forget = 1.0 if again else self.forget
            alpha[rows], beta[rows] = update_posterior(
                alpha[rows], beta[rows], sums, counts, prior=self.prior, forget=forget
            )
            measured.update(int(i) for i in ids)
        return self._memory(state, alpha, beta, measured)

    def _piloted(self, state: ScheduleState, following: ScheduleState, screener: Screener | None) -> dict[str, Any]:
        alpha, beta = self.posterior(following)
        subset_size = len(state.positions)
        pilot = self.pilot(alpha, beta, following.epoch, subset_size, screener)
        alpha[pilot.rows], beta[pilot.rows] = update_posterior(
            alpha[pilot.rows], beta[pilot.rows], pilot.sums, pilot.counts, prior=self.prior, forget=self.forget
        )
        measured = self._measured(following) | {int(i) for i in self.gc_ids[pilot.rows]}
        return {**self._memory(following, alpha, beta, measured), PILOT_KEY: pilot.to_json(self.gc_ids)}

    def choose(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> contract.Selection:
        """Commit the m candidates of the epoch's pilot in the band nearest the target (epoch 0 pilots now)."""
        pilot = self._stored_pilot(state)
        if pilot is None:
            pilot = self.pilot(*self.posterior(state), int(state.epoch), context.subset_size, context.policy)
        rates = pilot.rates
        order = commit_order(rates, self.band, self.target)[: context.subset_size]
        position_of_row = np.empty(len(self.gc_ids), dtype=np.int64)
        position_of_row[self._rows(context)] = np.arange(context.n_prompts)
        candidates = position_of_row[pilot.rows]
        self._drawn = (int(state.epoch), candidates, rates)
        alpha, beta = self.posterior(state)
        chosen = pilot.rows[order]
        info: dict[str, Any] = {
            "piloted": len(pilot.rows),
            "pilot_rollouts": int(pilot.counts.sum()),
            "pilot_tokens": pilot.tokens,
            "in_band": int(np.sum(in_band(rates, self.band))),
            "piloted_pass_rate": recorded(float(rates.mean())) if len(rates) else None,
            "chosen_pass_rate": recorded(float(rates[order].mean())) if len(order) else None,
            "posterior_mean": recorded(float(np.mean(posterior_mean(alpha[chosen], beta[chosen])))),
        }
        rows = self._rows(context)
        return contract.Selection(
            np.sort(candidates[order]).astype(np.int64), info, posterior_mean(alpha[rows], beta[rows])
        )

    def report(
        self, state: ScheduleState, context: contract.RankingContext, drawn: contract.Selection
    ) -> contract.Report:
        """The posterior mean of every prompt at the draw, and the pilot's measured rate for the candidates."""
        # 0 < k/r < 1 is, for rates of r rollouts, the closed band [1/(2r), 1 - 1/(2r)].
        band = self.band if self.band is not None else (0.5 / self.rollouts, 1.0 - 0.5 / self.rollouts)
        estimates = np.array(drawn.estimates, dtype=np.float64)
        if self._drawn is not None and self._drawn[0] == state.epoch:
            estimates[self._drawn[1]] = self._drawn[2]
        source = f"pilot pass rate ({self.rollouts} rollouts) for the candidates, posterior mean for the rest"
        return contract.Report(estimates, source, band, drawn.info)
