"""TRL out of process: one epoch per command, driven by `gaincurate schedule run`.

The epoch script reads its epoch file with `epoch_dataset`, trains with `shuffle_dataset=False` from
`resume_checkpoint(...)`, and writes feedback with `gaincurate.integrations.trl.rewards.record_rewards`.
`docs/examples/trl_epoch.py` is a complete script.
"""

from __future__ import annotations

import json
from pathlib import Path

from gaincurate.errors import ConfigError, InputError
from gaincurate.prompts import TRL_PROMPT_COLUMN


def epoch_dataset(path: str | Path):
    """An epoch file (`RUN/epoch-NNNN.parquet`) as a `datasets.Dataset`, rows in the file's (rank) order."""
    import datasets
    import pyarrow.parquet as pq

    which = "pass {epoch_data}, the RUN/epoch-NNNN.parquet file `gaincurate schedule` wrote"
    if not Path(path).is_file():
        raise InputError(f"epoch file {path} does not exist; {which}")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError: a JSON lines file, say
        raise InputError(f"{path} is not a Parquet epoch file ({str(error).splitlines()[0]}); {which}") from None
    missing = [name for name in ("gc_id", TRL_PROMPT_COLUMN) if name not in table.column_names]
    if missing:  # TRL would fail on the first batch, deep in its own code
        raise InputError(f"{path} is not an epoch file: it has no {' or '.join(missing)} column; {which}")
    return datasets.Dataset(table.replace_schema_metadata(None))


def resume_checkpoint(checkpoint: str | Path | None, epoch: int) -> Path | None:
    """The TRL checkpoint to resume epoch `epoch` from: the one written at the end of epoch `epoch - 1`.

    `checkpoint` is what `schedule run` passes as {checkpoint}: the newest complete checkpoint in the output
    directory, or '' / a base model folder before the first. When the newest is already past this epoch (the
    scheduler died after the trainer finished the epoch but before it noted so, and now retries it), the
    checkpoint that ended epoch `epoch - 1` is taken from the same directory; None means start from the model.
    So the two newest checkpoints are all it ever reads: `save_total_limit=2` keeps them and deletes the rest.
    """
    from gaincurate.schedule.run.checkpoints import TRL_PATTERN, find_checkpoint

    if not checkpoint or not TRL_PATTERN.match(Path(checkpoint).name):
        if epoch > 0:
            raise ConfigError(
                f"epoch {epoch} needs the checkpoint that ended epoch {epoch - 1}, got {checkpoint!r}; "
                "save at every epoch's end (save_strategy='epoch')"
            )
        return None
    checkpoint = Path(checkpoint)
    ends = _checkpoint_epoch(checkpoint)
    if ends == epoch:
        return checkpoint
    if ends is not None and ends < epoch:
        raise ConfigError(
            f"{checkpoint} ends epoch {ends - 1}, but epoch {epoch} needs the one that ended epoch {epoch - 1}; "
            "save at every epoch's end (save_strategy='epoch') and keep the output directory"
        )
    if epoch == 0:
        return None
    for sibling in sorted(checkpoint.parent.iterdir()):
        if TRL_PATTERN.match(sibling.name) and _checkpoint_epoch(sibling) == epoch:
            found = find_checkpoint(sibling)
            if found is not None:
                return found.path
    raise ConfigError(
        f"{checkpoint} already ends epoch {epoch} (the run was stopped before it noted so), and no complete "
        f"checkpoint in {checkpoint.parent} ends epoch {epoch - 1} to train it again from; keep the two newest "
        "checkpoints (save_total_limit=2, or more) so a retried epoch finds it"
    )


def _checkpoint_epoch(folder: Path) -> int | None:
    """How many epochs a checkpoint completed, when it was written at an epoch boundary."""
    try:
        completed = float(json.loads((folder / "trainer_state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    nearest = round(completed)
    return nearest if abs(completed - nearest) < 1e-6 else None
