"""Difficulty prediction as a measurement (`gaincurate difficulty predict|fit|evaluate`): `jobs` reads and writes
the files, `fit` trains a calibrator, `evaluate` compares held-out predictions with baselines, `online` replays a run
epoch by epoch. The math they measure is the product's (`gaincurate.difficulty`: predict, estimate, reference,
calibrate)."""
