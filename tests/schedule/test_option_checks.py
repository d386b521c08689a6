"""`ScheduleConfig`'s checks between settings, in Python's spelling: a setting nothing reads is refused, a filter's
option offers its switch, and a size that is no whole number of batches offers only sizes the pool can hold."""

from __future__ import annotations

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.sizes import resolve_subset


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"strategy": "uniform", "rescore_nproc": 2}, "rescore_nproc is a gain or length option; pass strategy='gain'"),
        ({"strategy": "length", "rescore": "none", "rescore_nproc": 2}, "rescore_nproc has nothing to re-score"),
        ({"strategy": "gain", "rescore": "none", "rescore_every": 3}, "rescore_every has nothing to re-score"),
        ({"strategy": "probe", "explore_max": 0.9}, "pass strategy='greso' or skip_zero_variance=True, or drop"),
    ],
    ids=["nproc-uniform", "nproc-length-none", "every-gain-none", "explore-max"],
)
def test_a_setting_nothing_reads_is_refused(settings, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        ScheduleConfig(**settings)


def test_the_settings_that_are_read_are_taken():
    assert ScheduleConfig(strategy="gain", rescore="window", rescore_nproc=2, rescore_every=3).rescore_nproc == 2
    assert ScheduleConfig(strategy="gain", rescore="none").options.rescore_every == 1
    assert ScheduleConfig(strategy="probe", skip_zero_variance=True, explore_max=0.9).skip_zero_variance is not None


@pytest.mark.parametrize(
    ("size", "n_prompts", "multiple", "expected"),
    [
        (20, 320, 400, "the 320 prompts are fewer than one batch of subset_multiple=400; lower it"),
        (330, 320, 100, "Use 300, or give a share"),
        (20, 1000, 400, "Use 400, or give a share"),
        (450, 1000, 400, "Use 400 or 800, or give a share"),
    ],
    ids=["batch-over-pool", "above-pool", "below-one-batch", "both"],
)
def test_a_size_off_the_batches_offers_sizes_the_pool_holds(size, n_prompts, multiple, expected):
    with pytest.raises(ConfigError, match=expected):
        resolve_subset(size, n_prompts, multiple)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"strategy": "gain", "sigma": 1e-170}, "sigma must be 1e-100 or more; got 1e-170"),
        ({"strategy": "gain", "sigma": "1e-170%"}, "sigma must be 1e-100 or more; got 1e-170%"),
        ({"strategy": "dots", "tau": 1e-309}, "tau must be a positive number"),
        ({"strategy": "probe", "tau": 1e-200}, "tau must be a positive number"),
    ],
    ids=["sigma", "sigma-share", "dots-tau", "probe-tau"],
)
def test_a_width_whose_quotient_leaves_float64_is_refused(settings, expected):
    """gain's log-weights divide by 2 sigma^2 and dots' and probe's by tau: a positive value small enough to make that
    quotient infinite would draw NaN weights, or skip the centre the width is meant to concentrate on."""
    with pytest.raises(ConfigError, match=expected):
        ScheduleConfig(**settings)


def test_the_smallest_width_draws_its_centre():
    from gaincurate.schedule.sizes import SMALLEST
    from gaincurate.schedule.strategies import contract

    weights = contract.gaussian_log_weights(5, 2.0, SMALLEST)
    assert weights[2] == 0.0 and bool(np.all(np.isfinite(weights)))
