"""Find the newest *complete* checkpoint a trainer wrote; a half-written one is never returned.

Layouts understood, under a trainer's output directory (or given directly):

* TRL / transformers: `checkpoint-N/`. Complete when `trainer_state.json` parses (the Trainer writes
  it after the weights) and the weights are whole.
* Your own script's `checkpoint-N/`, written by `model.save_pretrained` (no `trainer_state.json`): complete when
  `config.json` parses and the weights are whole, unless the Trainer's own files are there (`TRAINER_FILES`,
  written before `trainer_state.json`): then it is a Trainer checkpoint still being written, or cut off.
* A LoRA adapter in place of the model, in any of these layouts (a `PeftModel`'s `save_pretrained`, TRL with
  `peft_config`, verl's `actor/lora_adapter/`): complete when `adapter_config.json` parses and the adapter's
  weights are whole. It is the model to re-score from: `gaincurate.adapters` loads it onto its base.
* verl: `global_step_N/`, complete when `latest_checkpointed_iteration.txt` names N (verl writes it
  last). Its model for re-scoring is `global_step_N/actor/huggingface/` (FSDP) or
  `global_step_N/actor/model/huggingface/` (Megatron, verl 0.9), which hold full weights only when
  `actor.checkpoint.save_contents` includes `hf_model`; else, with LoRA, its adapter
  `global_step_N/actor/lora_adapter/`. A Megatron step with shards only has no model; `no_model_reason` names
  verl's merger command for it, the wording the verl adapters refuse with too.
* A plain Hugging Face model folder: `config.json` plus whole weights, or a LoRA adapter's folder.

"Whole weights" is checked, not assumed: a safetensors file must be exactly as long as its header
says, every shard named by an index file must be whole, and a `.bin` must be a complete zip archive.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gaincurate.adapters import ADAPTER_CONFIG, ADAPTER_FILES

TRL_PATTERN = re.compile(r"^checkpoint-(\d+)$")
VERL_PATTERN = re.compile(r"^global_step_(\d+)$")
VERL_TRACKER = "latest_checkpointed_iteration.txt"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TRAINER_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")  # a Trainer's, not a script's
# Under a verl step's actor/: FSDP's model folder, then Megatron's (verl 0.9 layout, hf_model through a bridge).
VERL_MODEL_FOLDERS = ("huggingface", "model/huggingface")
VERL_ADAPTER_FOLDER = "lora_adapter"  # under a verl step's actor/: what verl saves of a LoRA run
NO_CHECKPOINT = "no checkpoint was given"  # why a step that wanted the newest model measured nothing with it
MEGATRON_SHARDS = ("model/dist_ckpt", "dist_ckpt")  # under actor/: verl 0.9's layout, then the older one


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: `path` to resume the trainer from, `model_path` to load for re-scoring."""

    path: Path
    model_path: Path | None  # None: no loadable full model inside (a verl run without hf_model)
    kind: str  # "trl", "verl" or "hf"
    step: int | None

    def stamp(self) -> tuple[Path, int]:
        """Where it is and when its newest file was written: a trainer that saves over the same folder each epoch
        leaves a new checkpoint at the same path."""
        folder = self.model_path or self.path
        files = [entry.stat().st_mtime_ns for entry in folder.iterdir() if entry.is_file()] if folder.is_dir() else []
        return self.path, max(files, default=0)


def find_checkpoint(directory: Path) -> Checkpoint | None:
    """The newest complete checkpoint in (or at) `directory`, or None when there is none yet."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    own = _as_checkpoint(directory)
    if own is not None or TRL_PATTERN.match(directory.name) or VERL_PATTERN.match(directory.name):
        return own
    candidates = [c for c in (_newest_trl(directory), _verl(directory)) if c is not None]
    if candidates:
        return max(candidates, key=lambda c: c.step or 0)
    return Checkpoint(directory, directory, "hf", None) if is_complete_model_or_adapter(directory) else None


def given_or_recorded(checkpoint: Path | None, recorded: str | None) -> Checkpoint | None:
    """The checkpoint `schedule step --checkpoint` named, else the one state.json recorded; None when neither is."""
    found = find_checkpoint(checkpoint) if checkpoint is not None else None
    if found is None and recorded:
        found = find_checkpoint(Path(recorded))
    return found


def is_complete_model(folder: Path) -> bool:
    """A Hugging Face model folder with a parsable config.json and whole weights."""
    return _parses(folder / "config.json") and _weights_complete(folder, WEIGHT_FILES)


def is_complete_adapter(folder: Path) -> bool:
    """A LoRA adapter's folder with a parsable adapter_config.json and whole adapter weights."""
    return _parses(folder / ADAPTER_CONFIG) and _weights_complete(folder, ADAPTER_FILES)


def is_complete_model_or_adapter(folder: Path) -> bool:
    return is_complete_model(folder) or is_complete_adapter(folder)


def verl_model_path(step_dir: str | Path) -> Path | None:
    """The Hugging Face model with full weights inside a verl `global_step_N` folder, else its LoRA adapter, or None."""
    actor = Path(step_dir) / "actor"
    full = next((actor / name for name in VERL_MODEL_FOLDERS if is_complete_model(actor / name)), None)
    return full or (actor / VERL_ADAPTER_FOLDER if is_complete_adapter(actor / VERL_ADAPTER_FOLDER) else None)


def model_merger_command(step_dir: str | Path) -> str | None:
    """verl's command that turns a Megatron checkpoint's shards into a loadable model, or None if not Megatron."""
    actor = Path(step_dir) / "actor"
    if not any((actor / shards).is_dir() for shards in MEGATRON_SHARDS):
        return None
    return (
        f"python -m verl.model_merger merge --backend megatron --local_dir {actor} --target_dir {actor / 'huggingface'}"
    )


def megatron_without_model(step_dir: str | Path) -> str | None:
    """For a verl Megatron step with shards only: what it is and verl's command that converts it; else None.

    The one wording of this case, for `schedule step`/`run`'s notice and the verl adapters' refusal alike.
    """
    command = model_merger_command(step_dir)
    if command is None or verl_model_path(step_dir) is not None:
        return None
    return f"{step_dir} is a Megatron checkpoint without Hugging Face weights; convert it with `{command}`"


def no_model_reason(checkpoint: Checkpoint) -> str:
    """Why a complete checkpoint has no model to re-score from (`model_path` is None), and the fix."""
    if checkpoint.kind != "verl":
        return f"{checkpoint.path} has no whole model or LoRA adapter"
    megatron = megatron_without_model(checkpoint.path)
    return megatron or f"{checkpoint.path} has no full model (verl: add hf_model to actor.checkpoint.save_contents)"


def missing_model(directory: Path, found: Checkpoint | None = None) -> str:
    """What a trainer's output `directory` lacks for a model `from_pretrained` can load, in words: `found` is the new
    checkpoint the trainer left there (None: none, or only the one it started from)."""
    directory = Path(directory)
    if found is not None and found.model_path is None:
        return no_model_reason(found)
    entries = sorted(directory.iterdir()) if directory.is_dir() else []
    if not entries:
        return f"the trainer wrote nothing to {directory}"
    newest = find_checkpoint(directory)
    folders = [entry for entry in entries if entry.is_dir() and TRL_PATTERN.match(entry.name)]
    if folders:
        last = max(folders, key=lambda entry: int(TRL_PATTERN.match(entry.name).group(1)))
        if newest is not None and newest.path == last:
            return f"the newest model there, {last.name}, is the one the epoch started from: nothing new was saved"
        return f"{last} {_lacks(last)}"
    if newest is not None:
        return f"{newest.path} is the model the epoch started from: nothing new was saved"
    shown = ", ".join(entry.name for entry in entries[:5]) + (", ..." if len(entries) > 5 else "")
    return f"{directory} holds no checkpoint-N/ folder and no model ({shown}): {_lacks(directory)}"


def _lacks(folder: Path) -> str:
    """Why `folder` is no complete model folder, in words."""
    if any((folder / name).exists() for name in TRAINER_FILES) and not _parses(folder / "trainer_state.json"):
        return "is a Trainer checkpoint without its trainer_state.json (cut off while saving)"
    if (folder / ADAPTER_CONFIG).exists() and not (folder / "config.json").exists():
        return f"holds a LoRA adapter with a cut-off {ADAPTER_CONFIG} or weights ({' or '.join(ADAPTER_FILES)})"
    if not _parses(folder / "config.json"):
        return "has no config.json"
    if not any((folder / name).exists() or (folder / f"{name}.index.json").exists() for name in WEIGHT_FILES):
        return f"has no weights ({' or '.join(WEIGHT_FILES)})"
    return "has cut-off weights (a file shorter than its header says, or a missing shard)"


def _as_checkpoint(directory: Path) -> Checkpoint | None:
    """`directory` itself as a checkpoint-N or global_step_N folder, when it is one and complete."""
    trl = TRL_PATTERN.match(directory.name)
    if trl:
        return _trl(directory, int(trl.group(1)))
    verl = VERL_PATTERN.match(directory.name)
    if verl:
        tracker = directory.parent / VERL_TRACKER
        if _tracker_step(tracker) is None or _tracker_step(tracker) < int(verl.group(1)):
            return None  # verl has not yet declared this step done
        return _verl_step(directory, int(verl.group(1)))
    return None


def _trl(folder: Path, step: int) -> Checkpoint | None:
    if not _parses(folder / "trainer_state.json"):
        if any((folder / name).exists() for name in TRAINER_FILES) or not is_complete_model_or_adapter(folder):
            return None  # a Trainer's checkpoint before its trainer_state.json, or no whole model yet
        return Checkpoint(folder, folder, "hf", step)  # `save_pretrained` by the user's own script
    return Checkpoint(folder, folder, "trl", step) if is_complete_model_or_adapter(folder) else None


def _newest_trl(directory: Path) -> Checkpoint | None:
    steps = sorted(
        ((int(m.group(1)), p) for p in directory.iterdir() if (m := TRL_PATTERN.match(p.name)) and p.is_dir()),
        reverse=True,
    )
    for step, folder in steps:
        checkpoint = _trl(folder, step)
        if checkpoint is not None:
            return checkpoint
    return None


def _verl(directory: Path) -> Checkpoint | None:
    step = _tracker_step(directory / VERL_TRACKER)
    if step is None:
        return None
    folder = directory / f"global_step_{step}"
    return _verl_step(folder, step) if folder.is_dir() else None


def _verl_step(folder: Path, step: int) -> Checkpoint:
    return Checkpoint(folder, verl_model_path(folder), "verl", step)


def _tracker_step(tracker: Path) -> int | None:
    try:
        return int(tracker.read_text().strip())
    except (OSError, ValueError):
        return None


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def _weights_complete(folder: Path, names: tuple[str, ...]) -> bool:
    for name in names:
        index = folder / f"{name}.index.json"
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError):
                return False
            return bool(shards) and all(_file_complete(folder / shard) for shard in shards)
        if (folder / name).is_file():
            return _file_complete(folder / name)
    return False


def _file_complete(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return _safetensors_complete(path)
    try:
        return zipfile.is_zipfile(path)  # torch.save writes a zip; a cut-off one has no end record
    except OSError:
        return False


def _safetensors_complete(path: Path) -> bool:
    """True when the file is exactly 8 + header + the data the header describes."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            header_size = int.from_bytes(file.read(8), "little")
            if size < 8 or 8 + header_size > size:
                return False
            header = json.loads(file.read(header_size))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False
    return size == 8 + header_size + max(ends, default=0)
