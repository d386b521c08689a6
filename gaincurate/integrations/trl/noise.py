"""The known, harmless noise of a TRL run, filtered where gaincurate builds the trainer; every other message shows.

    quiet_training_noise(model)      # before GRPOTrainer(...): the example script and the curriculum bench call it

* TRL 1.16 calls transformers 5's renamed gradient-checkpointing API (`gradient_checkpointing_enable`,
  `is_gradient_checkpointing`, the `gradient_checkpointing` argument) on every trainer it builds and every
  generation: FutureWarnings about TRL's code, which the user cannot act on, repeated every epoch and pair.
* A model whose head is tied to its embedding (SmolLM2) saves the shared matrix once, so resuming from a
  checkpoint reports `lm_head.weight` as a missing key, though the head is the embedding and nothing is missing.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

# The start of each message transformers 5 gives for the renamed API (`warnings` matches from the start).
CHECKPOINTING_RENAMED = r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated and will be removed in v6"
TIED_HEAD_MISSING = "There were missing keys in the checkpoint model loaded: ['lm_head.weight']."


def _not_tied_head_missing(record: logging.LogRecord) -> bool:
    return record.getMessage() != TIED_HEAD_MISSING


def quiet_training_noise(model: Any) -> None:
    """Filter the two noises above for this process; the missing-head line only when `model` ties its head."""
    warnings.filterwarnings("ignore", message=CHECKPOINTING_RENAMED, category=FutureWarning)
    config = getattr(model, "config", None)
    trainer_logger = logging.getLogger("transformers.trainer")
    if getattr(config, "tie_word_embeddings", False) and _not_tied_head_missing not in trainer_logger.filters:
        trainer_logger.addFilter(_not_tied_head_missing)
