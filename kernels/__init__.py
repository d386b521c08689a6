"""Per-segment sums of unit hidden vectors: the one pass over hidden states that scoring needs.

CONTRACT (shared with gaincurate/scoring/engine.py; do not change the signature):

    segment_unit_sums(hidden, segment_ids, num_segments, backend="auto") -> (sums, counts)

    hidden       [B, T, D] bf16 / fp16 / fp32, any batch and token stride, contiguous last dim
    segment_ids  [B, T] integer tensor; -1 = ignore the token, 0..num_segments-1 = its segment
    sums         [B, S, D] float32: sum over tokens t with segment_ids[b, t] == s of h / ||h||
                 (norm clamped below at 1e-12, as torch.nn.functional.normalize does); a non-finite token
                 makes its own segment's sum non-finite (Triton: its sample's other sums too); an ignored
                 one, none
    counts       [B, S] int32: number of tokens in each segment

    packed_segment_unit_sums(hidden, segment_ids, row_starts, num_segments, backend="auto") -> (sums, counts)

    the same sums of B rows packed end to end without padding: hidden [N, D], segment_ids [N], row_starts the
    B + 1 cumulative offsets (host ints) where each row starts; sums [B, S, D], counts [B, S]

    resolve_backend(backend, device, work_bytes=None) -> "triton" | "torch"

Backends:
    "triton"  the fused kernel in triton_impl.py: CUDA tensors, or CPU tensors when TRITON_INTERPRET=1
              was set before the process started (Triton's CPU interpreter, for tests)
    "torch"   the vectorised fp32 implementation in torch_impl.py; runs anywhere
    "auto"    "triton" for CUDA tensors when Triton imports (and TRITON_INTERPRET is off), else "torch";
              given the hidden-state bytes a whole run will sum (`work_bytes`), "triton" only when they repay
              the kernel's first compile (TRITON_REPAYS_BYTES)

An impossible request raises gaincurate.errors.BackendError (a ValueError) naming the device and
the fix. Triton is imported only when the Triton backend is chosen, so this package imports fine
where Triton is missing or broken. reference.py holds the float64 oracle every backend is tested
against; docs/kernel.md explains the math and the kernel design.

Example:
    sums, counts = segment_unit_sums(hidden, segment_ids, num_segments=2)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from gaincurate.errors import BackendError

from .launch import MAX_SEGMENTS, interpret_requested

if TYPE_CHECKING:
    import torch

__all__ = ["BACKENDS", "BackendError", "packed_segment_unit_sums", "resolve_backend", "segment_unit_sums"]

BACKENDS = ("auto", "triton", "torch")
# The kernel's first compile in a process (seconds) against the time it saves over the torch backend, which reads
# hidden states at about a seventh of the kernel's rate (docs/kernel.md, "GPU numbers"): it repays the compile past
# about 500 GB of hidden states, a few hundred thousand prompts of a 7B-class model.
TRITON_REPAYS_BYTES = 500 * 10**9

logger = logging.getLogger(__name__)

# The outcome of the one attempt to import triton_impl: (module, None) or (None, "why it failed").
_triton_import: tuple[ModuleType | None, str | None] | None = None


def _load_triton_impl() -> tuple[ModuleType | None, str | None]:
    """Import triton_impl once. A missing or broken Triton is reported, never raised."""
    global _triton_import
    if _triton_import is None:
        try:
            from . import triton_impl
        except Exception as error:  # a broken install raises anything, not only ImportError
            _triton_import = (None, f"{type(error).__name__}: {error}".splitlines()[0])
        else:
            _triton_import = (triton_impl, None)
    return _triton_import


def _triton_unavailable(device: object, reason: str) -> BackendError:
    return BackendError(
        f"backend 'triton' cannot run on device '{device}': Triton failed to import ({reason}); "
        "install it with `pip install 'gaincurate[triton]'`, or use backend='torch'"
    )


def resolve_backend(backend: str, device: torch.device | str, work_bytes: int | None = None) -> str:
    """The backend ("triton" or "torch") that `segment_unit_sums` uses for tensors on `device`; `work_bytes`, the
    hidden-state bytes of the whole run when known, lets "auto" skip a compile that the run cannot repay."""
    import torch

    device = torch.device(device)
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        if device.type != "cuda":
            return "torch"
        module, reason = _load_triton_impl()
        if module is None:
            logger.warning("Triton failed to import (%s); using the torch backend on %s", reason, device)
            return "torch"
        # Interpreted kernels on GPU tensors are correct but far slower than the torch backend. The torch backend's
        # float32 matmul is exact only while TF32 is off.
        if module.INTERPRETED or (work_bytes is not None and work_bytes < TRITON_REPAYS_BYTES and not _tf32()):
            return "torch"
        return "triton"

    if device.type == "cuda":
        module, reason = _load_triton_impl()
        if module is None:
            raise _triton_unavailable(device, reason)
        return "triton"
    if device.type == "cpu":
        if not interpret_requested():
            raise BackendError(
                "backend 'triton' cannot run on device 'cpu': Triton kernels need a CUDA device; "
                "use backend='torch' (or 'auto'), or set TRITON_INTERPRET=1 before starting Python "
                "to run the kernel in Triton's CPU interpreter"
            )
        module, reason = _load_triton_impl()
        if module is None:
            raise _triton_unavailable(device, reason)
        if not module.INTERPRETED:
            raise BackendError(
                "backend 'triton' cannot run on device 'cpu': TRITON_INTERPRET=1 was set after the "
                "Triton kernels were compiled for the GPU; set it before starting Python"
            )
        return "triton"
    raise BackendError(
        f"backend 'triton' cannot run on device '{device}': Triton kernels need a CUDA device; "
        "use backend='torch' (or 'auto')"
    )


def _tf32() -> bool:
    import torch

    return bool(torch.backends.cuda.matmul.allow_tf32)


def _check_inputs(hidden: torch.Tensor, segment_ids: torch.Tensor, num_segments: int, *, check_ids: bool) -> None:
    """Raise ValueError for inputs outside the contract; the message names the bad value."""
    import torch

    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, T, D], got shape {tuple(hidden.shape)}")
    if hidden.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise ValueError(f"hidden must be bfloat16, float16 or float32, got {hidden.dtype}")
    if hidden.shape[-1] > 1 and hidden.stride(-1) != 1:
        raise ValueError(f"hidden must have a contiguous last dim, got strides {hidden.stride()}; call .contiguous()")
    if tuple(segment_ids.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"segment_ids must be [B, T] = {tuple(hidden.shape[:2])}, got shape {tuple(segment_ids.shape)}"
        )
    if segment_ids.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64):
        raise ValueError(f"segment_ids must be int8, int16, int32 or int64, got {segment_ids.dtype}")
    if segment_ids.device != hidden.device:
        raise ValueError(f"segment_ids are on {segment_ids.device} but hidden is on {hidden.device}")
    if isinstance(num_segments, bool) or not isinstance(num_segments, int):
        raise ValueError(f"num_segments must be an int, got {num_segments!r}")
    if not 1 <= num_segments <= MAX_SEGMENTS:
        raise ValueError(f"num_segments must be in 1..{MAX_SEGMENTS}, got {num_segments}")
    if not check_ids or not segment_ids.numel():
        return
    # One small reduction (a sync on CUDA): an id the kernel would silently drop is a caller bug.
    out_of_range = (segment_ids < -1) | (segment_ids >= num_segments)
    if bool(out_of_range.any()):
        bad = segment_ids[out_of_range][0].item()
        raise ValueError(f"segment_ids must be -1 or in 0..{num_segments - 1}, found {bad}")


def segment_unit_sums(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    num_segments: int,
    backend: str = "auto",
    *,
    check_ids: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-segment sums of unit vectors [B, S, D] fp32 and token counts [B, S] int32.

    See the module docstring for the contract and the backends. `check_ids=False` skips the range check of the ids,
    a reduction whose answer the host waits for: for a caller that built them in range on the host.
    """
    _check_inputs(hidden, segment_ids, num_segments, check_ids=check_ids)
    if resolve_backend(backend, hidden.device) == "triton":
        module, _ = _load_triton_impl()
        return module.segment_unit_sums_triton(hidden, segment_ids, num_segments)
    from .torch_impl import segment_unit_sums_torch

    return segment_unit_sums_torch(hidden, segment_ids, num_segments)


def packed_segment_unit_sums(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    row_starts: Sequence[int],
    num_segments: int,
    backend: str = "auto",
    *,
    check_ids: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`segment_unit_sums` of B rows packed end to end (the module docstring): `hidden` [N, D], `segment_ids` [N],
    `row_starts` the B + 1 cumulative offsets on the host, the last one N."""
    import torch

    _check_inputs(hidden[None], segment_ids[None], num_segments, check_ids=check_ids)
    starts = [int(start) for start in row_starts]
    lengths = [high - low for low, high in zip(starts[:-1], starts[1:], strict=True)]
    if not starts or starts[0] != 0 or starts[-1] != hidden.shape[0] or min(lengths, default=0) < 0:
        raise ValueError(f"row_starts must rise from 0 to the {hidden.shape[0]} packed tokens, got {starts[:8]}...")
    if resolve_backend(backend, hidden.device) == "triton":
        module, _ = _load_triton_impl()
        from .torch_impl import to_device

        device_starts = to_device(torch.tensor(starts, dtype=torch.int32), hidden.device)
        return module.segment_unit_sums_triton(hidden[None], segment_ids[None], num_segments,
                                               row_starts=device_starts, longest=max(lengths, default=0))  # fmt: skip
    from .torch_impl import segment_unit_sums_packed_torch

    return segment_unit_sums_packed_torch(hidden, segment_ids, starts, num_segments)
