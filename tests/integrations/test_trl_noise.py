"""TRL's known noise is filtered where gaincurate builds a trainer, and nothing else is (issue #41)."""

from __future__ import annotations

import logging
import warnings

import pytest
from transformers import LlamaConfig, LlamaForCausalLM

from gaincurate.integrations.trl.noise import TIED_HEAD_MISSING, quiet_training_noise


def tiny(tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)  # fmt: skip
    return LlamaForCausalLM(config)


@pytest.fixture(autouse=True)
def clean_filters():
    trainer_logger = logging.getLogger("transformers.trainer")
    before = list(trainer_logger.filters)
    with warnings.catch_warnings():
        yield
    trainer_logger.filters[:] = before


def test_renamed_checkpointing_api_warnings_are_dropped_and_others_kept():
    quiet_training_noise(tiny(tied=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_training_noise(tiny(tied=False))  # the filter is back on top after simplefilter
        model = tiny(tied=False)
        model.gradient_checkpointing_enable()  # transformers 5: FutureWarning, renamed activation_checkpointing
        _ = model.is_gradient_checkpointing
        model.gradient_checkpointing_disable()
        warnings.warn("`other_api` is deprecated and will be removed in v6", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`other_api` is deprecated and will be removed in v6"]


def test_the_tied_heads_missing_key_line_is_dropped_only_for_a_tied_model(caplog):
    caplog.set_level(logging.WARNING, logger="transformers.trainer")
    trainer_logger = logging.getLogger("transformers.trainer")
    quiet_training_noise(tiny(tied=False))
    trainer_logger.warning(TIED_HEAD_MISSING)
    assert TIED_HEAD_MISSING in caplog.text  # an untied head that is missing is a real problem: still shown
    caplog.clear()
    quiet_training_noise(tiny(tied=True))
    trainer_logger.warning(TIED_HEAD_MISSING)
    trainer_logger.warning("There were missing keys in the checkpoint model loaded: ['model.norm.weight'].")
    assert TIED_HEAD_MISSING not in caplog.text and "model.norm.weight" in caplog.text
