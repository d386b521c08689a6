"""The scoring dtype on CPU, chosen by timing the model's own linear layers rather than from CPU flags.

Flags mislead: a Xeon with AVX512-BF16 but no AMX runs torch's bf16 matmul at about half its fp32 rate,
one with AMX at several times it, and an EPYC without bf16 units emulates it. So `--dtype auto` times
one decoder layer's linear shapes (q/k/v/o and the MLP, from the model's config, random weights) in
each candidate dtype on `PROBE_TOKENS` tokens, within about `PROBE_BUDGET_SECONDS`, and picks the
fastest candidate that is exact (float32) or passes the fidelity gate (`gaincurate.scoring.fidelity`).

Candidates: float32, bfloat16, float16 (where torch can run it) and int8: dynamic int8 quantization of
the `nn.Linear` layers with torchao (`pip install 'gaincurate[int8]'`), activations quantized per token.

    from gaincurate.scoring.dtype import choose_dtype
    choose_dtype({"float32": 2e-4, "bfloat16": 5e-5}, gate=lambda dtype: {"passed": True, ...}).dtype
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CANDIDATES = ("float32", "bfloat16", "float16", "int8")
REFERENCE = "float32"  # exact: the dtype every lossy candidate is gated against
PROBE_TOKENS = 256
PROBE_BUDGET_SECONDS = 0.15  # rounds stop here: with the set-up, about 0.2 s on one core
_MLP_NAMES = ("mlp", "feed_forward", "block_sparse_moe", "ffn")


def model_shapes(model_config: Any) -> dict[str, Any]:
    """The linear shapes of one decoder layer: `[[in, out, count, is_mlp], ...]`, and the layer count.

    Read from a weightless (meta device) instance of the model, so any architecture transformers can
    build is covered and nothing is allocated.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from gaincurate.model import decoder_layers

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    counts: dict[tuple[int, int, bool], int] = {}
    for name, module in decoder_layers(model)[0].named_modules():
        if isinstance(module, torch.nn.Linear):
            shape = (module.in_features, module.out_features)
        elif type(module).__name__ == "Conv1D":  # GPT-2 stores [in, out]
            shape = tuple(module.weight.shape)
        else:
            continue
        key = (*shape, name.split(".")[0] in _MLP_NAMES)
        counts[key] = counts.get(key, 0) + 1
    linears = [[size_in, size_out, count, is_mlp] for (size_in, size_out, is_mlp), count in sorted(counts.items())]
    return {"linears": linears, "num_layers": model_config.num_hidden_layers}


def flops_per_token(shapes: dict[str, Any], last_layer: int, site: str) -> float:
    """Matmul FLOPs per token of a forward that stops at `site` of layer `last_layer` (0-based).

    Attention-score FLOPs are left out: at prompt lengths of a few hundred tokens they are a few percent.
    """
    attention = sum(2 * i * o * n for i, o, n, mlp in shapes["linears"] if not mlp)
    mlp = sum(2 * i * o * n for i, o, n, is_mlp in shapes["linears"] if is_mlp)
    total = (last_layer + 1) * (attention + mlp)
    return float(total - mlp if site == "mlp-input" else total)


def layer_flops_per_token(shapes: dict[str, Any]) -> float:
    return float(sum(2 * i * o * n for i, o, n, _ in shapes["linears"]))


class _OnlyErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def quiet_torchao() -> None:
    """Drop torchao's import-time warnings: one per CUDA extension it cannot load on a CPU-only torch.

    transformers imports torchao on every model load once it is installed, so this runs when this module
    is imported (before `prepare` loads anything). A filter rather than a level, because torch resets
    its loggers' levels when its logging initializes during that import.
    """
    for name in ("torchao", "torch.utils._pytree"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OnlyErrors) for f in logger.filters):
            logger.addFilter(_OnlyErrors())


quiet_torchao()


def unavailable(dtype: str) -> str | None:
    """Why `dtype` cannot run here, or None when it can."""
    import torch

    if dtype == "int8":
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_  # noqa: F401
        except ImportError as error:
            return f"torchao is not installed or does not import ({error}); pip install 'gaincurate[int8]'"
        return None
    try:
        ones = torch.ones(2, 2, dtype=getattr(torch, dtype))
        ones @ ones
    except (RuntimeError, TypeError) as error:
        return f"torch cannot multiply {dtype} matrices on this CPU ({error})"
    return None


def convert_model(model: Any, dtype: str) -> Any:
    """Cast `model` (loaded in float32 for int8) to `dtype` in place; int8 quantizes its `nn.Linear` layers.

    The output embedding is left alone: scoring never reaches the LM head.
    """
    import torch

    if dtype != "int8":
        return model.to(getattr(torch, dtype))
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    quantize_(
        model,
        Int8DynamicActivationInt8WeightConfig(),
        filter_fn=lambda module, name: isinstance(module, torch.nn.Linear) and module is not head,
    )
    return model


def load_dtype(dtype: str) -> str:
    """The dtype to load weights in before `convert_model`: int8 quantizes a float32 model."""
    return "float32" if dtype == "int8" else dtype


def probe_layer(shapes: dict[str, Any], dtype: str) -> list[tuple[Any, Any, int]]:
    """`(linear, input dtype, count)` per distinct shape of one layer, random weights, on `PROBE_TOKENS` tokens."""
    import torch

    generator = torch.Generator().manual_seed(0)
    work = torch.float32 if dtype == "int8" else getattr(torch, dtype)
    parts = []
    for size_in, size_out, count, _ in shapes["linears"]:
        linear = torch.nn.Linear(size_in, size_out, bias=False, device="meta")  # skips the default init's cost
        weight = torch.empty(size_out, size_in).uniform_(-0.05, 0.05, generator=generator)
        linear.weight = torch.nn.Parameter(weight.to(work), requires_grad=False)
        parts.append((linear, count))
    if dtype == "int8":
        convert_model(torch.nn.Sequential(*(linear for linear, _ in parts)), "int8")
    return [(linear, work, count) for linear, count in parts]


Parts = list[tuple[Any, Any, int]]  # (linear, input dtype, count), from `probe_layer`


def race(contestants: dict[str, tuple[Parts, int]], budget: float, rounds: int = 7) -> dict[str, float]:
    """Seconds per token of each contestant (`probe_layer` parts, token count): best of interleaved rounds.

    Every round times each contestant once, so a burst of load from another process hits all of them
    alike rather than whichever happened to be running. Rounds stop once `budget` seconds have passed,
    the warm-up included, after at least one timed round.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    inputs = {
        name: [(linear, torch.randn(tokens, linear.in_features, generator=generator).to(work), count)
               for linear, work, count in parts]
        for name, (parts, tokens) in contestants.items()
    }  # fmt: skip
    best = dict.fromkeys(inputs, float("inf"))
    with torch.inference_mode():
        started = time.perf_counter()
        for layer in inputs.values():
            _layer_seconds(layer)  # warm-up: oneDNN builds its kernels on the first call of a shape
        for _ in range(rounds):
            for name, layer in inputs.items():
                best[name] = min(best[name], _layer_seconds(layer))
            if time.perf_counter() - started > budget:
                break
    return {name: best[name] / tokens for name, (_, tokens) in contestants.items()}


def _layer_seconds(layer: list[tuple[Any, Any, Any]]) -> float:
    total = 0.0
    for linear, x, count in layer:
        start = time.perf_counter()
        linear(x)
        total += (time.perf_counter() - start) * count
    return total


def measure_dtypes(
    shapes: dict[str, Any], candidates: tuple[str, ...] = CANDIDATES, budget: float = PROBE_BUDGET_SECONDS
) -> dict[str, Any]:
    """Seconds per token of one layer's linears in each candidate dtype, and why any candidate cannot run."""
    missing = {dtype: why for dtype in candidates if (why := unavailable(dtype))}
    contestants = {dtype: (probe_layer(shapes, dtype), PROBE_TOKENS) for dtype in candidates if dtype not in missing}
    return {"seconds_per_token": race(contestants, budget), "unavailable": missing, "tokens": PROBE_TOKENS}


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str
    reason: str  # one line: what was measured and which gate results decided
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # the gate results consulted


def describe_gate(result: dict[str, Any]) -> str:
    comparison = "<=" if result["max_abs_diff"] <= result["bound"] else ">"
    return (
        f"Spearman {result['spearman']:.4f} (needs >= {result['min_spearman']}), "
        f"max |score diff| {result['max_abs_diff']:.4f} {comparison} {result['bound']:.4f}"
    )


def choose_dtype(timings: dict[str, float], gate: Callable[[str], dict[str, Any]]) -> DtypeChoice:
    """The fastest dtype that is float32 or passes `gate`; `gate` runs only for lossy dtypes faster than float32."""
    reference = timings[REFERENCE]
    steps, gates = [], {}
    for dtype in sorted(timings, key=lambda name: (timings[name], name != REFERENCE)):
        speed = f"{reference / timings[dtype]:.2f}x float32's speed"
        if dtype == REFERENCE:
            untried = [d for d in sorted(timings) if d not in gates and d != dtype]
            others = ", ".join(f"{d} {reference / timings[d]:.2f}x" for d in untried)
            steps.append("float32 is exact" + (f" (measured speed vs float32: {others})" if others else ""))
            return DtypeChoice(dtype, "; ".join(steps), gates)
        gates[dtype] = result = gate(dtype)
        if result["passed"]:
            steps.append(f"{dtype} ran at {speed} and passed the fidelity gate ({describe_gate(result)})")
            return DtypeChoice(dtype, "; ".join(steps), gates)
        steps.append(f"{dtype} ran at {speed} but failed the fidelity gate ({describe_gate(result)})")
    raise AssertionError("float32 is always a candidate")  # pragma: no cover
