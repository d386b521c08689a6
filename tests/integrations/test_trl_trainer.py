"""One way to hook TRL (issue #27): `CurriculumGRPOTrainer`, and `attach()` as a thin convenience doing the same.

The class takes GRPOTrainer's arguments plus the curriculum and fills in the dataset, the feedback recording and
the callback; `attach` gives a trainer built the five-line way that same class. Both train the same epochs to the
same weights. The bench's needs (a plug-in strategy, screen's cost) are public methods of `GainCurriculum`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

from trl_helpers import SCHEDULE, grpo_settings, parity_reward, score_prompts

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl import CurriculumGRPOTrainer, CurriculumMixin, GainCurriculum
from gaincurate.lab.strategies.screening import spent
from gaincurate.schedule import ScheduleConfig

CONFIG = ScheduleConfig(**{"strategy": "gain", **SCHEDULE})


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory) -> Path:
    return score_prompts(tiny_llama, tmp_path_factory.mktemp("trl-trainer-scores") / "scores")


def parity(completion_ids, **kwargs) -> list[float]:
    return parity_reward(completion_ids)


def trainer_arguments(model_dir: Path, out: Path, **overrides) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    return {
        "model": AutoModelForCausalLM.from_pretrained(model_dir),
        "args": GRPOConfig(**grpo_settings(out, num_train_epochs=2, **overrides)),
        "processing_class": AutoTokenizer.from_pretrained(model_dir),
    }


def test_the_trainer_class_trains_exactly_what_attach_trains(scores, tiny_llama, tmp_path):
    from trl import GRPOTrainer

    # The one way: GRPOTrainer's arguments plus the curriculum; the rewards are plain functions.
    by_class = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "class-run")
    trainer = CurriculumGRPOTrainer(
        **trainer_arguments(tiny_llama, tmp_path / "class-out"), reward_funcs=[parity], curriculum=by_class
    )
    trainer.train()

    # The five lines: a plain GRPOTrainer given the dataset, the wrapped rewards and the callback, then attach.
    by_attach = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "attach-run")
    plain = GRPOTrainer(
        **trainer_arguments(tiny_llama, tmp_path / "attach-out"), train_dataset=by_attach.train_dataset(),
        reward_funcs=by_attach.wrap_rewards([parity]), callbacks=[by_attach.callback],
    )  # fmt: skip
    assert by_attach.attach(plain) is plain and type(plain) is CurriculumGRPOTrainer
    plain.train()

    def untimed(history):
        return [{k: v for k, v in line.items() if k != "timings"} for line in history]

    assert len(by_class.history) == 2 and untimed(by_class.history) == untimed(by_attach.history)
    for epoch in range(3):
        name = f"epoch-{epoch:04d}.parquet"
        assert (tmp_path / "class-run" / name).read_bytes() == (tmp_path / "attach-run" / name).read_bytes()
    for (name, weight), (_, other) in zip(
        trainer.model.state_dict().items(), plain.model.state_dict().items(), strict=True
    ):
        assert torch.equal(weight, other), name


def test_attach_checks_before_it_changes_anything_then_gives_the_mixin_to_any_grpo_subclass(
    scores, tiny_llama, tmp_path
):
    from trl import GRPOTrainer

    class MyTrainer(GRPOTrainer):
        pass

    def built(curriculum: GainCurriculum) -> MyTrainer:
        return MyTrainer(
            **trainer_arguments(tiny_llama, tmp_path / "out"), train_dataset=curriculum.train_dataset(),
            reward_funcs=curriculum.wrap_rewards([parity]), callbacks=[curriculum.callback],
        )  # fmt: skip

    misfit = GainCurriculum(scores, ScheduleConfig(**{**CONFIG.to_dict(), "subset_size": 5}), run_dir=tmp_path / "r")
    trainer = built(misfit)
    with pytest.raises(ConfigError, match="subset_size 5 is not a multiple of the 2 prompts"):
        misfit.attach(trainer)
    assert type(trainer) is MyTrainer and not (tmp_path / "r").exists()

    curriculum = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "r")
    trainer = built(curriculum)
    assert curriculum.attach(trainer) is trainer
    assert type(trainer).__bases__ == (CurriculumMixin, MyTrainer) and type(trainer).__name__ == "CurriculumMyTrainer"
    assert curriculum.attach(trainer) is trainer  # twice: nothing more happens
    with pytest.raises(ConfigError, match="already trains on another curriculum"):
        GainCurriculum(scores, CONFIG).attach(trainer)
    with pytest.raises(ConfigError, match="takes a trl GRPOTrainer, not a str"):
        curriculum.attach("trainer")


def test_the_class_refuses_a_wrong_set_up_before_writing_and_reads_grpos_positional_arguments(
    scores, tiny_llama, tmp_path
):
    misfit = GainCurriculum(scores, ScheduleConfig(**{**CONFIG.to_dict(), "subset_size": 5}), run_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="subset_size 5 is not a multiple of the 2 prompts"):
        arguments = trainer_arguments(tiny_llama, tmp_path / "out")
        CurriculumGRPOTrainer(**arguments, reward_funcs=[parity], curriculum=misfit)
    assert not (tmp_path / "r").exists()

    curriculum = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "r")
    driver = curriculum.run  # one driver for the curriculum's life: it starts the run directory once checked
    arguments = trainer_arguments(tiny_llama, tmp_path / "out")
    trainer = CurriculumGRPOTrainer(
        arguments.pop("model"), [parity], arguments.pop("args"), curriculum=curriculum, **arguments
    )
    assert trainer.curriculum is curriculum and curriculum.trainer is trainer and curriculum.run is driver
    assert trainer.train_dataset["gc_id"] == curriculum.train_dataset()["gc_id"]
    assert (tmp_path / "r" / "state.json").is_file()
    assert sum(callback is curriculum.callback for callback in trainer.callback_handler.callbacks) == 1


def test_a_plug_in_strategy_draws_from_epoch_0_and_screen_cost_is_public(scores, tmp_path):
    from gaincurate.lab.benchmarks.curriculum.oracle import OracleStrategy

    pass_rate = np.linspace(0.0, 1.0, 16)  # gc_id i passes at rate i/15: the oracle keeps those nearest 0.5

    def measure(gc_ids, epoch):
        return pass_rate[np.asarray(gc_ids)], 0

    curriculum = GainCurriculum(scores, ScheduleConfig(strategy="uniform", subset_size=4, seed=1))
    assert spent(curriculum.run).rollouts == 0  # not a screen strategy: zeros
    oracle = OracleStrategy(measure, target=0.5, rollouts=2)
    curriculum.use_strategy(oracle)
    assert sorted(curriculum.run.plan.gc_ids.tolist()) == [6, 7, 8, 9] and len(oracle.costs.epochs) == 1
    with pytest.raises(ConfigError, match="without run_dir="):
        GainCurriculum(scores, CONFIG, run_dir=tmp_path / "run").use_strategy(oracle)
