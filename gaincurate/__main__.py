"""`python -m gaincurate ARGS`: the `gaincurate` console script's entry point, for `torchrun -m gaincurate score`."""

from gaincurate.cli import main

main()
