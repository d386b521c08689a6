"""Command-line entry until `gaincurate bench curriculum` exists:

    python -m gaincurate.benchmarks.curriculum --config cpu-arith --out OUT [--strategies uniform,oracle]
        [--seeds 3] [--smoke] [--max-pairs N] [--quiet]

Prints the markdown table (and the headroom line when the oracle ran) on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gaincurate.benchmarks.curriculum.bench import run_bench
from gaincurate.benchmarks.curriculum.summary import markdown_table
from gaincurate.errors import GaincurateError
from gaincurate.progress import NULL_PROGRESS


class RichProgress:
    """The `Progress` protocol on a rich bar over every optimizer step of the bench, labelled by pair."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=Console(stderr=True),
        )  # fmt: skip
        self.task = self.bar.add_task("starting", total=None)

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def stage(self, message: str) -> None:
        self.bar.update(self.task, description=message)

    def set_total(self, total: int) -> None:
        self.bar.update(self.task, total=total, completed=0)

    def advance(self, rows: int) -> None:
        self.bar.advance(self.task, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaincurate.benchmarks.curriculum", description=__doc__)
    parser.add_argument("--config", required=True, help="cpu-arith, cpu-smollm2-math, gpu-math, or a JSON/TOML file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategies", default=None, help="comma-separated (default: the config's)")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="1 seed, a few steps: checks the harness end to end")
    parser.add_argument("--max-pairs", type=int, default=None, help="train at most N pairs in this call, then stop")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()] if args.strategies else None
    try:
        if args.quiet or not sys.stderr.isatty():
            summary = run_bench(args.config, args.out, strategies=strategies, seeds=args.seeds, smoke=args.smoke,
                                max_pairs=args.max_pairs, progress=NULL_PROGRESS)  # fmt: skip
        else:
            with RichProgress() as progress:
                summary = run_bench(args.config, args.out, strategies=strategies, seeds=args.seeds,
                                    smoke=args.smoke, max_pairs=args.max_pairs, progress=progress)  # fmt: skip
    except GaincurateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
