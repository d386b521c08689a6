"""How long the `probe` strategy takes to fit and predict a large pool, in CPU seconds (a benchmark, not a test).

    python -m gaincurate.lab.benchmarks.probe_fit                 # 100,000 prompts, a 576-wide embedding, 3 epochs
    python -m gaincurate.lab.benchmarks.probe_fit --prompts 1000000 --width 4096

It builds the strategy over seeded random float16 embeddings (the projection to 256 columns included), gives it
three epochs of 4,096 measured groups and the answer likelihood of the whole pool (then 8,192 a refresh), and times
one estimate of every prompt: the penalty chosen on the newest epoch, the fit, the predictions. CPU seconds
(`time.process_time`), so a shared machine's load does not count; run it with one thread (OMP_NUM_THREADS=1).
docs/benchmark-history.md ("The probe's fit at scale") keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def measure(prompts: int, width: int, per_epoch: int = 4096, epochs: int = 3) -> dict[str, float]:
    from gaincurate.schedule.state import ScheduleState
    from gaincurate.schedule.strategies.probe import ProbeStrategy
    from gaincurate.schedule.strategies.probe.memory import Measured

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(prompts, width)).astype(np.float16).astype(np.float32)
    started = time.process_time()
    probe = ProbeStrategy(np.arange(prompts), embeddings, ProbeStrategy.about.options(likelihood=True))
    build = time.process_time() - started
    measured = Measured(None)
    for epoch in range(epochs):
        ids = rng.choice(prompts, per_epoch, replace=False)
        measured.add_groups({int(i): (float(rng.integers(0, 9)), 8) for i in ids}, epoch)
        refreshed = np.arange(prompts) if epoch == 0 else np.sort(rng.choice(prompts, 8192, replace=False))
        measured.add_likelihood(refreshed, -rng.exponential(3.0, len(refreshed)), epoch)
    state = ScheduleState(ranking=np.arange(prompts), scores=np.zeros(prompts), memory=measured.to_memory(),
                          epoch=epochs)  # fmt: skip
    started = time.process_time()
    estimate = probe.estimate(state)
    fit = time.process_time() - started
    assert estimate is not None
    return {"prompts": prompts, "embedding_width": width, "feature_columns": probe.features.width + 3,
            "measured_groups": epochs * per_epoch, "build_cpu_s": round(build, 2),
            "fit_predict_cpu_s": round(fit, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--width", type=int, default=576)
    args = parser.parse_args()
    print(json.dumps(measure(args.prompts, args.width)))


if __name__ == "__main__":
    main()
