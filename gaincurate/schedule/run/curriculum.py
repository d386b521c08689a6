"""The in-process curriculum's first name: `CurriculumDriver` is `gaincurate.schedule.run.run.Run`, the one run object.

Kept importable for scripts and checkpoints that name it; new code holds a `Run`.
"""

from gaincurate.schedule.run.run import STATE_DICT_VERSION, Run

CurriculumDriver = Run

__all__ = ["STATE_DICT_VERSION", "CurriculumDriver"]
