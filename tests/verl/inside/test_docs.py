"""docs/verl.md's verl commands, resolved against the installed verl's own config.

Every `key=value` in the page's bash blocks is composed through hydra as `verl.trainer.main_ppo` composes it,
and each plain key is looked up in the wheel's `verl/trainer/config/_generated_ppo_trainer.yaml`. verl >= 0.9
checks the page's main sections; verl 0.7.1 (`make test-verl07`) checks its marked 0.5 - 0.7.1 section.
"""

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from verl_helpers import OVERRIDE, bash_blocks, overrides, verl_version


def blocks_checked_here() -> list[list[str]]:
    """The override lists of the blocks this verl checks: the legacy section on verl < 0.8, the rest otherwise."""
    legacy = verl_version() < (0, 8)
    return [found for in_legacy, text in bash_blocks() if in_legacy == legacy and (found := overrides(text))]


def test_the_docs_have_commands_for_this_verl():
    names = {item.split("=")[0] for block in blocks_checked_here() for item in block}
    if verl_version() >= (0, 8):
        assert {"data.shuffle", "data.train_files", "reward.custom_reward_function.path"} <= names
        assert "trainer.checkpoint_callback_class" in names
        one_launch = {"data.custom_cls.path", "trainer.v1.sampler.custom_sampler.path", "data.dataloader_num_workers"}
        assert one_launch | {"+trainer.v1.sampler.sampler_kwargs.run_dir"} <= names  # verl 0.9.1's recipe
    else:
        assert {"data.sampler.class_path", "+data.gaincurate.run_dir"} <= names


def test_every_documented_override_composes_with_verls_config(verl_config):
    for block in blocks_checked_here():
        config = verl_config(block)  # hydra raises on a key verl does not have
        for item in block:
            key = item.split("=")[0].lstrip("+")
            assert OmegaConf.select(config, key, default="<missing>") != "<missing>", item


def test_plain_keys_exist_in_the_generated_trainer_config():
    import verl.trainer

    generated = OmegaConf.load(Path(verl.trainer.__file__).parent / "config" / "_generated_ppo_trainer.yaml")
    for block in blocks_checked_here():
        for item in block:
            key = item.split("=")[0]
            if not key.startswith("+"):  # `+key` adds what the config does not have
                assert OmegaConf.select(generated, key, default="<missing>") != "<missing>", item


@pytest.mark.parametrize("legacy_name", ["custom_reward_function.", "data.sampler."])
def test_legacy_names_appear_only_in_the_marked_section(legacy_name):
    for in_legacy, text in bash_blocks():
        if not in_legacy:
            names = [item.split("=")[0].lstrip("+") for item in OVERRIDE.findall(text) for item in ["=".join(item)]]
            assert not [name for name in names if name.startswith(legacy_name)], text
