"""`ScheduleConfig`'s checks between settings, in Python's spelling: a setting nothing reads is refused, a filter's
option offers its switch, and a size that is no whole number of batches offers only sizes the pool can hold."""

from __future__ import annotations

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
