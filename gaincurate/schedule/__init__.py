"""The curriculum scheduler: which prompts each epoch trains on.

The pure core (numpy only, no files) is importable from here, for in-process trainer integrations:

    from gaincurate.schedule import Scheduler, ScheduleConfig, PromptSet

The strategies are in `gaincurate.schedule.strategies` (one module each, `registry` names them). The run on disk
is in `gaincurate.schedule.run`: the run directory (`rundir`), the epoch loop (`driver`), the in-process driver
(`curriculum`) and checkpoint discovery (`checkpoints`), imported from their modules; they need pyarrow.
"""

from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import EpochPlan, EpochRecord, EpochStep, Rescored, Scheduler
from gaincurate.schedule.feedback import Feedback, read_feedback, summarize_feedback
from gaincurate.schedule.options import Options
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import PromptSet, RankingContext, Selection, Strategy, StrategyInputs

__all__ = [
    "EpochPlan",
    "EpochRecord",
    "EpochStep",
    "Feedback",
    "PromptSet",
    "RankingContext",
    "Rescored",
    "ScheduleConfig",
    "ScheduleState",
    "Scheduler",
    "Options",
    "Selection",
    "Strategy",
    "StrategyInputs",
    "read_feedback",
    "summarize_feedback",
]
