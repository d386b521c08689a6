"""LoRA adapters as models: a folder holding `adapter_config.json` and adapter weights, and no `config.json`.

TRL with `peft_config`, verl's LoRA up to 0.7 (`global_step_N/actor/lora_adapter/`; 0.9.1's `model_merger` writes one)
and most single-GPU GRPO scripts save such a folder (`PeftModel.save_pretrained`). It loads as its base model with
the adapter merged in (`merge_and_unload`): scoring and the likelihood then run the plain model's forward, whose
logits equal the unmerged adapter's within float32 rounding.

The base is the model the adapter's config names (`base_model_name_or_path`) when that is a model here (as named, or
relative to the adapter's folder); otherwise the model the prompts were scored with, where there is one. When both
are there, a base whose shapes differ from the scored model's is refused: the adapter was trained on another model;
so is an adapter whose weights do not all fit the base it loads on. Embeddings saved resized (tokens added in
training) resize the base before they load over it. `gaincurate.model` finds and loads adapters
through these functions; finding one needs nothing, loading one needs peft (`pip install 'gaincurate[peft]'`).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gaincurate.errors import ModelError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
PEFT_EXTRA = "pip install 'gaincurate[peft]'"
# What makes two models the same shape: an adapter's matrices fit a base only when these agree.
SHAPE_FACTS = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size")


def is_adapter_folder(folder: Path) -> bool:
    """A folder a `PeftModel` was saved to: an adapter config and no model config of its own."""
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def require_peft(folder: str | Path) -> None:
    """Refuse, in one line naming the adapter and the extra, to load an adapter where peft is not installed."""
    if importlib.util.find_spec("peft") is None:
        raise ModelError(f"{folder} is a LoRA adapter ({ADAPTER_CONFIG}); loading it needs peft: {PEFT_EXTRA}")


def named_base(folder: Path) -> str | None:
    """The base model the adapter's config names, or None."""
    try:
        named = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as error:
        raise ModelError(f"{folder / ADAPTER_CONFIG} cannot be read ({error}); save the adapter again") from None
    return str(named) if named else None


def adapter_base(folder: Path, spec: str, scored_with: Any, *, resolve: Callable, read_config: Callable) -> Any:
    """The base model (a `ModelSource`) of the adapter at `folder`, as the user named it (`spec`): the one its config
    names when that is here, else `scored_with`, the model the prompts were scored with (None: there is none).
    `resolve` and `read_config` are `gaincurate.model`'s, which calls this."""
    require_peft(folder)
    fallback = None if scored_with is None else scored_with.base or scored_with  # an adapter's own base
    named = named_base(folder)
    base = _named_source(named, folder, hub_allowed=fallback is None, resolve=resolve)
    if base is None and fallback is None:
        what = f"of {named!r}, which is not a model here" if named else "that names no base model"
        raise ModelError(
            f"{spec} is a LoRA adapter {what}; set base_model_name_or_path in {folder / ADAPTER_CONFIG} to the base "
            "model's folder (absolute, or relative to the adapter's), .gguf file or Hub id"
        )
    if base is not None and fallback is not None and base != fallback:
        _check_same_shape(folder, base, fallback, read_config)
    return base or fallback


def _named_source(named: str | None, folder: Path, *, hub_allowed: bool, resolve: Callable) -> Any:
    """The adapter's named base as a model source, when it is a model folder or GGUF file here, as named or relative
    to the adapter's `folder` (moved together); or, `hub_allowed`, a Hub id; None otherwise (a trainer's temporary
    folder, a GGUF package folder)."""
    if not named:
        return None
    for path in (Path(named).expanduser(), folder / Path(named).expanduser()):
        if (path / "config.json").is_file() or (named.endswith(".gguf") and path.is_file()):
            return resolve(str(path))
    path = Path(named).expanduser()
    if hub_allowed and not path.exists() and not named.startswith((".", "/", "~")) and named.count("/") <= 1:
        return resolve(named)
    return None


def _check_same_shape(folder: Path, base: Any, scored: Any, read_config: Callable) -> None:
    """Refuse an adapter whose named base differs in shape from the model the prompts were scored with."""
    shapes = [{fact: getattr(read_config(source), fact, None) for fact in SHAPE_FACTS} for source in (base, scored)]
    if shapes[0] != shapes[1]:
        raise ModelError(
            f"{folder} is a LoRA adapter of {base.display} ({_shape_words(shapes[0])}), not of "
            f"{scored.display}, the model the prompts were scored with ({_shape_words(shapes[1])}); score the "
            f"prompts with {base.display}, or train the adapter on {scored.display}"
        )


def _shape_words(shape: dict[str, Any]) -> str:
    return ", ".join(f"{fact} {value}" for fact, value in shape.items())


def has_tokenizer(folder: str | Path) -> bool:
    """Whether a trainer saved the tokenizer beside the weights (training does not change it; many do not)."""
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


def merge_adapter(folder: str | Path, base: Any, base_name: str) -> Any:
    """The adapter at `folder` merged into `base`, a loaded model (named `base_name` in errors), in eval mode."""
    require_peft(folder)
    import warnings

    from peft import PeftModel, get_peft_model_state_dict

    saved = _saved_shapes(Path(folder))
    _fit_vocabulary(base, saved)
    try:
        with warnings.catch_warnings():  # peft 0.21 asks transformers 5 for `is_gradient_checkpointing`, deprecated
            # there: a note to peft's authors, not to the user; it goes once peft asks `is_activation_checkpointing`
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            warnings.filterwarnings("ignore", message="Found missing adapter keys")  # refused below, in one line
            model = PeftModel.from_pretrained(base, str(folder))
    except (OSError, ValueError, RuntimeError, KeyError) as error:  # another model's adapter: sizes do not match
        lines = str(error).strip().splitlines() or [type(error).__name__]
        said = next((line.strip() for line in lines if "size mismatch" in line), lines[0])
        raise ModelError(
            f"cannot apply the LoRA adapter {folder} to {base_name}: {said}; train the adapter on the model the "
            "prompts were scored with"
        ) from None
    expected = set(get_peft_model_state_dict(model, save_embedding_layers=False))
    # peft applies what fits and only warns of the rest: a model adapted in some layers and not others
    missing, extra = sorted(expected - set(saved)), sorted(k for k in set(saved) - expected if ".lora_" in k)
    if missing or extra:
        raise ModelError(
            f"the LoRA adapter {folder} does not fit {base_name}: {len(missing)} of the weights it should hold are "
            f"not in it and {len(extra)} of its own have no place there (first: {(missing or extra)[0]}); train "
            "the adapter on the model the prompts were scored with"
        )
    return model.merge_and_unload().eval()


def _saved_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor in the adapter's weights file, by its saved name, read without loading the tensors."""
    path = next((folder / name for name in ADAPTER_FILES if (folder / name).is_file()), None)
    if path is None:
        raise ModelError(f"{folder} holds no {' or '.join(ADAPTER_FILES)}; save the adapter again")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as weights:
            return {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}  # noqa: SIM118
    import torch

    return {key: tuple(value.shape) for key, value in torch.load(path, mmap=True, weights_only=True).items()}


def _fit_vocabulary(base: Any, saved: dict[str, tuple[int, ...]]) -> None:
    """Resize `base`'s token embeddings to the adapter's where it saved them resized (tokens added in training, with
    the embeddings in `modules_to_save`), as the trainer did before training: the saved rows then load over them."""
    embeddings = base.get_input_embeddings()
    name = next(name for name, module in base.named_modules() if module is embeddings)
    rows = saved.get(f"base_model.model.{name}.weight", (embeddings.num_embeddings,))[0]
    if rows != embeddings.num_embeddings:
        import torch

        with torch.random.fork_rng(devices=[]):  # the added rows' start is drawn, then overwritten: drawn the same
            torch.manual_seed(0)
            base.resize_token_embeddings(rows, mean_resizing=False)


def peft_unwrapped(model: Any) -> Any:
    """A live PEFT model's own model, its adapter layers in place (TRL with `peft_config`): scoring hooks and runs
    the decoder layers of that model, whose forward takes the arguments transformers documents."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model
