"""The model's own forward: plain transformers against scoring's, scoring's with cuDNN's attention, with the prefix
attended apart or replayed from a CUDA graph, and each fusion alone.

`gaincurate bench gpu --forward-variants` runs this on the 0.5B and 1.5B classes: one batch of `rows` x `tokens` random
ids, the rows padded on the right as scoring pads them (their lengths spread over the last sixteenth of the width),
through the base model (no LM head), continuing from a cached shared prefix of `prefix_tokens` as scoring continues
every row that starts with its prompt format's shared prefix (`loop_prefix_tokens`), timed with device events, each
variant's last hidden state at the real tokens compared with the plain run's. `gaincurate` is the forward as scoring
runs it on the device: attention without cuDNN's backend (`forward_kernels.attention_for_many_shapes`), and
`forward_kernels.right_padded_forward` (attention without the padding mask, RMSNorm fused, the Triton rotary embedding
and SwiGLU, where each applies); `cudnn_attention` the same with cuDNN's attention allowed, a candidate for padded
batches (cuDNN plans each new shape once, at a cost). Rows that continue from a prefix attend causally aligned to the
lower right, which torch sends to flash attention where it can run and never to cuDNN's
(`torch.nn.attention.bias.CausalBias`), so only rows without a prefix (`prefix_tokens` 0) can take cuDNN's kernel. With
a prefix, `without_prefix` also times scoring's forward over the same rows with none, cuDNN's attention left out and
allowed: what continuing from the prefix costs, and what cuDNN's kernel buys rows that start with none.
`cascade_prefix` is scoring's forward with the prefix's keys and values kept apart (`gpu_cascade`): each row attends to
its own tokens causally (cuDNN's kernel takes that) and to the prefix in a second call, the two merged by their
log-sum-exp, with no copy of the rows' keys behind the prefix's (`cascade_attention` says what ran the calls).
`cuda_graph` is scoring's forward captured once in a CUDA graph and replayed (a GPU only): the same kernels without the
host launching each one, what the host's launches between kernels cost a batch of this shape.
`fused_rms_norm`, `fused_rotary` and `fused_swiglu` are each fusion alone on transformers' forward (the last two on a
GPU in a half dtype only). Each row's `difference` is its distance from the plain forward's hidden states,
`from_float32` its distance from the same weights' float32 forward, against the plain forward's own (`tolerance`): the
largest difference over the largest value. `rms_from_float32` (against `rms_tolerance`) reads every element's, root mean
square over root mean square, which moves far less from one batch to the next. A variant counts as worth adopting at
`WORTH_ADOPTING` times the plain forward's speed with its hidden states no farther from float32 than the plain forward's
(the scores' tolerance follows from the hidden states): a variant that rounds less can be farther from the plain forward
than that and nearer float32.

Liger-Kernel's fused RMSNorm, rotary embedding and SwiGLU, torch.compile and this project's SwiGLU kernel before it
specialised its element count were measured here before (docs/benchmark-history.md, "Scoring throughput on one GPU" and
"SwiGLU and the rotary embedding fused on one GPU"); a variant that does not run says why instead of a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

WORTH_ADOPTING = 1.2
VARIANTS = ("gaincurate", "cudnn_attention", "cascade_prefix", "cuda_graph", "fused_rms_norm", "fused_rotary",
            "fused_swiglu")  # fmt: skip
WARMUP, REPEATS = 2, 8


def _median_seconds(run: Callable[[], Any], device: str) -> float:
    import torch

    times = []
    for step in range(WARMUP + REPEATS):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            began = time.perf_counter()
            run()
            elapsed = time.perf_counter() - began
        if step >= WARMUP:
            times.append(elapsed)
    return sorted(times)[len(times) // 2]


def _difference(got: Any, reference: Any, real: Any) -> float:
    """max |got - reference| over max |reference| at the `real` positions, in float32."""
    got, reference = got[real].float(), reference[real].float()
    return float((got - reference).abs().max() / reference.abs().max())


def _rms_difference(got: Any, reference: Any, real: Any) -> float:
    """The root mean square of got - reference over that of reference at the `real` positions, in float32: every
    element's difference, where `_difference` reads the largest one's, so it moves far less from batch to batch."""
    got, reference = got[real].float(), reference[real].float()
    return float((got - reference).square().mean().sqrt() / reference.square().mean().sqrt())


def padded_batch(rows: int, tokens: int, vocab_size: int, device: str) -> tuple[Any, Any, Any]:
    """Random ids, each row's length (spread over the last sixteenth of `tokens`, the first row full) and the attention
    mask of those rows padded on the right."""
    import torch

    with torch.device(device):
        ids = torch.randint(0, vocab_size, (rows, tokens))
        lengths = tokens - torch.arange(rows) * max(1, tokens // 16) // rows
        return ids, lengths, (torch.arange(tokens)[None] < lengths[:, None]).long()


def forward_variants(shape: dict, device: str, dtype_name: str, rows: int, tokens: int, flops_per_token: float,
                     prefix_tokens: int = 0) -> dict:  # fmt: skip
    """Seconds per forward of each variant, its speed-up over plain, and its distance from plain's hidden states; the
    rows continue from a cached prefix of `prefix_tokens` random ids (none at 0)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True, **shape)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype_name)).eval()
    ids, lengths, mask = padded_batch(rows, tokens, config.vocab_size, device)
    prefix = torch.randint(0, config.vocab_size, (1, prefix_tokens), device=device)
    real = mask.bool()

    plain_run = batch_forward(model.model, ids, mask, prefix)
    reference = plain_run()
    with torch.device(device):
        high = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    high.load_state_dict(model.state_dict())
    exact = batch_forward(high.model, ids, mask, prefix)()
    tolerance = _difference(reference, exact, real)
    rms_tolerance = _rms_difference(reference, exact, real)
    del high
    plain = _median_seconds(plain_run, device)
    results: dict[str, Any] = {
        "rows": rows,
        "tokens": tokens,
        "prefix_tokens": prefix_tokens,
        "lengths": lengths.tolist(),  # each row's real tokens, padded on the right to `tokens`
        "tflops_plain": flops_per_token * rows * tokens / plain / 1e12,
        "tolerance": tolerance,
        "rms_tolerance": rms_tolerance,  # the plain forward's root-mean-square distance from float32
        "plain": {"seconds": plain},
    }

    def measure(name: str, prepare: Callable[[], Callable[[], Any]]) -> None:
        began = time.perf_counter()
        try:
            run = prepare()
            output = run()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            first = time.perf_counter() - began
            seconds = _median_seconds(run, device)
        except Exception as error:  # a variant that does not run here is a finding, not a failed bench
            results[name] = {"error": _why(error)}
            return
        speedup, from_float32 = plain / seconds, _difference(output, exact, real)
        results[name] = {"seconds": seconds, "first_call_seconds": first, "speedup": speedup,
                         "difference": _difference(output, reference, real), "from_float32": from_float32,
                         "rms_from_float32": _rms_difference(output, exact, real),
                         "worth_adopting": speedup >= WORTH_ADOPTING and from_float32 <= tolerance}  # fmt: skip

    def within(context: Callable[[Any], Any]) -> Callable[[], Callable[[], Any]]:
        return lambda: lambda: _within(context(model.model), plain_run)

    from gaincurate.forward_kernels import fused_rms_norms, right_padded_forward
    from gaincurate.layer_fusions import fused_rotary, fused_swiglu, triton_fusions_apply

    scoring = within(lambda base: _scoring_forward(base, device))
    measure("gaincurate", scoring)
    measure("cudnn_attention", within(lambda base: right_padded_forward(base, device)))
    if prefix_tokens:
        measure("cascade_prefix", lambda: _cascade_run(model.model, ids, prefix, device, results))
    else:
        results["cascade_prefix"] = {"error": "no shared prefix to attend apart"}
    if device.startswith("cuda"):
        measure("cuda_graph", lambda: _graphed(scoring()))
    else:
        results["cuda_graph"] = {"error": "CUDA graphs need a GPU"}
    measure("fused_rms_norm", within(fused_rms_norms))
    for name, fusion in (("fused_rotary", fused_rotary), ("fused_swiglu", fused_swiglu)):
        if triton_fusions_apply(model, device):
            measure(name, within(fusion))
        else:
            results[name] = {"error": "the Triton kernels run on a GPU in a half dtype"}
    if prefix_tokens:
        results["without_prefix"] = _without_prefix(model.model, ids, mask, device)
    return results


def _why(error: Exception) -> str:
    """A variant's error in one line: its type and the first line of its message, if it has one."""
    first = next(iter(str(error).splitlines()), "")
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


def _without_prefix(base: Any, ids: Any, mask: Any, device: str) -> dict:
    """Seconds of scoring's forward over the same rows with no prefix, cuDNN's attention left out (`gaincurate`) and
    allowed (`cudnn_attention`): what continuing from the prefix costs, and what cuDNN's kernel does for rows that
    start with none (a prompt format without a shared prefix)."""
    from gaincurate.forward_kernels import right_padded_forward

    run, timed = batch_forward(base, ids, mask, ids[:1, :0]), {}
    for name, context in (("gaincurate", _scoring_forward), ("cudnn_attention", right_padded_forward)):
        try:
            timed[name] = _median_seconds(lambda context=context: _within(context(base, device), run), device)
        except Exception as error:  # as a variant that does not run: a finding, not a failed bench
            timed[name] = _why(error)
    return timed


def _cascade_run(base: Any, ids: Any, prefix: Any, device: str, results: dict) -> Callable[[], Any]:
    """Scoring's forward with the prefix attended apart (`gpu_cascade`), the layers fused as scoring fuses them; what
    runs its attention goes into `results` (`cascade_attention`)."""
    from gaincurate.forward_kernels import fused_layers
    from gaincurate.lab.benchmarks.gpu_cascade import attention_with_lse, cascade_forward

    attend, results["cascade_attention"] = attention_with_lse(device, base.dtype)
    run = cascade_forward(base, ids, _prefix_cache(base, prefix), attend)
    return lambda: _within(fused_layers(base, device), run)


def _graphed(run: Callable[[], Any]) -> Callable[[], Any]:
    """`run` captured once in a CUDA graph (after two runs on a side stream, which compile and plan what it launches)
    and replayed: the same kernels on the same buffers, without the host launching each one in between."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = run()

    def replay() -> Any:
        graph.replay()
        return output

    return replay


def _within(context: Any, run: Callable[[], Any]) -> Any:
    """`run` inside `context` (a context manager made for this one call)."""
    with context:
        return run()


def batch_forward(base: Any, ids: Any, mask: Any, prefix: Any) -> Callable[[], Any]:
    """What runs `ids` (`mask`: rows padded on the right) through `base` as `Scorer._run_batch` does: with `prefix`
    ids ([1, P], P > 0), each row continues from the prefix's one-row cache, which its forward extends; the last
    hidden state at the rows' own positions."""
    import torch

    from gaincurate.model import cache_keyword
    from gaincurate.scoring.engine import expand_cache

    cached = _prefix_cache(base, prefix) if prefix.shape[1] else None
    whole_mask = torch.cat([mask.new_ones(mask.shape[0], prefix.shape[1]), mask], dim=1)

    def run() -> Any:
        with torch.inference_mode():
            if cached is None:
                return base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            cache = expand_cache(cached, ids.shape[0], base.config)
            return base(input_ids=ids, attention_mask=whole_mask, use_cache=True,
                        **{cache_keyword(base): cache}).last_hidden_state  # fmt: skip

    return run


def _prefix_cache(base: Any, prefix: Any) -> Any:
    """The one-row cache of `prefix` through `base`, as `Scorer._prefix_parts` fills it."""
    import torch
    from transformers import DynamicCache

    from gaincurate.model import cache_keyword

    cache = DynamicCache(config=base.config)
    with torch.inference_mode():
        base(input_ids=prefix, attention_mask=torch.ones_like(prefix), use_cache=True, **{cache_keyword(base): cache})
    return cache


def loop_prefix_tokens(tokenizer: str | None) -> int:
    """The shared prefix's tokens in the bench's scoring runs (the default prompt format with `bench_tokenizer`'s
    tokenizer): what every row of the scoring loop continues from."""
    from gaincurate.lab.benchmarks.gpu_models import bench_tokenizer
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.config import ScoreConfig
    from gaincurate.scoring.engine import find_shared_prefix

    config = ScoreConfig()
    prefix = find_shared_prefix(PromptEncoder(bench_tokenizer(tokenizer), config.prompt_format, config.max_length))
    return 0 if prefix is None else len(prefix.input_ids)


def _scoring_forward(base: Any, device: str) -> contextlib.ExitStack:
    """The forward as scoring runs it (`model.SiteForward.capture`): attention without cuDNN's backend, and
    `right_padded_forward`."""
    from gaincurate.forward_kernels import attention_for_many_shapes, right_padded_forward

    stack = contextlib.ExitStack()
    stack.enter_context(attention_for_many_shapes())
    stack.enter_context(right_padded_forward(base, device))
    return stack


def forward_lines(results: dict) -> list[str]:
    lines = [f"forward of {results['rows']} x {results['tokens']} tokens after a prefix of "
             f"{results.get('prefix_tokens', 0)}: plain {results['plain']['seconds']:.3f} s "
             f"({results['tflops_plain']:.0f} TFLOP/s); tolerance {results['tolerance']:.2g} "
             f"(rms {results['rms_tolerance']:.2g})"]  # fmt: skip
    for name in VARIANTS:
        row = results[name]
        if "error" in row:
            lines.append(f"  {name}: did not run: {row['error']}")
        else:
            lines.append(f"  {name}: {row['seconds']:.3f} s, {row['speedup']:.2f}x, first call "
                         f"{row['first_call_seconds']:.1f} s, difference {row['difference']:.2g}, "
                         f"from float32 {row['from_float32']:.2g} (rms {row['rms_from_float32']:.2g})"
                         + (f", attention by {results['cascade_attention']}" if name == "cascade_prefix" else "")
                         + (" (worth adopting)" if row["worth_adopting"] else ""))  # fmt: skip
    if results.get("without_prefix"):
        lines.append("  the same rows without the prefix: " + ", ".join(
            f"{name} {value:.3f} s" if isinstance(value, float) else f"{name} did not run: {value}"
            for name, value in results["without_prefix"].items()))  # fmt: skip
    return lines
