"""The options of `gaincurate schedule init`, generated from the dataclass fields that declare them.

The common settings come from `ScheduleConfig`'s fields (`common_parameters`: help, "[default: ...]" and form, by
`gaincurate.cli.fields`); only `--scores` and `--reward-range` (which sets two fields) are written here. Every
strategy option comes from its dataclass field (`gaincurate.schedule.options.option`: default, help, check), so a
new strategy's options appear in `init`, its `--help`, `--config FILE` and docs/cli.md with no second list to keep
in step. The help shows the common options, then the default strategy's panel, then one panel per other product
strategy, and the options of the strategies kept for comparison last, in one closing panel of their own
(`LAB_PANEL`). Each filter's flag (`--band`, `--skip-zero-variance`) comes from its class in `registry.FILTERS`
(`filter_parameters`), its options from its `Options` as a strategy's do. An option several strategies share
(`--target`, `--forget`) is one flag, shown in the panel of the first in that order, its help naming every owner and
each one's default. A size is checked at parse time
(`_size`), and so is an `A,B` pair (`_pair_parser`), so a bad value is a usage error naming it, like any mistyped
value.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.cli.fields import default_text, field_parameters, option_annotation, value_text, with_default
from gaincurate.cli.options import PRODUCT_COMMANDS
from gaincurate.schedule.config import DEFAULT_STRATEGY, ScheduleConfig
from gaincurate.schedule.options import flag
from gaincurate.schedule.strategies.registry import FILTERS, KEPT_FOR_COMPARISON, STRATEGIES


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

    parse.pair_form = form  # type: ignore[attr-defined]  # a config file may give the pair as a list too
    return parse


def pair(text: str) -> tuple[float, float]:
    """`A,B` as two numbers (`_pair_parser` checked the form); the config checks their range."""
    low, high = (float(part) for part in text.split(","))
    return low, high


ScoresOption = Annotated[
    Path | None, typer.Option("--scores", help="Scores directory written by `gaincurate score` (or --prompts).")
]
PromptsOption = Annotated[
    Path | None,
    typer.Option(
        "--prompts",
        metavar="FILE",
        help="Instead of --scores, for strategies that read no score (uniform, mopps, greso; `schedule strategies` "
        "says which): a JSONL/parquet prompt file, kept in RUN/prompts; no model pass.",
    ),
]
PROMPTS_PANEL = "with --prompts FILE"
PromptColumnOption = Annotated[
    str | None,
    typer.Option(help="The column of prompts, when not `gaincurate score`'s own.", rich_help_panel=PROMPTS_PANEL),
]
DropDuplicatesOption = Annotated[
    bool,
    typer.Option(
        "--drop-duplicates", help="Keep only the first row of each repeated prompt text.", rich_help_panel=PROMPTS_PANEL
    ),
]
_FIELDS = {field.name: field for field in dataclasses.fields(ScheduleConfig)}
_REWARDS = ",".join(default_text(_FIELDS[name]) for name in ("reward_min", "reward_max"))  # --reward-range sets both
RewardRange = Annotated[
    str | None,
    typer.Option(
        parser=_pair_parser("two numbers LO,HI such as -1,1"),
        help=with_default("LO,HI: wrong and right rewards, e.g. -1,1.", _REWARDS),
    ),
]
RESCORE_PANEL = "gain and length options"
FILTER_PANEL = "filters over any strategy"
LAB_PANEL = "strategies kept for comparison (the lab's)"

# A field's spelling on the command line (`option(cli=...)`), when it is not a plain number.
_PARSERS = {
    "size": _size,
    "pair": _pair_parser("two positive numbers A,B such as 1,1"),
}


def _owners(lab: bool = True) -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Each option name, with the strategies (registry order) and filters' flags that have it, and their fields;
    without `lab`, none of the strategies kept for comparison (which are then not loaded)."""
    owners: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for name, cls in _mounted(lab).items():
        for field in dataclasses.fields(cls.about.options):
            owners.setdefault(field.name, []).append((name, field))
    for setting, filter_class in FILTERS.items():  # a filter's options, over any strategy: its flag has them too
        for field in dataclasses.fields(filter_class.options_class):
            owners.setdefault(field.name, []).append((flag(setting), field))
    return owners


def _mounted(lab: bool) -> dict[str, type]:
    """The registered strategies by name in the order the help shows them: the default, the product's others in
    registry order, then (with `lab`) those kept for comparison. An option several share is in its first one's panel."""
    product = [DEFAULT_STRATEGY, *(name for name in STRATEGIES if name not in KEPT_FOR_COMPARISON | {DEFAULT_STRATEGY})]
    kept = [name for name in STRATEGIES if lab and name in KEPT_FOR_COMPARISON]
    return {name: STRATEGIES[name] for name in (*product, *kept)}


def _panel(strategies: list[str]) -> str:
    first = strategies[0]
    if first in ("gain", "length"):
        return RESCORE_PANEL
    return LAB_PANEL if first in KEPT_FOR_COMPARISON else f"{first} options"


def mounts_the_lab(argv: list[str]) -> bool:
    """Whether `schedule init` offers the options of the strategies kept for comparison on this command line: on
    `schedule init` itself (its flags, help, `--config` file and errors see every strategy's options) and on any
    command line that is no product command (a script calling `main` in process, `gaincurate --help`). A product
    command besides (`schedule step`, `status`, `score`, ...) never reads init's options, so it loads no lab module."""
    words = [word for word in argv[1:] if not word.startswith("-")]
    return not words or words[0] not in PRODUCT_COMMANDS or words[:2] == ["schedule", "init"]


def _help(name: str, owned: list[tuple[str, dataclasses.Field]]) -> str:
    field = owned[0][1]
    strategies = [strategy for strategy, _ in owned]
    defaults = {strategy: other.default for strategy, other in owned}
    shown = set(map(repr, defaults.values()))
    shown_texts = {other.metadata.get("shown") for _, other in owned}
    if None in defaults.values():  # resolved later: the field says how (`shown`), or the help says what it means
        default = f" [default: {shown_texts.pop()}]" if len(shown_texts) == 1 and None not in shown_texts else ""
    elif len(shown) == 1:
        default = f" [default: {default_text(field)}]"
    else:
        default = " [default: " + ", ".join(f"{s} {value_text(d)}" for s, d in defaults.items()) + "]"
    return f"{', '.join(strategies)}: {field.metadata['help']}{default}"


def _annotation(field: dataclasses.Field, help: str, panel: str) -> Any:
    # bool before int; a "flag" may default to None, decided later (`Options.resolved`)
    base = next((k for k in (bool, int, str) if isinstance(field.default, k) or field.metadata["cli"] == "flag"), float)
    return option_annotation(field, base, help=help, panel=panel, parsers=_PARSERS)


def common_parameters(*names: str, panel: str | None = None) -> list[inspect.Parameter]:
    """A keyword parameter (default None: not given) per common setting named, from its `ScheduleConfig` field:
    its help, its "[default: ...]" and how the command line spells it."""
    return field_parameters(ScheduleConfig, only=names, panel=panel, parsers=_PARSERS)


def strategy_parameters(lab: bool = True) -> tuple[list[inspect.Parameter], list[inspect.Parameter]]:
    """A keyword parameter (default None: not given) for every strategy option: the product's, then those only the
    strategies kept for comparison have (none without `lab`), each in help order."""
    parameters, kept = [], []
    for name, owned in _owners(lab).items():
        panel = _panel([owner for owner, _ in owned])
        annotation = _annotation(owned[0][1], _help(name, owned), panel)
        parameter = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        (kept if panel == LAB_PANEL else parameters).append(parameter)
    return parameters, kept


def filter_parameters() -> list[inspect.Parameter]:
    """A keyword parameter per filter (`registry.FILTERS`): `--band LO,HI` (default None: not given), or a switch
    (`--skip-zero-variance`, default off), with the filter's summary as its help, in a panel of their own (a
    switch's `--no-` form would narrow the common panel's help column)."""
    parameters = []
    # Typer names each flag after its parameter (`--band`), and a switch gets its --no- form as well.
    for setting, filter_class in FILTERS.items():
        if filter_class.pair_form is not None:
            option = typer.Option(
                parser=_pair_parser(filter_class.pair_form), help=filter_class.summary, rich_help_panel=FILTER_PANEL
            )
            annotation, default = Annotated[str | None, option], None
        else:
            option = typer.Option(help=filter_class.summary, rich_help_panel=FILTER_PANEL)
            annotation, default = Annotated[bool, option], False
        parameter = inspect.Parameter(setting, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        parameters.append(parameter)
    return parameters


def strategy_settings(values: dict[str, Any], lab: bool) -> dict[str, Any]:
    """The strategy and filter options given on the command line, as `ScheduleConfig` takes them (pairs parsed,
    paths absolute: a calibrator is read at every step, from wherever the step runs). Only the strategies whose
    options `init` was built with are read: those kept for comparison with `lab` (`mounts_the_lab`)."""
    kinds = {name: owned[0][1].metadata["cli"] for name, owned in _owners(lab).items()}
    kinds |= {setting: "pair" if cls.pair_form else "switch" for setting, cls in FILTERS.items()}
    settings = {}
    for name, value in values.items():
        if name not in kinds or value is None:
            continue
        kind = kinds.get(name)
        settings[name] = pair(value) if kind == "pair" else str(Path(value).resolve()) if kind == "path" else value
    return settings
