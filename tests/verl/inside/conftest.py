"""Fixtures for the tests that run inside verl's own environment (tests/verl/setup_env.sh).

Everything is built the way a user would: a scores directory of the bundled MATH-style sample, a run from
`schedule init --format verl`, its first epoch file, and the full export. gaincurate comes from the clone
through PYTHONPATH; verl, its transformers and its hydra config are the installed wheel's.
"""

from pathlib import Path

import pytest
from verl_helpers import SUBSET, schedule, write_sample_scores


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verl")


@pytest.fixture(scope="session")
def scores(workdir) -> Path:
    return write_sample_scores(workdir / "scores")


@pytest.fixture(scope="session")
def epoch_file(scores, workdir) -> Path:
    """RUN/epoch-0000.parquet of `schedule init --format verl` (default data_source) and `schedule step`."""
    run = workdir / "run"
    schedule(
        "init",
        "--strategy",
        "gain",
        "--scores",
        str(scores),
        "--run",
        str(run),
        "--format",
        "verl",
        "--subset-size",
        str(SUBSET),
    )
    schedule("step", "--run", str(run))
    return run / "epoch-0000.parquet"


@pytest.fixture(scope="session")
def exported(scores, workdir) -> Path:
    """Every scored prompt in verl's format, as `gaincurate verl export` writes it."""
    from gaincurate.integrations.verl.sampler import export_prompts

    return export_prompts(scores, workdir / "all_prompts.parquet")


@pytest.fixture(scope="session")
def tokenizer():
    """A byte-level BPE tokenizer with SmolLM2-Instruct's chat template (tests/helpers.py's), built in memory by verl's
    transformers: what verl's dataset and checkpoint manager do with a tokenizer is under test, not its vocabulary
    (reading SmolLM2's own from its GGUF cost about 12 CPU-s)."""
    from helpers import SMOLLM2_TEMPLATE, build_tokenizer

    return build_tokenizer(SMOLLM2_TEMPLATE)


@pytest.fixture(scope="session")
def verl_config():
    """Compose verl's PPO trainer config with overrides, through hydra, as `verl.trainer.main_ppo` does."""
    import verl.trainer
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.trainer.__file__).parent / "config")

    def build(overrides: list[str]):
        with initialize_config_dir(config_dir=config_dir, version_base=None):
            return compose(config_name="ppo_trainer", overrides=list(overrides))

    return build
