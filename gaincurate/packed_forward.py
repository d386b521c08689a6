"""Rows of many lengths through the model as one packed sequence: no padding, each row attending to its own tokens
and to a shared prefix computed once.

On a GPU the rows of a batch are laid end to end in one sequence `[1, N]` (`PackedRows`): every linear layer runs on
real tokens only, rotary positions restart with each row (after the prefix's), and attention runs per row through
variable-length flash attention (`torch.nn.attention.varlen.varlen_attn`). The shared prefix's keys and values,
computed once, are attended by every row without a copy per row: attention over the prefix (no mask) and over the
row's own tokens (causal) are merged by their log-sum-exp, as cascade inference does (`merge_by_log_sum_exp`).

`varlen_reference` is the readable, float64-capable specification of that attention call. Tests run the packed
forward on a CPU through it, since torch's variable-length attention needs CUDA. `cuda_varlen` wraps torch's
function in whatever form the installed version takes (a causal flag or a window, a scale or none, grouped key/value
heads or not), or says why it cannot; the engine then keeps its padded path.

Imported when a forward runs, not with the command line.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# The attention implementation registered with transformers for packed rows.
PACKED_ROWS = "gaincurate_packed_rows"


@dataclass(frozen=True)
class PackedRows:
    """Rows laid end to end: ids and rotary positions `[1, N]` (host), and where each row starts (`starts`, B + 1
    cumulative offsets, the last one N)."""

    input_ids: Any
    position_ids: Any
    starts: list[int]

    @property
    def longest(self) -> int:
        return max((high - low for low, high in zip(self.starts, self.starts[1:], strict=False)), default=0)


def pack_rows(rows: Sequence[Sequence[int]], first_position: int = 0) -> PackedRows:
    """`rows` (token ids, each non-empty) end to end; each row's positions count from `first_position` (the shared
    prefix's length), as they would in a row of its own after the prefix."""
    import torch

    lengths = [len(row) for row in rows]
    starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).tolist()
    ids = np.concatenate([np.asarray(row, dtype=np.int64) for row in rows])
    positions = np.concatenate([np.arange(first_position, first_position + n, dtype=np.int64) for n in lengths])
    return PackedRows(torch.from_numpy(ids)[None], torch.from_numpy(positions)[None], starts)


def fill_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Row indices in batches of at most `batch_tokens` tokens in all (a longer row gets a batch of its own), longest
    first: a batch closes only when the next row does not fit, so every batch but the last is full to within one
    row's length. Ties keep input order, so the plan is deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    used = 0
    for index in order:
        if not batches or used + lengths[index] > batch_tokens:
            batches.append([])
            used = 0
        batches[-1].append(index)
        used += lengths[index]
    return batches


def varlen_reference(query, key, value, cu_q, cu_k, max_q, max_k, *, causal: bool, scale: float | None = None):
    """The specification of `cuda_varlen`'s call: per row r, queries `query[cu_q[r]:cu_q[r+1]]` ([Tq, H, D]) attend to
    keys and values `[cu_k[r]:cu_k[r+1]]` ([Tk, Hkv, D], each key/value head shared by H / Hkv query heads), causal
    aligned to the lower right (the last query sees every key) when `causal`. Returns the output [Tq, H, D] in the
    query's dtype and the log-sum-exp of the scaled scores [Tq, H], both computed in float64 for float64 inputs and
    float32 otherwise. `max_q` and `max_k` are part of the contract and unused here."""
    import torch

    dtype = torch.promote_types(query.dtype, torch.float32)
    heads, kv_heads, width = query.shape[1], key.shape[1], query.shape[2]
    scale = width**-0.5 if scale is None else scale
    output = torch.zeros_like(query)
    lse = torch.zeros(query.shape[:2], dtype=dtype, device=query.device)
    bounds_q, bounds_k = [int(x) for x in cu_q], [int(x) for x in cu_k]
    for row in range(len(bounds_q) - 1):
        q_low, q_high, k_low, k_high = bounds_q[row], bounds_q[row + 1], bounds_k[row], bounds_k[row + 1]
        q = query[q_low:q_high].to(dtype)
        k = key[k_low:k_high].to(dtype).repeat_interleave(heads // kv_heads, dim=1)
        v = value[k_low:k_high].to(dtype).repeat_interleave(heads // kv_heads, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) * scale
        if causal:
            allowed = torch.ones(len(q), len(k), dtype=torch.bool, device=query.device).tril(len(k) - len(q))
            scores = scores.masked_fill(~allowed, float("-inf"))
        row_lse = torch.logsumexp(scores, dim=-1)  # [H, Tq]
        output[q_low:q_high] = torch.einsum("hqk,khd->qhd", torch.exp(scores - row_lse[..., None]), v).to(query.dtype)
        lse[q_low:q_high] = row_lse.transpose(0, 1)
    return output, lse


def merge_by_log_sum_exp(out_a, lse_a, out_b, lse_b):
    """Attention over keys A and over keys B ([T, H, D] outputs, [T, H] log-sum-exps) merged into attention over A
    and B together: each output weighted by its share of the softmax's denominator, exp(lse_x - lse_all)."""
    import torch

    dtype = torch.promote_types(out_a.dtype, torch.float32)
    both = torch.logaddexp(lse_a.to(dtype), lse_b.to(dtype))
    weight_a, weight_b = torch.exp(lse_a.to(dtype) - both)[..., None], torch.exp(lse_b.to(dtype) - both)[..., None]
    return (out_a.to(dtype) * weight_a + out_b.to(dtype) * weight_b).to(out_a.dtype)


@functools.cache
def cuda_varlen() -> tuple[Callable | None, str]:
    """(torch's variable-length flash attention with `varlen_reference`'s signature, "") where the installed torch has
    it with the log-sum-exp on request, else (None, why not).

    The function's keywords moved between versions: torch 2.10 takes `is_causal`, later versions a `window_size`
    ((-1, 0) is causal) and a `scale`; grouped key/value heads (`enable_gqa`) are documented from 2.12. Where a
    keyword is missing the call does what it means another way: the query pre-scaled (the default scale is
    1/sqrt(D)), or each key/value head repeated for its query heads (a copy per layer, the price of an older torch).
    """
    import torch

    try:
        from torch.nn.attention.varlen import AuxRequest, varlen_attn
    except ImportError as error:
        return None, f"torch {torch.__version__} has no torch.nn.attention.varlen ({error})"
    parameters = inspect.signature(varlen_attn).parameters
    if "return_aux" not in parameters:
        return None, f"torch {torch.__version__}'s varlen_attn cannot return the log-sum-exp"
    if "is_causal" not in parameters and "window_size" not in parameters:
        return None, f"torch {torch.__version__}'s varlen_attn takes neither is_causal nor window_size"

    def call(query, key, value, cu_q, cu_k, max_q, max_k, *, causal: bool, scale: float | None = None):
        options: dict[str, Any] = {"return_aux": AuxRequest(lse=True)}
        heads, kv_heads = query.shape[1], key.shape[1]
        if heads != kv_heads and "enable_gqa" in parameters:
            options["enable_gqa"] = True
        elif heads != kv_heads:
            key, value = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (key, value))
        if "is_causal" in parameters:
            options["is_causal"] = causal
        elif causal:
            options["window_size"] = (-1, 0)
        if scale is not None and "scale" in parameters:
            options["scale"] = scale
        elif scale is not None:
            query = query * (scale * query.shape[-1] ** 0.5)
        # Flash attention reads [T, H, D] rows; transformers' rotated queries and keys arrive as views of [H, T, D].
        query, key, value = (t.contiguous() for t in (query, key, value))
        output, lse = varlen_attn(query, key, value, cu_q, cu_k, max_q, max_k, **options)
        if tuple(lse.shape) == (heads, query.shape[0]):  # flash's layout, [H, Tq]
            lse = lse.transpose(0, 1)
        return output, lse.float()

    return call, ""


def packing_applies(model: Any, device: str) -> str | None:
    """None where `model`'s forward on `device` may run packed (`packed_attention`), else why not: a GPU in a half
    dtype with plain causal attention through transformers' attention functions (what the padded path's flash
    attention needs too), and a torch whose variable-length attention `cuda_varlen` can call."""
    from gaincurate.forward_kernels import right_padded_causal_applies

    if not right_padded_causal_applies(model, device):
        return "packed rows need a GPU, a half dtype and plain causal attention through transformers' functions"
    return cuda_varlen()[1] or None


def prefix_key_values(cache: Any) -> dict[int, tuple[Any, Any]]:
    """The shared prefix's keys and values by layer index, [P, Hkv, D] each, from its one-row cache."""
    layers = [layer for layer in cache.layers if layer.keys is not None and layer.keys.numel()]
    return {index: (layer.keys[0].transpose(0, 1).contiguous(), layer.values[0].transpose(0, 1).contiguous())
            for index, layer in enumerate(layers)}  # fmt: skip


@dataclass(frozen=True)
class _Packing:
    varlen: Callable
    starts: Any  # [B + 1] int32 on the device
    longest: int
    prefix: dict[int, tuple[Any, Any]]
    whole_q: Any  # [0, N]: every packed query as one sequence, for the attention over the prefix
    whole_prefix: Any  # [0, P]


def packed_attention(config: Any, rows: PackedRows, varlen: Callable, prefix: dict[int, tuple[Any, Any]] | None,
                     device: Any) -> contextlib.AbstractContextManager:  # fmt: skip
    """Run the forwards inside over `rows` (passed as `input_ids` and `position_ids` with no attention mask): each
    row attends to its own tokens causally and, with `prefix` (`prefix_key_values`), to the prefix's through
    `varlen`; then restore `config`'s attention."""
    import torch

    from gaincurate.forward_kernels import attention_as
    from gaincurate.kernels.torch_impl import to_device

    def on_device(values: list[int]) -> Any:
        return to_device(torch.tensor(values, dtype=torch.int32), device)

    prefix_length = next((keys.shape[0] for keys, _ in (prefix or {}).values()), 0)
    state = _Packing(varlen, on_device(rows.starts), rows.longest, prefix or {},
                     on_device([0, rows.starts[-1]]), on_device([0, prefix_length]))  # fmt: skip
    return attention_as(config, PACKED_ROWS, functools.partial(_packed_rows_attention, state))


def _packed_rows_attention(state: _Packing, module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                           dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple:  # fmt: skip
    """transformers' attention-function contract for one packed batch: `query` [1, H, N, D], `key`/`value`
    [1, Hkv, N, D] -> ([1, N, H, D], no weights)."""
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    total = q.shape[0]
    output, lse = state.varlen(q, k, v, state.starts, state.starts, state.longest, state.longest, causal=True,
                               scale=scaling)  # fmt: skip
    prefix = state.prefix.get(module.layer_idx)
    if prefix is not None:
        prefix_keys, prefix_values = prefix
        over_prefix, prefix_lse = state.varlen(q, prefix_keys, prefix_values, state.whole_q, state.whole_prefix, total,
                                               prefix_keys.shape[0], causal=False, scale=scaling)  # fmt: skip
        output = merge_by_log_sum_exp(output, lse, over_prefix, prefix_lse)
    return output[None], None


def packed_forward(model: Any, device: str, rows: PackedRows, varlen: Callable,
                   prefix: dict[int, tuple[Any, Any]] | None) -> contextlib.AbstractContextManager:  # fmt: skip
    """How a forward over packed `rows` runs on `device`: attention by `packed_attention`, the layers by
    `forward_kernels.fused_layers` (as on the padded path)."""
    from gaincurate.forward_kernels import fused_layers

    stack = contextlib.ExitStack()
    stack.enter_context(packed_attention(model.config, rows, varlen, prefix, device))
    stack.enter_context(fused_layers(model, device))
    return stack
