"""The in-run control: the aimed draw against a uniform slice of the same epochs, with intervals honest at small counts.

A strategy that keeps a control (probe's `--uniform-share`) draws that slice uniformly from the whole pool before it
aims, so the slice's groups are a randomized sample of what a uniform draw would have given, under the same policy in
the same epoch. A group is *informative* when its rewards vary (a group whose rollouts all agree teaches GRPO
nothing). The comparison, over the epochs with both arms:

* the informative share of each arm, and their difference with Newcombe's hybrid score interval (each share's Wilson
  interval combined; Newcombe 1998, method 10), which keeps its coverage at tens of groups where the normal
  approximation does not;
* rollouts spent per informative group, the aimed arm's over the control's, with the MOVER interval of the ratio of
  the two shares (Donner and Zou 2012) scaled by the arms' mean group sizes (exact when every group has the same size);
* the verdict: a saving only when the difference's interval lies above 0, a loss only when it lies below, otherwise
  "not yet distinguishable", with how many more groups the observed difference would need.

The readout looks again after every epoch with both arms, and a 95% interval looked at k times claims a difference
that is not there more often than 5% of the time. So the verdict's interval at the k-th look is at level
1 - alpha_k with alpha_k = 0.05 * 6 / (pi^2 k^2) (`look_z`): the alphas sum to 0.05 over any number of looks, so a
run claims a saving or a loss where there is none with a chance of about 5% however long it runs (Bonferroni over
the looks; the first look at 97%, the fifth at 99.9%; a little more where a few control groups leave Newcombe's
interval short of its level: docs/readout.md gives the exact sums).

Pure arithmetic on counts in `math`: the same bits on every CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Z = 1.959963984540054  # the normal quantile of a two-sided 95% interval
ALPHA = 0.05  # the chance, over every look of a run, of claiming a difference that is not there
SAVING, LOSS, UNDECIDED, NO_CONTROL = "saving", "loss", "not yet distinguishable", "no control"


@dataclass(frozen=True)
class Arm:
    """One arm's groups so far: how many, how many had rewards that varied, and the rollouts they spent."""

    groups: int = 0
    informative: int = 0
    rollouts: int = 0

    def __add__(self, other: Arm) -> Arm:
        return Arm(self.groups + other.groups, self.informative + other.informative, self.rollouts + other.rollouts)

    @property
    def share(self) -> float | None:
        return self.informative / self.groups if self.groups else None

    def to_json(self) -> list[int]:
        return [self.groups, self.informative, self.rollouts]

    @classmethod
    def from_json(cls, data: list[int] | None) -> Arm:
        return cls(*(int(value) for value in data)) if data else cls()


@dataclass(frozen=True)
class Comparison:
    """The aimed arm against the control: the informative shares' difference and the ratio of rollouts spent per
    informative group, each with its interval (95% over every look of the run: `look_z`); the verdict; and how many
    more groups (both arms together) the observed difference needs before its interval can exclude 0
    (`more_groups_needed`; None: it already does, or there is none)."""

    aimed: Arm
    control: Arm
    gain: float
    gain_interval: tuple[float, float]
    ratio: float
    ratio_interval: tuple[float, float]
    verdict: str
    more_groups: int | None


def wilson(successes: int, trials: int, z: float = Z) -> tuple[float, float]:
    """Wilson's score interval of a binomial share; (0, 1) with no trials."""
    if trials == 0:
        return 0.0, 1.0
    share = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1.0 - share) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 and n successes the bound is the share itself; rounding must not put it a hair beyond.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def difference_interval(first: Arm, second: Arm, z: float = Z) -> tuple[float, float]:
    """Newcombe's hybrid score interval of first.share - second.share (both arms need a group)."""
    p1, p2 = first.informative / first.groups, second.informative / second.groups
    l1, u1 = wilson(first.informative, first.groups, z)
    l2, u2 = wilson(second.informative, second.groups, z)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def ratio_interval(first: Arm, second: Arm, z: float = Z) -> tuple[float, float]:
    """The MOVER interval of first.share / second.share from their Wilson intervals (inf: unbounded above)."""
    p1, p2 = first.informative / first.groups, second.informative / second.groups
    l1, u1 = wilson(first.informative, first.groups, z)
    l2, u2 = wilson(second.informative, second.groups, z)
    product = p1 * p2
    low = 0.0
    if u2 > 0 and p1 > 0:
        low = (product - math.sqrt(max(0.0, product * product - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2)))) / (
            u2 * (2 * p2 - u2)
        )
    high = math.inf
    if l2 > 0:
        high = (product + math.sqrt(max(0.0, product * product - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2)))) / (
            l2 * (2 * p2 - l2)
        )
    return max(0.0, low), high


def more_groups_needed(aimed: Arm, control: Arm, look: int | None = None) -> int | None:
    """How many more groups, in the arms' current proportion and at their current shares, the verdict's own interval
    needs before it excludes 0: the fewest, at least 1 while it does not yet; None when the arms show no difference.
    After the `look`-th look the groups come at the run's mean groups per look so far, each later look's interval at
    its own, wider level (`look_z`); without `look`, one look at 95%. A normal approximation would promise too few at
    a handful of control groups. The shares as seen are a point estimate: about one run in two decides by then."""
    p1, p2 = aimed.informative / aimed.groups, control.informative / control.groups
    if p1 == p2:
        return None
    now, part = aimed.groups + control.groups, control.groups / (aimed.groups + control.groups)

    def decided(total: int) -> bool:  # the shares held, the groups grown to `total`
        z = Z if look is None else look_z(look + math.ceil((total - now) * look / now))
        c = max(1, round(total * part))
        a = max(1, total - c)
        low, high = difference_interval(Arm(a, p1 * a), Arm(c, p2 * c), z)  # type: ignore[arg-type]
        return low > 0 or high < 0

    if decided(now):
        return None
    if look is None:
        return _first(decided, now) - now

    # The later looks' levels widen the interval epoch by epoch: find the first epoch whose end decides, then the
    # fewest groups within it (one level there, so more groups only narrow the interval).
    def end(epochs: int) -> int:  # the groups after `epochs` more looks
        return now + epochs * now // look

    epochs = _first(lambda count: decided(end(count)), 0)
    return _first(decided, end(epochs - 1), end(epochs)) - now


def _first(test: Callable[[int], bool], low: int, high: int | None = None) -> int:
    """The smallest n above `low` (where `test` fails) at which `test` holds, up to `high` (None: doubling until it
    holds), for a `test` that holds from some n on."""
    if high is None:
        high = max(1, 2 * low)
        while not test(high):
            low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if test(middle) else (middle, high)
    return high


def look_z(look: int) -> float:
    """The normal quantile of the two-sided interval at the `look`-th look (1, 2, ...): level 1 - alpha_k with
    alpha_k = ALPHA * 6 / (pi^2 k^2), which sum to ALPHA over every look. `statistics.NormalDist` is pure Python: the
    same bits on every CPU."""
    from statistics import NormalDist

    alpha = ALPHA * 6.0 / (math.pi * math.pi * max(look, 1) ** 2)
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def compare(aimed: Arm, control: Arm, look: int | None = None) -> Comparison | None:
    """The comparison of two arms with groups in both (None: an arm has none), its intervals at the `look`-th look's
    level (`look_z`; a run's readout looks after every epoch), or at 95% for one look (None)."""
    if not aimed.groups or not control.groups:
        return None
    z = Z if look is None else look_z(look)
    low, high = difference_interval(aimed, control, z)
    gain = aimed.informative / aimed.groups - control.informative / control.groups
    verdict = SAVING if low > 0 else LOSS if high < 0 else UNDECIDED
    # the arms' mean group sizes; counts without rollouts (a pooled bench table) take them as equal
    sizes = (aimed.rollouts * control.groups) / (control.rollouts * aimed.groups) if control.rollouts else 1.0
    # rollouts per informative group = mean group size / informative share, so the ratio is sizes * (p_c / p_a)
    if aimed.informative and control.informative:
        ratio = sizes * (control.share / aimed.share)  # type: ignore[operator]
        share_low, share_high = ratio_interval(control, aimed, z)
        ratio_bounds = (sizes * share_low, sizes * share_high)
    else:
        ratio, ratio_bounds = math.inf if not aimed.informative else 0.0, (0.0, math.inf)
    more = None if verdict != UNDECIDED else more_groups_needed(aimed, control, look)
    return Comparison(aimed, control, gain, (low, high), ratio, ratio_bounds, verdict, more)
