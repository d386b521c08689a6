"""The `dots` strategy: difficulty-targeted online data selection (DOTS, arXiv 2506.05316).

Each epoch every prompt q gets a pass-rate estimate p_q, and the epoch draws `subset_size` prompts
without replacement with

    P(q) ∝ exp(-|p_q - target| / tau)        (target 0.5, tau 0.05 by default)

using the scheduler's Gumbel-top-k draw and `numpy.random.default_rng([seed, epoch])`, like `gain`.

* Every prompt has a neighbours' prediction m_q: attention over the measured prompts
  (`gaincurate.difficulty.predict`), leave-one-out, with embeddings from `gaincurate score --embed`,
  the attention temperature `tau_attn`, older measurements weighing forget ** age in the softmax, and
  optionally a calibrator from `gaincurate difficulty fit` (`--calibrator`). Past `reference_limit(N)` measured
  prompts (2,048 in a pool of up to 48,828) it attends to a sample of that many, drawn by the same weight, so a
  step stays linear in the pool.
* Measurements age (`gaincurate.difficulty.estimate`): a measured prompt's estimate blends its own
  rollouts, weighed forget ** (epochs since measured), with m_q weighed as NEIGHBOUR_ROLLOUTS rollouts. So
  a fresh measurement dominates and an old one gives way to its neighbours: a stale 0 or 1 never bars a
  prompt for ever while the policy improves. An unmeasured prompt's estimate is m_q.
* Before any measurement (epoch 0 without `--reference`) every prompt is equally likely: there is
  nothing to aim with, and a uniform first epoch is the cheapest unbiased reference set.

The measured pass rates are the strategy's memory in the scheduler state (`state.json`), so a run
resumes exactly: `observe` folds each epoch's per-prompt feedback in before the next draw, and the
reference set grows by every prompt the trainer has trained on. `measure` folds in extra rollouts, such
as a fresh reference set rolled with the newest checkpoint (`--reference-every`). The ranking is
dataset order: the positions an epoch draws are its gc_ids in ascending order, and `mu` is logged only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.difficulty.calibrate import attention_temperature
from gaincurate.difficulty.reference import PassRates, PromptEmbeddings, embeddings_from_table, read_pass_rates
from gaincurate.errors import ConfigError, InputError, setting
from gaincurate.numerics import exp
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.options import OPEN_RATE, POSITIVE, RATE, Options, option, optional, text, whole
from gaincurate.schedule.strategies import contract

if TYPE_CHECKING:
    from gaincurate.difficulty.calibrate import FittedCalibrator
    from gaincurate.difficulty.estimate import Estimates
    from gaincurate.schedule.state import ScheduleState

REFERENCE_TIME = -1  # a --reference file is measured before epoch 0
# docs/dots.md shows the simulation that picked them: a measurement's weight per epoch of age, and the selection
# temperature. The paper's are 1 (no ageing: it rolls a fresh reference set each step) and 1e-3.
DOTS_FORGET = 0.4
DOTS_TAU = 0.05


@dataclass(frozen=True, kw_only=True)
class DotsOptions(Options):
    target: float = option(0.5, contract.TARGET_HELP, RATE)
    tau: float = option(DOTS_TAU, "Selection temperature (the paper's: 1e-3).", POSITIVE)
    # difficulty's attention temperature (`--tau-attn` of `difficulty predict|fit|evaluate`): one default.
    tau_attn: float = option(
        attention_temperature().default, "Attention temperature of the neighbours' prediction.", POSITIVE
    )
    forget: float = option(DOTS_FORGET, "Weight a measurement keeps per epoch of age (1: never ages).", OPEN_RATE)
    reference: str | None = option(
        None,
        "Feedback JSON lines measured before epoch 0 (`gaincurate rollout`'s: 1 right, 0 wrong).",
        text,
        cli="path",
    )
    reference_every: int = option(
        0, "Every K epochs roll a fresh reference set with the newest checkpoint (0: never).", whole(0)
    )
    reference_size: int = option(0, "Prompts in each fresh reference set (0: the subset size).", whole(0))
    calibrator: str | None = option(
        None, "An adapter and calibration head from `gaincurate difficulty fit` (.npz).", optional(text), cli="path"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reference_size and not self.reference_every:
            raise ConfigError(
                f"{setting('reference_size')} sizes the fresh reference set of {setting('reference_every')} K; "
                "pass both"
            )


def selection_log_weights(pass_rates: np.ndarray, *, target: float, tau: float) -> np.ndarray:
    """log P(q) up to a constant: -|p_q - target| / tau."""
    return -np.abs(np.asarray(pass_rates, dtype=np.float64) - target) / tau


def selection_probabilities(pass_rates: np.ndarray, *, target: float, tau: float) -> np.ndarray:
    """Single-draw probabilities (for tests and plots)."""
    log_weights = selection_log_weights(pass_rates, target=target, tau=tau)
    weights = exp(log_weights - log_weights.max())  # the same bits on every CPU, unlike np.exp
    return weights / weights.sum()


def _read_reference(path: Path, gc_ids: np.ndarray, manifest: dict[str, Any]) -> PassRates:
    """The `--reference` file's pass rates, on rollout's scale (1 right, 0 wrong, or `correct` lines), as the fresh
    sets' are, whatever the run's reward range. A `gaincurate rollout` file of another scores directory is refused
    by the dataset its sidecar records: its gc_ids would credit other prompts."""
    from gaincurate.fileio import read_json
    from gaincurate.rollout.output import sidecar

    ours = (manifest.get("dataset") or {}).get("fingerprint")
    rolled = read_json(sidecar(path)).get("scores_dataset") if sidecar(path).is_file() else None
    if rolled and ours and rolled != ours:
        raise InputError(
            f"--reference {path} was rolled out on another scores directory's prompts (dataset {rolled}; these are "
            f"{ours}); roll it out on these: gaincurate rollout SCORES --out FILE"
        )
    try:
        return read_pass_rates([path], known_ids=gc_ids, first_time=REFERENCE_TIME)
    except InputError as error:  # the advice after "; " is for a run's own feedback, on the run's range
        raise InputError(
            f"--reference {str(error).split('; ')[0]}; it is read on rollout's scale whatever the run's reward "
            'range: {"gc_id": int, "reward": 1 or 0} or {"gc_id": int, "correct": bool} per rollout'
        ) from None


class DotsStrategy(contract.Strategy):
    """Each prompt's pass rate estimated by attention over the embeddings of the measured prompts; the epoch is drawn
    nearest the target."""

    name = "dots"
    about = contract.About(
        options=DotsOptions,
        summary="pass rate near --target, predicted by attention over embeddings (0.62x uniform's compute on "
        "cpu-chain, 0.50x on cpu-arith, no saving on cpu-mult; probe does better with the same inputs)",
        draws="epoch 0 is uniform (unless --reference measured the prompts); then nearest the target pass rate, each "
        "prompt's estimated from its own rollouts and its embedding neighbours'",
        needs=frozenset({contract.EMBEDDINGS, contract.ROLLOUTS}),
        estimates=True,
        measured_before="reference",
    )

    def __init__(
        self,
        prompts: PromptEmbeddings,
        *,
        target: float = DotsOptions.target,
        tau: float = DotsOptions.tau,
        tau_attn: float = DotsOptions.tau_attn,
        forget: float = DotsOptions.forget,
        reference: PassRates | None = None,
        calibrator: FittedCalibrator | None = None,
        center: np.ndarray | None = None,
        limit: int | None = None,
    ) -> None:
        from gaincurate.difficulty.predict import PreparedEmbeddings, reference_limit  # loaded when dots is used

        self.gc_ids = prompts.gc_ids
        # A calibrator is applied to embeddings centred as it was fitted (`center`, from its file). Prepared a block
        # of rows at a time when used: the pool's float64 matrix is never held.
        self.embeddings = PreparedEmbeddings.of(prompts.embeddings, center=center)
        self.target, self.tau, self.tau_attn, self.forget = target, tau, tau_attn, forget
        # The neighbours' prediction attends to at most this many measured prompts, sampled by their weight forget **
        # age, so a step costs N x R pairs as epochs pass (docs/dots.md, "A bounded reference set"). Not an option.
        self.reference_limit = reference_limit(len(self.gc_ids)) if limit is None else limit
        self.reference = reference if reference is not None else PassRates.empty()
        self.calibrator = calibrator
        self.reference_every, self.reference_size = 0, 0  # --reference-every K, --reference-size M (`build`)
        self._last: tuple[ScheduleState, Estimates | None] | None = None

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> DotsStrategy:
        """The strategy for a scores table; its `--reference` file is read when a run starts (later it lives in
        the state)."""
        assert isinstance(options, DotsOptions)
        if inputs.scores is None:
            raise ValueError(
                "the dots strategy needs the scores table's embeddings: build it with StrategyInputs(scores=)"
            )
        prompts = embeddings_from_table(inputs.scores.table, str(inputs.scores.directory))
        reference = None
        if inputs.initial and options.reference is not None:
            reference = _read_reference(Path(options.reference), prompts.gc_ids, inputs.scores.manifest)
        calibrator, center = None, None
        if options.calibrator is not None:
            from gaincurate.difficulty.calibrate import load_calibrator

            calibrator, center = load_calibrator(Path(options.calibrator), prompts, inputs.scores.manifest)
            if calibrator.full.tau != options.tau_attn:  # its predictions attend at the temperature it was fitted at
                raise ConfigError(
                    f"{setting('tau_attn', options.tau_attn)} is not the {calibrator.full.tau:g} the calibrator "
                    f"{options.calibrator} was fitted at, which its predictions use; pass "
                    f"{setting('tau_attn', calibrator.full.tau)}, or fit one at {options.tau_attn:g}"
                )
        strategy = cls(
            prompts,
            target=options.target,
            tau=options.tau,
            tau_attn=options.tau_attn,
            forget=options.forget,
            reference=reference,
            calibrator=calibrator,
            center=center,
        )
        strategy.reference_every = options.reference_every
        strategy.reference_size = min(options.reference_size or inputs.subset_size, len(inputs.prompts))
        return strategy

    def wants(self, state: ScheduleState, end: contract.EpochEnd = contract.AHEAD) -> contract.Wants:
        """After epochs K-1, 2K-1, ...: a fresh reference set of M prompts (`--reference-every K`)."""
        every = self.reference_every
        due = every > 0 and state.epoch >= 0 and (state.epoch + 1) % every == 0
        return contract.Wants(reference=self.reference_size if due else 0)

    def start(self, prompts: contract.PromptSet) -> tuple[np.ndarray, dict[str, Any]]:
        return contract.Strategy.start(self, prompts)[0], {"pass_rates": self.reference.to_json()}

    def measured(self, state: ScheduleState) -> PassRates:
        memory = state.memory or {}
        return PassRates.from_json(memory["pass_rates"]) if "pass_rates" in memory else PassRates.empty()

    def observe(
        self, state: ScheduleState, feedback: Feedback, fresh: contract.Fresh = contract.NOTHING_FRESH
    ) -> dict[str, Any]:
        """The memory after epoch `state.epoch`'s feedback: its per-prompt rewards added to the reference set, then
        a fresh reference set's rollouts after it (`fresh.reference`), measured at the same time."""
        if feedback.per_prompt is None:
            raise ValueError(
                "the dots strategy needs per-rollout feedback ({'gc_id', 'reward'} records), not a bare accuracy"
            )
        memory = self.measure(state, feedback.per_prompt, time=state.epoch)
        if fresh.reference is not None:
            memory = self.measure(replace(state, memory=memory), fresh.reference, time=state.epoch)
        return memory

    def measure(self, state: ScheduleState, per_prompt: dict[int, tuple[float, int]], *, time: int) -> dict[str, Any]:
        """The memory with extra measurements at `time` (a fresh reference set) added to the reference set."""
        rates = self.measured(state).add(per_prompt, time=time, forget=self.forget)
        return {**(state.memory or {}), "pass_rates": rates.to_json()}

    def estimates(self, state: ScheduleState) -> Estimates | None:
        """The neighbours' prediction and the aged estimate of every prompt (gc_id order) before drawing epoch
        `state.epoch`; None before any measurement."""
        if self._last is not None and self._last[0] is state:  # the same state asked again (a draw, then an evaluation)
            return self._last[1]
        from gaincurate.difficulty.estimate import estimate_pass_rates

        rates = self.measured(state)
        estimates = None
        if len(rates):
            estimates = estimate_pass_rates(
                self.embeddings,
                self.gc_ids,
                rates,
                now=state.epoch - 1,  # the epoch whose feedback is the newest
                tau=self.tau_attn,
                forget=self.forget,
                calibrator=self.calibrator,
                limit=self.reference_limit,
            )
        self._last = (state, estimates)  # states are frozen: the same object always gives the same estimates
        return estimates

    def pass_rates(self, state: ScheduleState) -> np.ndarray | None:
        """p_q, what selection aims with, for every prompt (gc_id order); None before any measurement."""
        estimates = self.estimates(state)
        return None if estimates is None else estimates.estimate

    def report(
        self, state: ScheduleState, context: contract.RankingContext, drawn: contract.Selection
    ) -> contract.Report:
        """p_q of every prompt at the draw: its aged measurement blended with its neighbours' prediction."""
        estimates = drawn.estimates
        source = "no estimate yet: nothing measured" if estimates is None else "estimated pass rate (dots)"
        return contract.Report(estimates, source, contract.target_band(self.target), drawn.info)

    def choose(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> contract.Priority:
        """Every rank position in the order of the draw (`--skip-zero-variance` walks past the skipped), with p_q
        at each (None before any measurement)."""
        predicted = self.pass_rates(state)
        if predicted is None:
            return contract.Priority(contract.draw_order(np.zeros(context.n_prompts), rng))
        at = predicted[np.searchsorted(self.gc_ids, context.gc_ids)]
        return contract.Priority(
            contract.draw_order(selection_log_weights(at, target=self.target, tau=self.tau), rng), at
        )
