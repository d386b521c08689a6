"""The options of `gaincurate schedule init`: one `Annotated` alias per `ScheduleConfig` field it sets.

A size is checked at parse time (`_size`), and so is an `A,B` pair (`_pair_parser`), so a bad value is a usage
error naming it, like any mistyped value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from gaincurate.schedule.config import ANGLE_SIGNALS, FORMATS, RESCORE_MODES
from gaincurate.schedule.gain_options import DIRECTIONS, MU_CONTROLS, RANKINGS

FRACTION = "A number is ranks; a share of the prompt count N is a percentage, e.g. 2%."


def _size(text: str) -> str:
    """A size option's text, checked at parse time, so a bad one is a usage error like any mistyped value."""
    from gaincurate.schedule.sizes import size_text

    return size_text(text)  # its ValueError becomes the usage error "--sigma wide is not valid: ..."


def _pair_parser(form: str):
    """A parser for an `A,B` option: exactly two numbers, checked at parse time (a usage error naming the value)."""

    def parse(text: str) -> str:
        try:
            numbers = [float(part) for part in text.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != 2:
            raise ValueError(f"expected {form}")
        return text

    return parse


ScoresOption = Annotated[Path, typer.Option("--scores", help="Scores directory written by `gaincurate score`.")]
SubsetSize = Annotated[
    str | None,
    typer.Option(
        parser=_size, help=f"Prompts per epoch (default 256/7500 of N, rounded to --subset-multiple). {FRACTION}"
    ),
]
SubsetMultiple = Annotated[
    int | None,
    typer.Option(help="The subset size is a multiple of K: the prompts your trainer takes per batch (default 1)."),
]
Sigma = Annotated[str | None, typer.Option(parser=_size, help=f"Gaussian width (default 2/15 of N). {FRACTION}")]
StepSize = Annotated[
    str | None, typer.Option(parser=_size, help=f"n, the step scale of mu (default 1/15 of N). {FRACTION}")
]
Alpha = Annotated[float | None, typer.Option(help="tanh sharpness (default 2).")]
Beta = Annotated[float | None, typer.Option(help="Target accuracy (default 0.5).")]
AdjMin = Annotated[
    str | None,
    typer.Option(parser=_size, help=f"Lower clamp of a step (default 0; below 0 mu can move back). {FRACTION}"),
]
AdjMax = Annotated[
    str | None, typer.Option(parser=_size, help=f"Upper clamp of a step (default 2/15 of N). {FRACTION}")
]
RewardMax = Annotated[float | None, typer.Option(help="Reward of a correct rollout (default 1).")]
RewardRange = Annotated[
    str | None,
    typer.Option(
        parser=_pair_parser("two numbers LO,HI such as -1,1"), help="LO,HI: wrong and right rewards, e.g. -1,1."
    ),
]
Seed = Annotated[int | None, typer.Option(help="Seed of every epoch's draw (default 0).")]
Rescore = Annotated[
    Literal[RESCORE_MODES] | None,
    typer.Option(
        help="Re-score from checkpoints for the angle term (default: subset for gain and length, none for the "
        "others, which never use mu; none: no angle term)."
    ),
]
RescoreEvery = Annotated[int | None, typer.Option(help="Re-score every K epochs (default 1).")]
RescoreNproc = Annotated[
    int | None, typer.Option(help="Re-score with N processes via torchrun (default 1: in process).")
]
DataFormat = Annotated[Literal[FORMATS] | None, typer.Option("--format", help="Epoch file layout (default trl).")]
DataSource = Annotated[
    str | None, typer.Option(help="verl: the rows' data_source, verl's reward key (default lighteval/MATH).")
]
AngleSignal = Annotated[
    Literal[ANGLE_SIGNALS] | None,
    typer.Option(help="Angle term: raw fresh score, or centered on the fresh scores (needs --rescore window|full)."),
]
# dots (docs/dots.md) and the reward-history strategies (gaincurate.schedule.mopps, .greso; docs/strategies.md).
Target = Annotated[float | None, typer.Option(help="dots, mopps: the pass rate to aim at (default 0.5).")]
Tau = Annotated[float | None, typer.Option(help="dots: selection temperature (default 0.05; the paper's 1e-3).")]
TauAttn = Annotated[float | None, typer.Option(help="dots: attention temperature (default 0.1).")]
Decay = Annotated[
    float | None, typer.Option(help="dots: weight per epoch of a measurement's age (default 0.4; 1: never ages).")
]
ReferenceEvery = Annotated[
    int | None,
    typer.Option(help="dots: every K epochs roll a fresh reference set with the newest checkpoint (default 0: never)."),
]
ReferenceSize = Annotated[
    int | None, typer.Option(help="dots: prompts in each fresh reference set (default: the subset size).")
]
Calibrator = Annotated[Path | None, typer.Option(help="dots: an adapter and head from `difficulty fit` (.npz).")]
Reference = Annotated[
    str | None, typer.Option(help="dots: feedback JSON lines measured before epoch 0 (`gaincurate rollout`).")
]
Prior = Annotated[
    str | None,
    typer.Option(
        parser=_pair_parser("two positive numbers A,B such as 1,1"),
        help="mopps: Beta prior A,B of every pass rate (default 1,1).",
    ),
]
Forget = Annotated[
    float | None, typer.Option(help="mopps: weight old evidence keeps at each update (default 0.8; 1: never forget).")
]
ExploreMin = Annotated[float | None, typer.Option(help="greso: lowest exploration rate (default 0.05).")]
ExploreMax = Annotated[float | None, typer.Option(help="greso: highest exploration rate (default 0.95).")]
TargetZeroVariance = Annotated[
    float | None, typer.Option(help="greso: share of all-right or all-wrong prompts to steer to (default 0.25).")
]
ScreenFactor = Annotated[int | None, typer.Option(help="screen: candidates screened per epoch prompt, k (default 2).")]
ScreenRollouts = Annotated[
    int | None, typer.Option(help="screen: rollouts per candidate with the current policy, r (default 4).")
]
Band = Annotated[
    str | None,
    typer.Option(
        parser=_pair_parser("two pass rates LO,HI such as 0.1,0.9"),
        help="dots, mopps, screen: train first on prompts whose pass-rate estimate is in [LO, HI] "
        "(screen's default: drop 0/r and r/r).",
    ),
]
SkipZeroVariance = Annotated[
    bool, typer.Option(help="Skip prompts whose recent rollouts all agreed (GRESO's filter) over this strategy.")
]
# gain's ablation options (docs/strategies.md, "GAIN-RL ablation options"); the defaults are the published schedule.
Ranking = Annotated[
    Literal[RANKINGS] | None,
    typer.Option(help="gain: rank by angle score, or by a permutation seeded by --seed (default score)."),
]
MuControl = Annotated[
    Literal[MU_CONTROLS] | None,
    typer.Option(help="gain: move mu by the GAIN-RL update, or sweep it --sweep-rate a step (default feedback)."),
]
SweepRate = Annotated[
    str | None,
    typer.Option(
        parser=_size, help=f"gain --mu-control sweep: ranks mu moves per epoch (default --step-size). {FRACTION}"
    ),
]
Direction = Annotated[
    Literal[DIRECTIONS] | None,
    typer.Option(
        help="gain: highest score first, or auto: reversed when the first epoch's pass rates fall with the score "
        "(default high-first)."
    ),
]
