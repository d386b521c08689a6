"""`BenchRun`: which pairs one call of `run_bench` trains, and how; light, so the CLI reads it without torch."""

from __future__ import annotations

from dataclasses import dataclass

from gaincurate.settings import at_least, setting


@dataclass(frozen=True, kw_only=True)
class BenchRun:
    """One call of `run_bench` (the bench's config aside); `gaincurate bench curriculum` takes each as an option."""

    strategies: tuple[str, ...] | None = setting(
        None,
        "Comma-separated arms: strategies, oracle, oracle-nonzero, or arms the config defines.",
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
