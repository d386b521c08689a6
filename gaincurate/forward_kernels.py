"""How the model's own forward runs on the device: which attention backend, and Liger-Kernel's fused layers.

Imported when a forward runs, not with the command line: neither is needed to parse a command.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
from typing import Any

from gaincurate.errors import ConfigError

# What `--liger` patches in; the loss kernels stay out (scoring computes no loss).
LIGER_LAYERS = {"rope": True, "rms_norm": True, "swiglu": True, "geglu": True, "cross_entropy": False,
                "fused_linear_cross_entropy": False}  # fmt: skip


def attention_for_many_shapes() -> contextlib.AbstractContextManager:
    """torch's attention without its cuDNN backend, for forwards over batches of many widths. cuDNN builds a plan for
    each new input shape, which on a GPU costs more than a short batch's whole forward; flash and memory-efficient
    attention take any shape at once (docs/scale-out.md, "Throughput on one GPU"). A CPU has no cuDNN attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def check_liger(device: str) -> None:
    """Refuse `--liger` in one line where it cannot run: off a GPU, or without Liger-Kernel installed."""
    if not str(device).startswith("cuda"):
        raise ConfigError(f"--liger runs Liger-Kernel's GPU kernels; it needs --device cuda, not {device}")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("--liger needs Liger-Kernel: pip install liger-kernel (or drop --liger)")


def apply_liger(model: Any, device: str) -> None:
    """Patch Liger-Kernel's fused RMSNorm, rotary embedding and SwiGLU (GeGLU) into `model`, in place, and into
    transformers' module for its architecture in this process: Triton kernels for a GPU, whose sums differ from
    PyTorch's in their last bits: scores made with and without it are not the same bytes (the flag is fingerprinted)."""
    check_liger(device)
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = model.config.model_type
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if apply is None:
        raise ConfigError(f"Liger-Kernel has no kernels for {model_type} models; drop --liger")
    accepted = inspect.signature(apply).parameters
    apply(model=model, **{name: on for name, on in LIGER_LAYERS.items() if name in accepted})
