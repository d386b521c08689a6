"""gaincurate: choose which prompts an RL fine-tuning run trains on, and when.

`gaincurate score` ranks a prompt set by hidden-state angle concentration (GAIN-RL) and writes Arrow
shards; `gaincurate schedule` turns those scores and trainer feedback into each epoch's data.
Heavy libraries (torch, transformers) are imported inside functions so that `import gaincurate`
and `gaincurate --help` stay fast.
"""

from gaincurate.errors import GaincurateError

__version__ = "0.1.0"

__all__ = ["GaincurateError", "__version__"]
