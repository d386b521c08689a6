"""The savings readout in words: an epoch's in one line (`schedule run`'s epoch line, `schedule step`, `schedule
status`), the verdict against the run's uniform control, r or what it waits for, and what `schedule init` says of an
epoch too small for its readout to tell.
"""

from __future__ import annotations

import math
from typing import Any

from gaincurate.schedule.control import LOSS, NO_CONTROL, SAVING
from gaincurate.schedule.readout import CORRELATION_MIN_PROMPTS, ENOUGH_GROUPS
from gaincurate.schedule.strategies.contract import NO_ESTIMATE

DRAWN_PAUSED = "drawn uniformly (aiming paused)"  # an epoch drawn while the aim saved nothing (docs/readout.md)


def epoch_words(line: dict[str, Any] | None) -> str:
    """A history line's readout in one line: what it rests on, what it measured against uniform's, r, "too few"."""
    line = line or {}
    readout = line.get("readout") or {}
    groups = readout.get("groups") or 0
    if not groups:
        return "readout: nothing measured (the feedback gave no prompt's own rollouts)"
    aimed = readout.get("estimated_pass_rate")
    aimed_at = "" if aimed is None else f", {aimed:.2f} {'estimated' if _all_control(readout) else 'aimed at'}"
    aimed_at = f", {DRAWN_PAUSED}" if drawn_paused(readout) else aimed_at
    parts = [
        f"zero variance {readout['zero_variance']:.0%} ({readout['all_wrong']:.0%} all wrong, "
        f"{readout['all_right']:.0%} all right)",
        f"pass rate {readout['measured_pass_rate']:.2f} measured{aimed_at}",
        r_words(readout),
    ]
    if groups < ENOUGH_GROUPS:
        parts.append(f"{groups} groups are too few to tell the share from chance (it takes {ENOUGH_GROUPS})")
    parts.append(control_words(readout, epoch=line.get("epoch")))
    if readout.get("aim_change"):
        parts.append(readout["aim_change"])
    return f"readout on {groups} rollout groups ({groups} prompts, {line['rollouts']} rollouts): " + "; ".join(parts)


def control_words(readout: dict[str, Any], *, epoch_arms: bool = True, epoch: int | None = None) -> str:
    """The verdict so far against the uniform control (`gaincurate.schedule.control`), after the epoch's own arms
    unless `epoch_arms` is False (a summary over the whole run). `epoch`: the readout's epoch, where known."""
    verdict = readout.get("verdict", NO_CONTROL)
    if verdict == NO_CONTROL and epoch == 0 and _uniform_first(readout):
        # A strategy with a slice draws epoch 0 wholly uniformly (nothing is measured to aim with yet), and a history
        # line does not name its strategy, so the words hold for a strategy with a slice and for one without.
        return (
            "against uniform: no control yet (epoch 0 is drawn wholly uniformly; the uniform slice, where the "
            "strategy keeps one, starts at epoch 1)"
        )
    if verdict == NO_CONTROL:
        return "against uniform: no control (the draw keeps no uniform slice, so nothing here says whether it saves)"
    arms, control = "", f"{share_words(readout.get('control_informative'))} of {readout.get('control_groups')}"
    if epoch_arms and _all_control(readout):
        arms = f"this epoch the uniform slice is the whole epoch, {control} groups informative; "
    elif epoch_arms and readout.get("control_groups"):
        arms = (
            f"this epoch {share_words(readout.get('aimed_informative'))} of {readout['aimed_groups']} aimed groups "
            f"informative, {control} in the uniform slice; "
        )
    if readout.get("informative_gain") is None and _all_control(readout):
        return f"{arms}against uniform: nothing to compare (no group was aimed)"
    if readout.get("informative_gain") is None:
        return f"{arms}against uniform: {verdict} (no aimed epoch with a control yet)"
    gain = (
        f"{_points(readout['informative_gain'])} points of informative groups "
        f"[{_points(readout['informative_gain_low'])}, {_points(readout['informative_gain_high'])}]"
    )
    ratio = _ratio_words(readout)
    so_far = f"over {readout['compared_groups']} groups"
    # What the control measures is informative groups, not accuracy: a draw can be more informative and reach a
    # held-out target no sooner (docs/readout.md), so the words name what was measured.
    if verdict == SAVING:
        return f"{arms}against uniform, measured: a saving in informative groups, {gain}, {ratio} {so_far}"
    if verdict == LOSS:
        return f"{arms}against uniform, measured: a loss in informative groups, {gain}, {ratio} {so_far}"
    more = readout.get("more_groups")
    needs = "no difference so far" if more is None else f"about {more} more groups would tell a difference this size"
    if more is not None and drawn_paused(readout):  # a paused draw keeps no slice: no group joins the comparison
        needs = "the comparison waits while aiming is paused"
    return f"{arms}against uniform: not yet distinguishable, {gain} {so_far}; {needs}"


def _ratio_words(readout: dict[str, Any]) -> str:
    ratio, low, high = (readout.get(key) for key in ("rollouts_ratio", "rollouts_ratio_low", "rollouts_ratio_high"))
    if ratio is None:
        return "no informative group in one arm"
    bound = "inf" if high is None else f"{high:.2f}x"
    return f"{ratio:.2f}x the slice's rollouts per informative group [{low:.2f}x, {bound}]"


def _points(value: float) -> str:
    return f"{100 * value:+.0f}"


def share_words(value: float | None) -> str:
    """A share in percent, "-" for none (an arm with no group has no share)."""
    return "-" if value is None else f"{value:.0%}"


def drawn_paused(readout: dict[str, Any]) -> bool:
    """Whether the epoch was drawn uniformly because aiming was paused (docs/readout.md). A run that has paused says
    its level after every epoch (`aim`), and a paused draw keeps no slice: measured groups without arms."""
    return bool("aim" in readout and readout.get("groups") and "aimed_groups" not in readout)


def _all_control(readout: dict[str, Any]) -> bool:
    """Whether the epoch's uniform slice is all of it (probe's `--uniform-share 1`): no group was aimed."""
    return bool(readout.get("control_groups")) and readout.get("aimed_groups") == 0


def _uniform_first(readout: dict[str, Any]) -> bool:
    """Whether the epoch was drawn by a strategy that estimates pass rates before it had any estimate."""
    return readout.get("estimate") != NO_ESTIMATE and readout.get("estimated_pass_rate") is None


def r_words(readout: dict[str, Any], *, cell: bool = False) -> str:
    """r over how many prompts measured with an estimate (drawn after the strategy had one), why there is none, or
    what it waits for: status's `cell` says it shorter."""
    correlation, so_far = readout.get("correlation"), readout.get("correlated_prompts") or 0
    if correlation is not None:
        return (
            f"{correlation:+.2f}" if cell else f"r {correlation:+.2f} over {so_far} prompts measured with an estimate"
        )
    if readout.get("correlation_note") or readout.get("estimate") == NO_ESTIMATE:
        return "-" if cell else f"r: none ({readout.get('correlation_note') or 'the strategy keeps no estimate'})"
    waits = f"after {CORRELATION_MIN_PROMPTS}" + ("" if cell else " prompts measured with an estimate")
    return f"{waits} ({so_far} so far)" if cell else f"r: {waits} ({so_far} so far)"


def readout_needs(scheduler: Any) -> list[str]:
    """What `schedule init` says when the run's epoch is too small for its readout to tell (else nothing)."""
    size = scheduler.subset_size
    if size >= ENOUGH_GROUPS:
        return []
    epochs = math.ceil(CORRELATION_MIN_PROMPTS / size)
    r = f"; r shows after {epochs} epochs drawn with estimates ({CORRELATION_MIN_PROMPTS} measured prompts)"
    r = r if scheduler.strategy.about.estimates else ""
    return [
        f"readout: {size} prompts an epoch are too few for an epoch's zero-variance share to tell from chance (it "
        f"takes {ENOUGH_GROUPS}: --subset-size {ENOUGH_GROUPS} or more){r}"
    ]
