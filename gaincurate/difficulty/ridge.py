"""A weighted ridge regression whose every bit is the same on every CPU, and the rule that picks its penalty.

The `probe` strategy predicts each prompt's pass rate from features by a linear fit across the prompts measured so
far (`gaincurate.schedule.strategies.probe`). Its estimates decide draws, so the fit follows the house rule for
such floats (docs/architecture.md, "Floats and the CPU"): no BLAS. The normal equations are built column by column
from elementwise products and numpy's fixed-order sums, and solved by a Cholesky factorisation written out in the
same operations (`+ - * /` and `sqrt`, correctly rounded everywhere), so the fitted coefficients, and the draws
they lead to, do not depend on the SIMD path, the BLAS kernel or the thread count.

    system = normal_equations(features, weights, labels)                 # X^T W X and X^T W y
    beta = solve(system, penalty=penalty_vector(width, free=3, strength=0.1))
    predictions = predict(features, beta)

The penalty is `strength * sum(weights)` on every penalised column (so `strength` keeps its meaning as data
accrues); columns marked free (the intercept, a feature trusted as is) are not penalised. `choose_strength` picks
it from a grid by the weighted squared error on the latest measured epoch when fitted on the earlier ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Strengths tried, half a decade apart: wide enough that a choice at either end is flagged as such, not common.
STRENGTHS = tuple(10.0 ** (k / 2) for k in range(-16, 9))
DEFAULT_STRENGTH = 1e-2  # before two epochs are measured, there is nothing held out to choose by
ROW_BLOCK = 4096  # rows per block of the normal equations and the predictions: bounded temporaries


@dataclass(frozen=True)
class NormalEquations:
    """X^T W X (`gram`), X^T W y (`moment`) and sum(W) (`weight`) of some weighted rows."""

    gram: np.ndarray
    moment: np.ndarray
    weight: float

    def __add__(self, other: NormalEquations) -> NormalEquations:
        return NormalEquations(self.gram + other.gram, self.moment + other.moment, self.weight + other.weight)


def normal_equations(features: np.ndarray, weights: np.ndarray, labels: np.ndarray) -> NormalEquations:
    """X^T W X and X^T W y in a fixed order: per column, elementwise products summed over rows (numpy's order)."""
    rows, width = features.shape
    gram, moment = np.zeros((width, width)), np.zeros(width)
    for low in range(0, rows, ROW_BLOCK):
        block = np.asarray(features[low : low + ROW_BLOCK], dtype=np.float64)
        weighted = block * weights[low : low + ROW_BLOCK, None]
        for column in range(width):
            # Upper triangle only, mirrored below: (w x_i) x_j and (w x_j) x_i could round apart.
            gram[column, column:] += (weighted[:, column : column + 1] * block[:, column:]).sum(axis=0)
        moment += (weighted * labels[low : low + ROW_BLOCK, None]).sum(axis=0)
    upper = np.triu_indices(width, 1)
    gram[(upper[1], upper[0])] = gram[upper]
    return NormalEquations(gram, moment, float(math.fsum(weights.tolist())))


def penalty_vector(width: int, *, free: int, strength: float) -> np.ndarray:
    """The ridge penalty per column: 0 on the first `free` columns, `strength` on the rest."""
    penalty = np.full(width, float(strength))
    penalty[:free] = 0.0
    return penalty


def solve(system: NormalEquations, penalty: np.ndarray) -> np.ndarray:
    """beta of (X^T W X + diag(penalty) * sum(W)) beta = X^T W y, by Cholesky in fixed-order operations.

    A pivot that is not positive (an unpenalised column that the rows do not determine) gets a tiny ridge of its
    own, so the solve always answers: that column's coefficient then stays near 0.
    """
    width = len(system.moment)
    matrix = system.gram + np.diag(penalty * system.weight)
    lower = np.zeros((width, width))
    floor = 1e-12 * max(1.0, float(np.max(np.abs(np.diag(matrix)))) if width else 1.0)
    for j in range(width):
        pivot = matrix[j, j] - (lower[j, :j] * lower[j, :j]).sum()
        lower[j, j] = math.sqrt(pivot if pivot > floor else floor)
        below = matrix[j + 1 :, j] - (lower[j + 1 :, :j] * lower[j, :j]).sum(axis=1)
        lower[j + 1 :, j] = below / lower[j, j]
    forward = np.zeros(width)
    for j in range(width):
        forward[j] = (system.moment[j] - (lower[j, :j] * forward[:j]).sum()) / lower[j, j]
    beta = np.zeros(width)
    for j in reversed(range(width)):
        beta[j] = (forward[j] - (lower[j + 1 :, j] * beta[j + 1 :]).sum()) / lower[j, j]
    return beta


def predict(features: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """X beta, row by row in numpy's fixed order (no BLAS), in blocks of rows."""
    out = np.empty(len(features))
    for low in range(0, len(features), ROW_BLOCK):
        block = np.asarray(features[low : low + ROW_BLOCK], dtype=np.float64)
        out[low : low + ROW_BLOCK] = (block * beta).sum(axis=1)
    return out


@dataclass(frozen=True)
class Choice:
    """The chosen penalty strength, whether it sits at an end of the grid, and the held-out error of each."""

    strength: float
    at_edge: bool
    errors: tuple[float, ...]


def choose_strength(
    features: np.ndarray, weights: np.ndarray, labels: np.ndarray, held_out: np.ndarray, *, free: int
) -> tuple[Choice | None, NormalEquations]:
    """The strength of `STRENGTHS` whose fit on the rows not `held_out` has the least weighted squared error on the
    `held_out` rows (predictions clipped to [0, 1]; ties to the stronger penalty; None without rows on both sides),
    and the normal equations of all rows, which the final fit needs (built once, from the two parts)."""
    train, test = ~held_out, held_out
    system = normal_equations(features[train], weights[train], labels[train])
    whole = system + normal_equations(features[test], weights[test], labels[test])
    if not train.any() or not test.any():
        return None, whole
    test_features, test_weights, test_labels = features[test], weights[test], labels[test]
    errors = []
    for strength in STRENGTHS:
        beta = solve(system, penalty_vector(features.shape[1], free=free, strength=strength))
        miss = np.clip(predict(test_features, beta), 0.0, 1.0) - test_labels
        errors.append(math.fsum((test_weights * miss * miss).tolist()))
    best = min(range(len(STRENGTHS)), key=lambda k: (errors[k], -k))
    return Choice(STRENGTHS[best], best in (0, len(STRENGTHS) - 1), tuple(errors)), whole
