"""A run on disk: the run directory, the epoch loop over it, and what it reads (scores, checkpoints, references)."""
