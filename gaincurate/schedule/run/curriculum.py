"""The in-process curriculum's first name: `CurriculumDriver` is `gaincurate.schedule.run.run.Run`, the one run object.

Kept importable, with a deprecation warning, for scripts and checkpoints that name it; new code holds a `Run`.
"""

from gaincurate.moved import moved_names
from gaincurate.schedule.run.run import STATE_DICT_VERSION

__getattr__ = moved_names(__name__, {"CurriculumDriver": "Run"}, "gaincurate.schedule.run.run")

__all__ = ["STATE_DICT_VERSION", "CurriculumDriver"]  # noqa: F822 (found by __getattr__, with its warning)
