"""Whether a run keeps paying for aiming, decided from its own control after each epoch (`schedule init --no-pause`:
always aim).

Aiming costs twice: the strategy's measurements of the newest model between epochs (probe's likelihood refresh:
forward passes the user pays for) and, where its estimates are blunt, a draw no more informative than uniform's.
Where the in-run control (`gaincurate.schedule.control`) shows nothing saved, a run should pay for neither. Three
levels, each read over the gate's window (below):

* `AIMING`: aim, and measure what the strategy asks of the newest model. When the control has `GATE_GROUPS` groups
  and the aimed arm's informative share is no higher than the control's, the refresh pauses (`REFRESH_PAUSED`; a
  strategy that asks nothing of the model goes straight to `PAUSED`).
* `REFRESH_PAUSED`: aim with what the strategy has; ask nothing of the model. A saving shown by the comparison (its
  interval above 0) brings the refresh back; `GATE_GROUPS` more control groups with the aim no better pause the aim.
* `PAUSED`: the epoch is drawn uniformly and nothing is asked of the model, so the run spends what uniform would. The
  strategy still learns from every group and still estimates every prompt at the draw: once the groups its estimates
  put in its band are more informative than the rest of the uniform draw (the difference's interval above 0),
  aiming resumes.

The window: the latest epochs since the level last changed, as few as give each arm `WINDOW_GROUPS` groups (all of
them until then); an epoch missing either arm adds nothing. Summed over a whole run, a large early saving would hide
for ever an aim that has since stopped paying (with the window its refresh pauses about 8 epochs after, at the
benches' 6 control groups an epoch). A pause rests on a point estimate over at least `GATE_GROUPS` control groups, a
resumption on an interval at the readout's per-look levels (`look_z`), counted from the level's last change, since
it checks again after every epoch: where nothing can be saved the run stops paying soon and resumes by chance in under
5% of runs, and a true saving of the benches' size (20-30 points of informative share) is wrongly paused with a
chance of about 1 in 50 at the first check, 1 in 25 over 30 epochs (tests/schedule/test_control.py), and resumes once
the window shows the saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gaincurate.schedule.control import Arm, difference_interval, look_z

AIMING, REFRESH_PAUSED, PAUSED = 0, 1, 2
LEVEL_WORDS = {AIMING: "aiming", REFRESH_PAUSED: "refresh paused", PAUSED: "paused"}
GATE_GROUPS = 30  # control groups before a pause: a share's standard error is then <= 0.09
WINDOW_GROUPS = 2 * GATE_GROUPS  # groups of each arm the window keeps: recent, yet rarely pausing a true saving


@dataclass(frozen=True)
class Gate:
    """The level, and its window: per epoch since the level last changed, the two arms compared (the aimed draw and
    the control; `PAUSED`: the uniform draw's groups inside the strategy's band and outside it). `looks`: the checks
    for a resumption made since the level last changed."""

    level: int = AIMING
    window: tuple[tuple[Arm, Arm], ...] = ()
    looks: int = 0

    def to_json(self) -> dict[str, Any]:
        window = [[first.to_json(), second.to_json()] for first, second in self.window]
        return {"level": self.level, "window": window} | ({"looks": self.looks} if self.looks else {})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Gate:
        window = tuple((Arm.from_json(first), Arm.from_json(second)) for first, second in data.get("window", ()))
        return cls(int(data["level"]), window, int(data.get("looks", 0)))

    @property
    def asks_model(self) -> bool:
        return self.level == AIMING

    @property
    def aims(self) -> bool:
        return self.level != PAUSED

    @property
    def arms(self) -> tuple[Arm, Arm]:
        """The window's two arms, summed over its epochs."""
        return sum((first for first, _ in self.window), Arm()), sum((second for _, second in self.window), Arm())


@dataclass(frozen=True)
class Evidence:
    """One epoch's groups as the gate reads them: aimed and control (an epoch drawn with a control), or, in a
    uniform epoch drawn with estimates, those in the band and the rest."""

    aimed: Arm = Arm()
    control: Arm = Arm()
    in_band: Arm = Arm()
    off_band: Arm = Arm()


def advance(gate: Gate | None, evidence: Evidence, *, refreshes: bool) -> tuple[Gate, str | None]:
    """The gate after an epoch's `evidence`, and what changed, in words (None: nothing). `refreshes`: the strategy
    asks something of the newest model (without, an aim no better pauses straight to `PAUSED`)."""
    gate = gate or Gate()
    if gate.level == PAUSED:
        window = _slid(gate.window, evidence.in_band, evidence.off_band)
        first, second = Gate(PAUSED, window).arms
        looks = gate.looks + bool(first.groups and second.groups)
        if looks > gate.looks and difference_interval(first, second, look_z(looks))[0] > 0:
            return Gate(AIMING), (
                f"aiming resumes: within the uniform draws the prompts the estimates aim at were more informative "
                f"({_share(first)} of {first.groups} groups against {_share(second)} of {second.groups})"
            )
        return Gate(PAUSED, window, looks), None
    window = _slid(gate.window, evidence.aimed, evidence.control)
    first, second = Gate(gate.level, window).arms
    looks = gate.looks + bool(gate.level == REFRESH_PAUSED and first.groups and second.groups)
    if looks > gate.looks and difference_interval(first, second, look_z(looks))[0] > 0:
        return Gate(AIMING), (
            f"the refresh resumes: the aimed draw is more informative than the uniform slice again ({_share(first)} "
            f"of {first.groups} groups against {_share(second)} of {second.groups})"
        )
    if second.groups < GATE_GROUPS or first.groups == 0 or _more_informative(first, second):
        return Gate(gate.level, window, looks), None
    seen = (
        f"the aimed draw was no more informative than the uniform slice ({_share(first)} of {first.groups} groups "
        f"against {_share(second)} of {second.groups}, the latest {len(window)} epochs)"
    )
    if gate.level == AIMING and refreshes:
        return Gate(REFRESH_PAUSED), f"{seen}: the refresh pauses (nothing more is asked of the model); aiming goes on"
    return Gate(PAUSED), (
        f"{seen}: aiming pauses, and epochs are drawn uniformly with nothing asked of the model, until the estimates "
        "pick informative prompts again"
    )


def _slid(window: tuple[tuple[Arm, Arm], ...], first: Arm, second: Arm) -> tuple[tuple[Arm, Arm], ...]:
    """The window with an epoch's two arms added (not where either is empty), then its oldest epochs dropped while
    the rest still give each arm `WINDOW_GROUPS` groups."""
    if first.groups and second.groups:
        window = (*window, (first, second))
    while len(window) > 1:
        rest = Gate(window=window[1:]).arms
        if min(rest[0].groups, rest[1].groups) < WINDOW_GROUPS:
            break
        window = window[1:]
    return window


def _more_informative(first: Arm, second: Arm) -> bool:
    """first's informative share above second's, compared in integers (no rounding decides a pause)."""
    return first.informative * second.groups > second.informative * first.groups


def _share(arm: Arm) -> str:
    return f"{arm.informative / arm.groups:.0%}"
