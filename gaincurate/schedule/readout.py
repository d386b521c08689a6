"""The savings readout: per epoch, whether the curriculum is saving anything on this run.

Every figure comes from the strategy's one report hook (`Strategy.report`: its pass-rate estimate of every prompt
at the draw, the band it aims at, its own figures) and from the feedback lines themselves, so every strategy, every
trainer path and the bench mean the same thing by each number. Per epoch with feedback (history.jsonl's `readout`):

* what the strategy aimed at: `estimated_pass_rate`, the mean estimate of the epoch's prompts at the draw, and
  `estimated_in_band`, the share of them estimated inside the band it aims at (`estimate` says what the estimate
  is, or that the strategy keeps none);
* what happened: `measured_pass_rate`, the mean over the epoch's prompts of each one's measured pass rate, and
  `zero_variance`, the share of rollout groups (a prompt's rollouts in the epoch) whose rewards were all equal,
  `all_wrong` and `all_right` apart (a group all at one reward in between counts in neither side);
* against uniform, measured: where the draw kept a control (a uniform slice drawn from the whole pool before the
  aim: probe's `--uniform-share`), the epoch's aimed and control groups and the informative share of each
  (`aimed_informative`, `control_informative`); and over every epoch with both, `verdict` ("saving", "loss", "not
  yet distinguishable", or "no control") with the difference of the shares and the ratio of rollouts per informative
  group, each with its 95% interval, and how many more groups a verdict needs (`more_groups`;
  `gaincurate.schedule.control`). A saving is claimed nowhere else;
* the strategy's model of uniform: `uniform_zero_variance_estimate`, E[p^n + (1 - p)^n] over the strategy's own pool
  estimates for each group's n. It is as right as the estimates are, so it is shown as their model, never as a saving;
* how good the estimate is: `correlation`, Pearson's r of each prompt's estimate at the draw with the pass rate then
  measured, over every prompt measured so far (shown from CORRELATION_MIN_PROMPTS on); `nonzero_rollouts`, the
  rollouts spent so far in groups with nonzero variance;
* `warnings`: most groups zero-variance two epochs in a row, a share far above uniform's estimate on enough groups,
  or estimates that carry no information (`Thresholds`; `schedule status --warn-zero-variance/--warn-correlation`).

The readout reads only what the draw and the feedback already hold: no forward pass, no rollout. Its sums are
plain float64 sums in a fixed order (`math.fsum`), so no BLAS or SIMD path changes them, and every float it writes
goes through `gaincurate.numerics.recorded`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaincurate.numerics import fsum_array, recorded
from gaincurate.schedule.control import NO_CONTROL, UNDECIDED, Arm, compare
from gaincurate.schedule.feedback import EXACT, Feedback
from gaincurate.schedule.gate import Evidence
from gaincurate.schedule.state import Drawn, Tally
from gaincurate.schedule.strategies.contract import NO_ESTIMATE, Report

CORRELATION_MIN_PROMPTS = 30  # fewer measured prompts give a correlation too noisy to show
MAX_GROUP = 64  # uniform's zero-variance share is kept for groups of 1..MAX_GROUP rollouts
ENOUGH_GROUPS = 30  # groups for an epoch's zero-variance share to tell: its standard error is <= 0.5 / sqrt(30) = 0.09
FAR_ABOVE = 0.25  # over uniform's estimate: 2.7 standard errors on 30 groups (< 1% by chance), 1.3 on 7 (1 in 10)


@dataclass(frozen=True)
class Thresholds:
    """When the readout warns (docs/readout.md): `zero_variance`, the share of zero-variance groups that, two epochs
    in a row, says the rollouts teach little; `correlation`, the |r| below which estimates carry no information."""

    zero_variance: float = 0.9
    correlation: float = 0.1


def drawn(report: Report, positions: np.ndarray, control: tuple[int, ...] | None = None) -> Drawn:
    """The typed record of a draw: the strategy's figures, what its estimates say at the draw, and the gc_ids of the
    control slice it drew uniformly from the whole pool (None: no control)."""
    common = {"figures": report.figures, "source": report.source, "band": report.band, "control": control}
    if report.estimates is None:
        return Drawn(**common)
    estimates = np.asarray(report.estimates, dtype=np.float64)
    picked = tuple(recorded(value) if math.isfinite(value) else None for value in estimates[positions].tolist())
    pool = estimates[np.isfinite(estimates)]
    if not len(pool):
        return Drawn(**common, picked=picked)
    return Drawn(
        **common,
        picked=picked,
        uniform_zero_variance=uniform_zero_variance(pool),
        pool_mean=recorded(fsum_array(pool) / len(pool)),
        pool_spread=recorded(float(pool.max() - pool.min())),
    )


def uniform_zero_variance(pool: np.ndarray) -> tuple[float | None, ...]:
    """For n = 1..MAX_GROUP: the mean over the pool of p^n + (1 - p)^n, a group of n rollouts' chance of agreeing.

    Powers by repeated products (each correctly rounded, on any CPU), the mean by `fsum_array` (math.fsum's bits; over
    a million prompts, math.fsum's Python float per value took 4 s of a step)."""
    p = np.clip(np.asarray(pool, dtype=np.float64), 0.0, 1.0)
    q = 1.0 - p
    right, wrong = np.ones_like(p), np.ones_like(p)
    shares = []
    for _ in range(MAX_GROUP):
        right, wrong = right * p, wrong * q
        shares.append(recorded(fsum_array(right + wrong) / len(p)))
    return tuple(shares)


def epoch_readout(
    drawn_record: Drawn | None,
    gc_ids: np.ndarray,
    feedback: Feedback,
    tally: Tally | None,
    thresholds: Thresholds = Thresholds(),
) -> tuple[dict[str, Any], Tally, Evidence]:
    """The readout of the epoch of `gc_ids` (rank order), the tally after it, and the epoch's groups as arms
    (`epoch_evidence`, which the gate reads too)."""
    record = drawn_record if drawn_record is not None else Drawn(source=NO_ESTIMATE)
    tally = tally if tally is not None else Tally()
    ids = [int(i) for i in gc_ids]
    estimate_of = _estimates(record, ids)
    estimated = [estimate_of[g] for g in ids if g in estimate_of]
    band = record.band
    readout: dict[str, Any] = {
        "estimate": record.source or NO_ESTIMATE,
        "estimated_pass_rate": _mean(estimated),
        "estimated_in_band": None
        if band is None or not estimated
        else recorded(sum(band[0] <= e <= band[1] for e in estimated) / len(estimated)),
        "band": None if band is None else [recorded(band[0]), recorded(band[1])],
        "estimate_spread": record.pool_spread,
    }
    per_prompt = feedback.per_prompt
    if per_prompt is None:  # a bare accuracy: nothing measured per prompt
        return readout | {"measured_pass_rate": None, "groups": 0, "warnings": []}, tally, Evidence()
    measured = [g for g in ids if g in per_prompt]
    rates = {g: per_prompt[g][0] / per_prompt[g][1] for g in measured}
    sides = {g: _side(g, per_prompt, feedback.extremes) for g in measured}
    groups = len(measured)
    table = record.uniform_zero_variance
    counts = [per_prompt[g][1] for g in measured]
    uniform = None if not table or max(counts, default=0) > len(table) else [table[n - 1] for n in counts]
    nonzero = sum(count for g, count in zip(measured, counts, strict=True) if sides[g] is None)
    pairs = [(estimate_of[g], rates[g]) for g in measured if g in estimate_of]
    evidence = epoch_evidence(record, gc_ids, feedback)
    following = Tally(
        pairs=tally.pairs + len(pairs),
        sums=_sums(tally.sums, pairs),
        nonzero_rollouts=tally.nonzero_rollouts + nonzero,
        aimed=tally.aimed + evidence.aimed,
        control=tally.control + evidence.control,
        # A look is an epoch that compared the arms: one with no aimed group adds nothing to the comparison.
        looks=tally.looks + (1 if evidence.control.groups and evidence.aimed.groups else 0),
        last_zero_variance=_share(sum(side is not None for side in sides.values()), groups),
    )
    correlation, why = correlation_of(following)
    readout |= {
        "measured_pass_rate": _mean([rates[g] for g in measured]),
        "groups": groups,
        "zero_variance": following.last_zero_variance,
        "all_wrong": _share(sum(side == "wrong" for side in sides.values()), groups),
        "all_right": _share(sum(side == "right" for side in sides.values()), groups),
        "uniform_zero_variance_estimate": None if uniform is None else _mean(uniform),
        "correlation": correlation,
        "correlated_prompts": following.pairs,
        **({"correlation_note": why} if why else {}),
        "nonzero_rollouts": following.nonzero_rollouts,
        **control_figures(evidence, following),
    }
    readout["warnings"] = warnings(readout, tally.last_zero_variance, thresholds)
    return readout, following, evidence


def epoch_evidence(drawn_record: Drawn | None, gc_ids: np.ndarray, feedback: Feedback) -> Evidence:
    """The epoch's groups as arms: aimed and control when it was drawn with a control; otherwise, where the draw had
    estimates and a band, the groups estimated in the band and the rest (what `gaincurate.schedule.gate` reads)."""
    per_prompt = feedback.per_prompt
    if drawn_record is None or per_prompt is None:
        return Evidence()
    ids = [int(i) for i in gc_ids if int(i) in per_prompt]
    informative = informative_prompts(feedback)
    if drawn_record.control is not None:
        control = set(drawn_record.control)
        return Evidence(
            aimed=_arm([g for g in ids if g not in control], informative, per_prompt),
            control=_arm([g for g in ids if g in control], informative, per_prompt),
        )
    estimate_of, band = _estimates(drawn_record, [int(i) for i in gc_ids]), drawn_record.band
    if band is None or not estimate_of:
        return Evidence()
    inside = [g for g in ids if g in estimate_of and band[0] <= estimate_of[g] <= band[1]]
    outside = [g for g in ids if g in estimate_of and not band[0] <= estimate_of[g] <= band[1]]
    return Evidence(in_band=_arm(inside, informative, per_prompt), off_band=_arm(outside, informative, per_prompt))


def control_figures(evidence: Evidence, tally: Tally) -> dict[str, Any]:
    """The epoch's arms (shares of informative groups) and, over every epoch with both, the comparison
    (`gaincurate.schedule.control.compare`): the readout's keys, `verdict` "no control" when there is none."""
    epoch: dict[str, Any] = {}
    if evidence.control.groups or evidence.aimed.groups:
        epoch = {
            "aimed_groups": evidence.aimed.groups,
            "aimed_informative": _share(evidence.aimed.informative, evidence.aimed.groups),
            "control_groups": evidence.control.groups,
            "control_informative": _share(evidence.control.informative, evidence.control.groups),
        }
    comparison = compare(tally.aimed, tally.control, tally.looks)
    if comparison is None:
        return epoch | {"verdict": NO_CONTROL if not tally.control.groups else UNDECIDED}
    return epoch | {
        "verdict": comparison.verdict,
        "compared_groups": tally.aimed.groups + tally.control.groups,
        "informative_gain": recorded(comparison.gain),
        "informative_gain_low": recorded(comparison.gain_interval[0]),
        "informative_gain_high": recorded(comparison.gain_interval[1]),
        "rollouts_ratio": _finite(comparison.ratio),
        "rollouts_ratio_low": _finite(comparison.ratio_interval[0]),
        "rollouts_ratio_high": _finite(comparison.ratio_interval[1]),
        "more_groups": comparison.more_groups,
    }


def _estimates(record: Drawn, ids: list[int]) -> dict[int, float]:
    """Each drawn prompt's estimate at the draw, where it had one."""
    if record.picked is None:
        return {}
    return {g: e for g, e in zip(ids, record.picked, strict=True) if e is not None}


def _arm(ids: list[int], informative: dict[int, bool], per_prompt: dict[int, tuple[float, int]]) -> Arm:
    return Arm(len(ids), sum(informative[g] for g in ids), sum(per_prompt[g][1] for g in ids))


def _finite(value: float) -> float | None:
    """A float for JSON: None for an unbounded end (JSON has no infinity)."""
    return recorded(value) if math.isfinite(value) else None


def correlation_of(tally: Tally) -> tuple[float | None, str | None]:
    """Pearson's r of the tally's pairs, and why there is none (too few, or one side all equal)."""
    n = tally.pairs
    if n < CORRELATION_MIN_PROMPTS:
        return None, None
    sx, sy, sxx, syy, sxy = tally.sums
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    if vx <= EXACT * n:
        return None, "estimates all equal"
    if vy <= EXACT * n:
        return None, "measured pass rates all equal"
    return recorded(max(-1.0, min(1.0, (sxy - sx * sy / n) / math.sqrt(vx * vy)))), None


def warnings(readout: dict[str, Any], previous_zero_variance: float | None, thresholds: Thresholds) -> list[str]:
    """What a user would want told about this epoch, given the epoch before's zero-variance share."""
    found = []
    share = readout.get("zero_variance")
    limit = thresholds.zero_variance
    if share is not None and previous_zero_variance is not None and min(share, previous_zero_variance) >= limit:
        wrong, right = readout.get("all_wrong") or 0.0, readout.get("all_right") or 0.0
        if wrong >= right:
            cause = (
                f"{wrong:.0%} all wrong: usual causes are completions cut short (raise max_completion_length), a "
                "reward function that never pays (try it on a known right answer), an answer format it does not parse"
            )
        else:
            cause = (
                f"{right:.0%} all right: the prompts are too easy for the policy, or the reward pays every answer "
                "(a format-only reward)"
            )
        found.append(f"{share:.0%} of rollout groups had zero reward variance two epochs in a row ({cause})")
    uniform, groups = readout.get("uniform_zero_variance_estimate"), readout.get("groups", 0)
    far = uniform is not None and groups >= ENOUGH_GROUPS and share - uniform >= FAR_ABOVE
    if far and readout.get("estimate_spread") != 0.0:  # all-equal estimates describe no pool
        found.append(
            f"{share:.0%} of {groups} rollout groups had zero reward variance, far above the ~{uniform:.0%} that the "
            "strategy's own estimates expect of a uniform draw: its estimates are blunt (the control, where the run "
            "keeps one, says whether the draw still beats uniform)"
        )
    if readout.get("estimate_spread") == 0.0 and previous_zero_variance is not None:
        found.append("the strategy's estimates are all equal: they carry no information to aim with")
    correlation = readout.get("correlation")
    if correlation is not None and abs(correlation) < thresholds.correlation:
        found.append(
            f"the estimates do not track the measured pass rates (r = {correlation:.2f} over "
            f"{readout['correlated_prompts']} prompts): aiming with them saves nothing over uniform"
        )
    elif readout.get("correlation_note") == "estimates all equal" and readout.get("estimate_spread") != 0.0:
        found.append("the strategy's estimates were all equal over every prompt measured: they carry no information")
    return found


def rewarned(history: list[dict[str, Any]], thresholds: Thresholds) -> list[list[str]]:
    """The warnings of each history line's readout under `thresholds` (status reads a run with its own)."""
    previous: float | None = None
    found = []
    for line in history:
        readout = line.get("readout") or {}
        found.append(warnings(readout, previous, thresholds) if readout else [])
        previous = readout.get("zero_variance") if readout else None
    return found


def logged(readout: dict[str, Any], prefix: str = "curriculum/") -> dict[str, float]:
    """The readout's numbers, for a trainer's logger (TensorBoard, W&B): every number, under `prefix`."""
    return {
        f"{prefix}{key}": float(value)
        for key, value in readout.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value is not None
    }


def informative_prompts(feedback: Feedback) -> dict[int, bool]:
    """Per prompt with rollouts in `feedback`: whether its group's rewards varied (an informative group)."""
    per_prompt = feedback.per_prompt or {}
    return {g: _side(g, per_prompt, feedback.extremes) is None for g in per_prompt}


def _side(gc_id: int, per_prompt: dict[int, tuple[float, int]], extremes: dict | None) -> str | None:
    """'wrong' / 'right' / 'even' for a zero-variance group, None for one whose rewards varied."""
    total, count = per_prompt[gc_id]
    if extremes is not None and gc_id in extremes:
        low, high = extremes[gc_id]
    else:  # rewards reduced to sums: only 0/1 correctness tells its variance
        low = high = total / count if total <= EXACT * count or total >= count - EXACT * count else None
        if low is None:
            return None
    if high - low > EXACT:
        return None
    return "wrong" if high <= EXACT else "right" if low >= 1.0 - EXACT else "even"


def _sums(before: tuple[float, ...], pairs: list[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    sx, sy, sxx, syy, sxy = before
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    return (
        recorded(math.fsum([sx, *xs])),
        recorded(math.fsum([sy, *ys])),
        recorded(math.fsum([sxx, *(x * x for x in xs)])),
        recorded(math.fsum([syy, *(y * y for y in ys)])),
        recorded(math.fsum([sxy, *(x * y for x, y in pairs)])),
    )  # type: ignore[return-value]


def _mean(values: list[float]) -> float | None:
    return recorded(math.fsum(values) / len(values)) if values else None


def _share(count: int, total: int) -> float | None:
    return recorded(count / total) if total else None
