"""`BenchRun`: which pairs one call of `run_bench` trains, and how, seeds included; light, so the CLI reads it."""

from __future__ import annotations

from dataclasses import dataclass

from gaincurate.errors import ConfigError
from gaincurate.settings import at_least, setting


@dataclass(frozen=True, kw_only=True)
class BenchRun:
    """One call of `run_bench` (the bench's config aside); `gaincurate bench curriculum` takes each as an option."""

    strategies: tuple[str, ...] | None = setting(
        None,
        "Comma-separated arms: strategies, oracle, oracle-nonzero, oracle-drawn, or arms the config defines.",
        shown="the config's",
        cli="words",
    )
    seeds: int | str | None = setting(
        None,
        "A range (100-111: seeds 100 to 111; 90-90: seed 90 alone) or a list (3,5,9-12); one number alone is refused.",
        shown="the config's",
        cli="seeds",
    )
    smoke: bool = setting(False, "One seed, a few steps: checks the harness end to end.", flags=("--smoke",))
    max_pairs: int | None = setting(None, "Train at most N pairs in this call, then stop.", check=at_least(1))
    workers: int = setting(1, "Pairs trained at once, each in its own process.", check=at_least(1))


def parse_seeds(spec: int | str) -> tuple[int, ...]:
    """Seeds from a count (the int 3: seeds 0, 1, 2), an inclusive range ("100-111") or a comma list of those
    ("5,7-9").

    Text is never a count: "90" alone could mean seed 90 (as "90-92" means 90 to 92) or the 90 seeds from 0, so it is
    refused with both spellings. A count is an int, as a config file or the Python API writes it."""
    if isinstance(spec, bool):
        raise ConfigError(f"seeds is a count, a range A-B or a comma list; got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"seeds must be 1 or more; got {spec}")
        return tuple(range(spec))
    seeds: list[int] = []
    text = str(spec).strip()
    if text.isdigit():
        seed = int(text)
        count = f", or 0-{seed - 1} for the {seed} seeds from 0" if seed > 1 else ", or 0-0 for seed 0" * seed
        raise ConfigError(f"seeds {text} is one number: write {seed}-{seed} for seed {seed} alone{count}")
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or (dash and int(high) < int(low)):
            raise ConfigError(f"seeds {spec!r}: write a range (100-111) or a list (3,5,9-12)")
        seeds.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {spec!r} names a seed twice")
    return tuple(seeds)
