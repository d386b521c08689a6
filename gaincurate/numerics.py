"""Floats that are the same on every CPU: exact-order powers, a fixed-order exp, and what a file records.

numpy and torch pick their vector loops by CPU, and their transcendental loops (`np.power`, `np.exp`,
`np.log`, `np.tanh` on float64 arrays) round differently in the last bit from one SIMD width to the next:
numpy 2.4's AVX-512 loop gives `np.power(0.4, [2.0]) == [0.16]`, its narrower loops and Python give
`0.16000000000000003`. IEEE-754's own operations (+, -, *, /, sqrt, rint, comparisons) are correctly
rounded on every path, and numpy's pairwise summation adds in an order fixed by its code, not by the CPU.
So everything here is built from those alone:

* `int_power(base, n)` / `int_powers(base, exponents)`: base ** n by repeated squaring, the squares
  multiplied in from the lowest bit up, one IEEE product at a time (so 0.4 ** 2 is 0.4 * 0.4 =
  0.16000000000000003 everywhere);
* `exp(x)`: e ** x from a fixed Cody-Waite reduction and Horner polynomial, within one ULP of the true
  value and the same bits on every path;
* `log_by_value(values)`: natural logs through the C library's scalar `log`, once per distinct value, for
  arrays of few distinct values (token counts) whose logs rank prompts;
* `fsum_array(values)`: `math.fsum` of a float64 array (its exactly rounded sum), in vector operations;
* `recorded(value)`: a float that is only reported (never fed back) as the file keeps it, RECORDED_DIGITS
  significant digits, so a last-bit difference upstream never reaches the file.

The rule these serve (docs/architecture.md, "Floats and the CPU") applies to every float that reaches
state.json, history.jsonl, an epoch file or a draw.

    int_power(0.4, 2)                     # 0.16000000000000003 on every CPU
    int_powers(0.4, np.array([0, 1, 2]))  # the same, elementwise
    recorded(0.1 + 0.2)                   # 0.3
"""

from __future__ import annotations

import math

import numpy as np

RECORDED_DIGITS = 12  # significant digits a file records of a float that is only reported

# exp: x = k ln2 + r with |r| <= ln2 / 2; ln2 split in two so that k * LN2_HIGH is exact for |k| < 2 ** 11.
LOG2_E = 1.4426950408889634
LN2_HIGH = 0.693145751953125  # ln 2 to 21 bits
LN2_LOW = 1.4286068203094173e-06  # ln 2 - LN2_HIGH
EXP_TERMS = 14  # Taylor terms 1, r, ..., r ** 13 / 13!: the first left out is below 1e-17 for |r| <= ln2 / 2
EXP_COEFFICIENTS = tuple(1.0 / math.factorial(n) for n in range(EXP_TERMS))
EXP_LOW, EXP_HIGH = -746.0, 710.0  # beyond them e ** x is 0 and inf in float64
EXP_BLOCK = 16384  # elements per pass: a block's temporaries stay in L2 cache


def recorded(value: float | None) -> float | None:
    """`value` as a file records a float that is only reported: RECORDED_DIGITS significant digits.

    None stays None, and NaN and the infinities stay as they are.
    """
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return value
    return float(f"{value:.{RECORDED_DIGITS}g}")


def fsum_array(values: np.ndarray) -> float:
    """`math.fsum(values)`, the same bits, in a few vector passes instead of a Python float per value.

    Rump, Ogita and Oishi's extraction: with sigma a power of two above 2 n max|x|, q = (sigma + x) - sigma is
    x cut to the bits at or above sigma's last, exactly, and x - q is exact too; any partial sum of the q lies on that
    grid within sigma, so numpy adds them exactly in whatever order it likes. Cutting the remainders again until none
    is left gives a few exact sums, and `math.fsum` rounds their total once, as it rounds the values' own.
    """
    x = np.array(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        return math.fsum(x.tolist())  # inf and NaN: math.fsum's own rules
    parts, top = [], float(np.max(np.abs(x))) if len(x) else 0.0
    while top > 0.0:
        exponent = math.frexp(top)[1] + len(x).bit_length() + 1  # sigma > 2 n top: see the docstring
        if exponent > 1000:
            return math.fsum(x.tolist())  # sigma would overflow
        sigma = math.ldexp(1.0, exponent)
        cut = (sigma + x) - sigma
        parts.append(float(cut.sum()))
        x -= cut
        top = float(np.max(np.abs(x)))
    return math.fsum(parts)


def int_power(base: float, exponent: int) -> float:
    """base ** exponent (exponent >= 0) by repeated squaring in Python floats: the same bits on every CPU."""
    if exponent < 0:
        raise ValueError(f"int_power takes a non-negative exponent; got {exponent}")
    result, square, remaining = 1.0, float(base), int(exponent)
    while remaining:
        if remaining & 1:
            result *= square
        remaining >>= 1
        if remaining:
            square *= square
    return result


def int_powers(base: float | np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """`int_power` elementwise (bases broadcast against exponents): the same products in the same order."""
    exponents = np.asarray(exponents, dtype=np.int64)
    if exponents.size and exponents.min() < 0:
        raise ValueError(f"int_powers takes non-negative exponents; got {int(exponents.min())}")
    square = np.broadcast_to(np.asarray(base, dtype=np.float64), exponents.shape).copy()
    result = np.ones(exponents.shape)
    remaining = exponents.copy()
    with np.errstate(over="ignore", under="ignore"):
        while remaining.any():
            odd = (remaining & 1).astype(bool)
            result[odd] *= square[odd]
            remaining >>= 1
            square *= square
    return result


def log_by_value(values: np.ndarray) -> np.ndarray:
    """`math.log` of every element (float64), computed once per distinct value: the C library's scalar log, the
    same on every SIMD path, where `np.log`'s loop is not. Cheap where values repeat (token counts)."""
    values = np.asarray(values, dtype=np.float64)
    distinct, inverse = np.unique(values, return_inverse=True)
    logs = np.array([math.log(v) if v > 0 else (-math.inf if v == 0 else math.nan) for v in distinct.tolist()])
    return logs[inverse].reshape(values.shape)


def exp(x: np.ndarray) -> np.ndarray:
    """e ** x elementwise, float64, from IEEE products and sums in a fixed order: the same bits on every CPU.

    Within one ULP of the correctly rounded value (`np.exp` differs by CPU in the last bit); -inf gives 0, NaN
    stays NaN. Worked in blocks that stay in cache: about 5 times numpy's baseline `np.exp` time (14 times its
    AVX-512 loop's), which DOTS' attention pays beside its matmul.
    """
    x = np.asarray(x, dtype=np.float64)
    flat, result = x.reshape(-1), np.empty(x.size)
    for low in range(0, x.size, EXP_BLOCK):
        _exp_block(flat[low : low + EXP_BLOCK], result[low : low + EXP_BLOCK])
    return result.reshape(x.shape)


def _exp_block(x: np.ndarray, out: np.ndarray) -> None:
    nan = np.isnan(x)
    clipped = np.clip(np.where(nan, 0.0, x), EXP_LOW, EXP_HIGH)
    steps = np.rint(clipped * LOG2_E)
    reduced = clipped - steps * LN2_HIGH
    reduced -= steps * LN2_LOW
    out[:] = EXP_COEFFICIENTS[-1]
    for coefficient in EXP_COEFFICIENTS[-2::-1]:  # Horner, highest power first
        out *= reduced
        out += coefficient
    with np.errstate(over="ignore", under="ignore"):
        np.ldexp(out, steps.astype(np.int64), out=out)
    out[nan] = np.nan
