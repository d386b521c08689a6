"""The CPU-independent floats of gaincurate.numerics: exact against brute force, and the same bits on every path."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from simd_paths import narrowest_environment

from gaincurate.numerics import RECORDED_DIGITS, exp, fsum_array, int_power, int_powers, log_by_value, recorded


def test_recorded_keeps_twelve_significant_digits_and_leaves_the_rest_alone():
    assert RECORDED_DIGITS == 12
    assert recorded(4.640000000000001) == 4.64 and recorded(3.3200000000000003) == 3.32
    assert recorded(0.1 + 0.2) == 0.3 and recorded(2 / 3) == 0.666666666667
    assert recorded(123456789.123456789) == 123456789.123 and recorded(-1.5e-20) == -1.5e-20
    assert recorded(None) is None and math.isnan(recorded(float("nan"))) and recorded(-math.inf) == -math.inf
    assert recorded(np.float64(0.1) * 3) == 0.3 and type(recorded(np.float32(0.1))) is float
    values = np.random.default_rng(0).normal(size=1000) * 10.0 ** np.random.default_rng(1).integers(-9, 9, 1000)
    assert all(recorded(recorded(v)) == recorded(v) for v in values)  # a file read back records the same


def test_int_power_is_repeated_squaring_in_python_floats():
    assert int_power(0.4, 2) == 0.4 * 0.4 == 0.16000000000000003  # numpy's AVX-512 np.power says 0.16
    assert int_power(0.4, 0) == 1.0 and int_power(0.0, 0) == 1.0 and int_power(0.4, 1) == 0.4
    assert int_power(0.4, 5) == (0.4 * 0.4 * (0.4 * 0.4)) * 0.4  # the squares, multiplied in from the lowest bit
    assert int_power(2.0, 10) == 1024.0 and int_power(0.5, 1100) == 0.0 and int_power(3.0, 700) == math.inf
    with pytest.raises(ValueError, match="non-negative"):
        int_power(0.4, -1)


def test_int_powers_are_int_power_elementwise():
    rng = np.random.default_rng(2)
    exponents = rng.integers(0, 40, size=(50, 3))
    bases = rng.uniform(0.01, 1.5, size=(50, 1))
    expected = [[int_power(float(b[0]), int(e)) for e in row] for b, row in zip(bases, exponents, strict=True)]
    np.testing.assert_array_equal(int_powers(bases, exponents), expected)
    np.testing.assert_array_equal(int_powers(0.4, np.array([0, 1, 2, 3])), [1.0, 0.4, 0.16000000000000003, 0.4**3])
    assert int_powers(0.4, np.zeros(0, np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="non-negative"):
        int_powers(0.4, np.array([1, -2]))


def test_exp_is_within_one_ulp_of_the_true_value():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-40, 0, 20_000), rng.uniform(-700, 700, 5000), [0.0, 1.0, -1e-300, 1e-10]])
    truth = np.array([math.exp(v) for v in x])
    ours = exp(x)
    assert np.all(np.abs(ours - truth) <= np.spacing(truth)), "more than one ULP from the C library's exp"
    edges = exp(np.array([-np.inf, np.nan, -800.0, 800.0, np.inf]))
    assert edges[0] == 0.0 and math.isnan(edges[1]) and edges[2] == 0.0 and edges[3] == edges[4] == math.inf
    assert exp(np.zeros((2, 3))).shape == (2, 3) and exp(np.zeros(0)).shape == (0,)


def test_log_by_value_is_the_c_librarys_log_of_each_element():
    tokens = np.random.default_rng(5).integers(1, 400, size=(30, 7))
    np.testing.assert_array_equal(log_by_value(tokens), [[math.log(t) for t in row] for row in tokens.tolist()])
    edges = log_by_value(np.array([0.0, -1.0, np.nan, 1.0]))
    assert edges[0] == -math.inf and math.isnan(edges[1]) and math.isnan(edges[2]) and edges[3] == 0.0
    assert log_by_value(np.zeros(0)).shape == (0,)


def test_fsum_array_is_math_fsum():
    """The same bits as `math.fsum` where cancellation, a span of exponents, subnormals or overflow make a naive
    sum wrong, and its own rules for inf and NaN."""
    rng = np.random.default_rng(6)
    cases = [np.zeros(0), np.array([0.1] * 10), np.array([1.0, 2.0**-53, 2.0**-106]), np.array([2.0**53, 1.0, -1.0])]
    for n in (1, 2, 3, 100, 10_000):
        cases += [
            rng.random(n),
            rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, size=n),
            np.ldexp(rng.random(n), rng.integers(-1074, -1000, size=n)),
            rng.choice([1e308, -1e308, 1.0, 1e-308, 5e-324, -5e-324], size=n),
            np.concatenate([rng.normal(size=n) * 1e16, rng.normal(size=n) * -1e16, rng.random(n)]),
        ]
    cases += [np.array(v) for v in ([1e308, 1e308, -1e308], [math.inf, 1.0], [math.nan, 1.0], [math.inf, -math.inf])]
    for values in cases:
        assert outcome(fsum_array, values) == outcome(math.fsum, values.tolist()), values[:4]


def outcome(function, values) -> str:
    try:
        return repr(function(values))
    except (OverflowError, ValueError) as error:
        return type(error).__name__


PROBE = """
import hashlib, numpy as np
from gaincurate.numerics import exp, fsum_array, int_powers
from gaincurate.difficulty.predict import attention_predict, prepare_embeddings
from gaincurate.metrics import apply_debias
from gaincurate.schedule.strategies.probe.features import EmbeddingFeatures
rng = np.random.default_rng(4)
x = rng.uniform(-60, 5, 100_000)
z = prepare_embeddings(rng.normal(size=(300, 64)))
p = attention_predict(z, z[:200], rng.uniform(size=200), tau=0.1, exclude=np.arange(300) % 250 - 50)
debiased = apply_debias(x, rng.integers(1, 500, len(x)), {"intercept": 0.3, "slope": -0.07})
features = EmbeddingFeatures(rng.normal(size=(3000, 600)).astype(np.float16), 256)
probe = (features.rows(np.arange(0, 3000, 7)), features.predict(rng.normal(size=256)))
summed = np.array([fsum_array(x), fsum_array(x[:7] * 1e200)])
for values in (exp(x), int_powers(0.4, rng.integers(0, 30, 1000)), p, debiased, *probe, summed):
    print(hashlib.sha256(values.tobytes()).hexdigest())
"""


# OpenBLAS (numpy's wheels) picks its kernel by CPU; OPENBLAS_CORETYPE forces another, Prescott (SSE3) runs on any
# x86-64. Two threads split the matmul otherwise than one.
OTHER_BLAS = {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "2"}


@pytest.mark.determinism
def test_the_same_bits_on_every_simd_path_and_blas_kernel():
    """numerics' exp, powers and sums, DOTS' attention, the length-debiased ranking score and the probe's features
    and pool predictions built on them agree across numpy's paths and BLAS's kernels (the former np.exp and BLAS
    attention did not on this AVX-512 machine, with either change)."""
    outputs = []
    others = [OTHER_BLAS] if platform.machine() in ("x86_64", "AMD64") else []
    for environment in ({}, narrowest_environment(), *others):
        switches = (*narrowest_environment(), *OTHER_BLAS)
        env = {k: v for k, v in os.environ.items() if k not in switches}
        done = subprocess.run(
            [sys.executable, "-c", PROBE], env=env | environment, capture_output=True, text=True, check=True,
            cwd=Path(__file__).parent,
        )  # fmt: skip
        outputs.append(done.stdout.split())
    assert len(outputs[0]) == 7 and all(output == outputs[0] for output in outputs)
