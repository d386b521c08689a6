"""One `torchrun --nproc-per-node=2` worker for tests/integrations/test_trl_processes.py (not a test itself).

    python -m torch.distributed.run --standalone --nproc-per-node=2 trl_processes_worker.py SCORES MODEL ROOT

Trains one curriculum epoch of two steps on two CPU processes (gloo), saving at every step, into ROOT/straight;
then, in the same processes, resumes fresh curricula from the mid-epoch checkpoint (ROOT/mid) and from the one
written at the epoch's last step before the epoch's end was stepped (ROOT/last). The test compares the run
directories.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trl_helpers import grpo_settings, parity_reward, schedule

from gaincurate.integrations.trl import CurriculumGRPOTrainer, GainCurriculum
from gaincurate.schedule import ScheduleConfig

# Two processes of one prompt (two rollouts) per step: a generation batch of two prompts, an epoch of two steps.
SETTINGS = {"per_device_train_batch_size": 2, "num_train_epochs": 1, "save_strategy": "steps", "save_steps": 1,
            "max_completion_length": 4}  # fmt: skip
CONFIG = ScheduleConfig(**schedule("gain", subset_size=4))


def train(scores: Path, model_dir: Path, root: Path, name: str, resume: Path | None = None) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    curriculum = GainCurriculum(scores, CONFIG, run_dir=root / name / "run")
    trainer = CurriculumGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=[parity_reward],
        args=GRPOConfig(**grpo_settings(root / name / "out", **SETTINGS)),
        processing_class=AutoTokenizer.from_pretrained(model_dir), curriculum=curriculum,
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)


def main() -> None:
    scores, model_dir, root = (Path(argument) for argument in sys.argv[1:4])
    train(scores, model_dir, root, "straight")
    train(scores, model_dir, root, "mid", resume=root / "straight" / "out" / "checkpoint-1")
    train(scores, model_dir, root, "last", resume=root / "straight" / "out" / "checkpoint-2")


if __name__ == "__main__":
    main()
