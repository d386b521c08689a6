"""The rest of a GPU user's path, for `gaincurate bench gpu`: packed rows against padded ones, `gaincurate rollout`
against its decode floor (and vLLM where it imports), the answer likelihood in a half dtype against float32.

* `padded_rows`: scoring with its rows padded to buckets, as where torch lacks variable-length attention; the bench
  scores the MATH-length case both ways and reports the padded throughput and how far the scores moved.
* `rollout_case`: `run_rollouts` (what `gaincurate rollout` runs) on the bundled problems with a random-weight model.
  Random weights never stop early, so every completion runs to `--rollout-tokens`: the decode's worst case. Its
  tokens/s is set against the floor of one decode step (the weights read once at the measured copy rate, or the
  step's matmul FLOPs at the measured matmul rate, whichever is longer) over the sequences a step advances.
* `likelihood_case`: the bundled problems' answer likelihoods in float32 and in the half dtype, their Spearman and
  the largest change against the spread between problems (`likelihood_precision.compare`).

A part that cannot run on the machine (math-verify or vLLM missing) says why in its row instead of failing the bench.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROLLOUT_SAMPLES = 8


@contextlib.contextmanager
def padded_rows() -> Any:
    """Score (and measure likelihoods) inside with every row padded to its bucket, as on a GPU whose torch lacks
    variable-length attention."""
    from gaincurate.scoring import engine

    saved = engine.default_varlen
    engine.default_varlen = lambda model, device: None
    try:
        yield
    finally:
        engine.default_varlen = saved


def why_padded(device: str, dtype: str, timings: dict) -> str:
    """Why a run of a bench model on `device` in `dtype` (its manifest's `timings`) kept its rows padded: no packing
    here (`engine.default_varlen`: the bench's Qwen2 models take transformers' attention functions with plain causal
    attention), or too little padding to repay it (`engine.PACK_FROM_PADDING`)."""
    from gaincurate.packed_forward import cuda_varlen
    from gaincurate.scoring.engine import PACK_FROM_PADDING, padding_overhead

    if not device.startswith("cuda") or dtype == "float32":
        return "rows run padded: packing needs a GPU and a half dtype"
    padding = padding_overhead(timings["padded_tokens"], timings["tokens"])
    return cuda_varlen()[1] or f"{padding:.1%} padding, under the {PACK_FROM_PADDING:.0%} from which rows pack"


def score_difference(packed_out: Path, padded_out: Path) -> float:
    """The largest |score| difference between two scores directories of the same rows."""
    from gaincurate.shards import read_scores

    packed, padded = (read_scores(out)["gc_score"].to_numpy() for out in (packed_out, padded_out))
    return float(np.nanmax(np.abs(packed - padded)))


def copy_rate(device: str, size_bytes: int) -> float:
    """Bytes read and written per second by a device copy of `size_bytes` (the median of 10, after 3)."""
    import torch

    source = torch.empty(size_bytes // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    times = []
    for step in range(13):
        began = time.perf_counter()
        target.copy_(source)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step >= 3:
            times.append(time.perf_counter() - began)
    return 2 * size_bytes / float(np.median(times))


def decode_floor(weight_bytes: int, parameters: int, sequences: int, bandwidth: float, matmul: float) -> float:
    """Tokens/s a decode step of `sequences` rows cannot beat: each step reads every weight once and does
    2 x parameters FLOPs per row, at the measured copy and matmul rates."""
    step = max(weight_bytes / bandwidth, 2 * parameters * sequences / matmul)
    return sequences / step


def rollout_case(shape: dict, options: Any, rate: float) -> dict[str, Any]:
    """`run_rollouts` on `options.rollout_prompts` bundled problems, ROLLOUT_SAMPLES each, at `options.dtype`."""
    from gaincurate.data import load_sample
    from gaincurate.lab.benchmarks.gpu_models import build_model_folder, warm_score
    from gaincurate.rollout.config import RolloutConfig
    from gaincurate.rollout.job import run_rollouts
    from gaincurate.scoring.config import ScoreConfig

    rows = load_sample()[: options.rollout_prompts]
    row: dict[str, Any] = {"prompts": len(rows), "samples": ROLLOUT_SAMPLES, "max_new_tokens": options.rollout_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model_folder(Path(tmp) / "model", shape, options.dtype, options.device, options.tokenizer)
        data = Path(tmp) / "problems.jsonl"
        data.write_text("".join(json.dumps({"problem": r["problem"], "answer": r["answer"]}) + "\n" for r in rows))
        config = ScoreConfig(dataset=str(data), model=str(folder), dtype=options.dtype, device=options.device,
                             answer_column="answer")  # fmt: skip
        warm_score(config, Path(tmp) / "scores")
        rollout = RolloutConfig(scores=str(Path(tmp) / "scores"), out=str(Path(tmp) / "rollouts.jsonl"),
                                samples=ROLLOUT_SAMPLES, max_new_tokens=options.rollout_tokens,
                                batch_size=ROLLOUT_SAMPLES * len(rows), dtype=options.dtype, device=options.device,
                                answer_format="any")  # fmt: skip
        try:
            result = run_rollouts(rollout)
        except Exception as error:  # math-verify absent (ConfigError), or generate failing on this machine
            return row | {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
        weight_bytes, parameters = _weights(folder, options)
        bandwidth = copy_rate(options.device, 2**30 if options.device.startswith("cuda") else 2**26)
        floor = decode_floor(weight_bytes, parameters, ROLLOUT_SAMPLES * len(rows), bandwidth, rate)
        row |= {"tokens_per_second": result.tokens_per_second, "generated_tokens": result.generated_tokens,
                "truncated_rollouts": result.truncated_rollouts, "copy_gbps": bandwidth / 1e9,
                "decode_floor_tokens_per_second": floor, "fraction_of_decode_floor": result.tokens_per_second / floor,
                "vllm": vllm_case(folder, rows, options)}  # fmt: skip
    return row


def _weights(folder: Path, options: Any) -> tuple[int, int]:
    """The model's weight bytes in `options.dtype` and its parameter count, from its config."""
    from gaincurate.model import load_config, resolve_source
    from gaincurate.scoring.gpu_budget import gpu_memory

    weight_bytes, _ = gpu_memory(load_config(resolve_source(str(folder))), options.dtype, options.rollout_tokens)
    return weight_bytes, weight_bytes // (4 if options.dtype == "float32" else 2)


def vllm_case(folder: Path, rows: list[dict], options: Any) -> dict[str, Any]:
    """vLLM's tokens/s on the same model, prompts, samples and length (never stopping early), where it imports."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None or not options.device.startswith("cuda"):
        return {"error": "vllm is not importable here" if options.device.startswith("cuda") else "needs CUDA"}
    try:
        from vllm import LLM, SamplingParams

        engine = LLM(model=str(folder), dtype=options.dtype, gpu_memory_utilization=0.5, seed=0)
        params = SamplingParams(n=ROLLOUT_SAMPLES, max_tokens=options.rollout_tokens, ignore_eos=True,
                                temperature=0.7, seed=0)  # fmt: skip
        prompts = [r["problem"] for r in rows]
        engine.generate(prompts[:1], params)  # its first call builds graphs: not timed
        began = time.perf_counter()
        outputs = engine.generate(prompts, params)
        seconds = time.perf_counter() - began
    except Exception as error:  # another library's failure is reported in the row, not raised
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    tokens = sum(len(completion.token_ids) for output in outputs for completion in output.outputs)
    return {"tokens_per_second": tokens / seconds, "generated_tokens": tokens}


def likelihood_case(options: Any) -> dict[str, Any]:
    """The answer likelihoods' ranking in `options.dtype` against float32 on the device, with
    `options.likelihood_model` or, where none is given, the embedded SmolLM2 (random weights of its shape where it
    cannot load: no gguf package, as on a GPU machine that carries no GGUF; the tiny model's with `--tiny`)."""
    from gaincurate.lab.benchmarks.gpu_models import SMOLLM2, TINY, build_model_folder
    from gaincurate.lab.benchmarks.likelihood_precision import measure

    if options.likelihood_model:
        return {"model": options.likelihood_model} | measure(options.device, options.dtype, options.likelihood_model)
    reason = "--tiny"
    if not options.tiny:
        try:
            return {"model": "embedded SmolLM2-135M"} | measure(options.device, options.dtype)
        except Exception as error:  # the GGUF reader missing or the file absent: random weights of its shape instead
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        shape = TINY["tiny"] if options.tiny else SMOLLM2
        folder = build_model_folder(Path(tmp) / "model", shape, "float32", options.device, options.tokenizer)
        result = measure(options.device, options.dtype, str(folder))
    return {"model": "random weights", "shape": shape, "not_the_embedded_model_because": reason} | result


def path_lines(results: dict) -> list[str]:
    """The rollout and likelihood rows of a run, one line each."""
    lines = []
    rollout = results.get("rollout")
    if rollout and "error" in rollout:
        lines.append(f"rollout: did not run ({rollout['error']})")
    elif rollout:
        vllm = rollout["vllm"]
        beside = f"{vllm['tokens_per_second']:.0f} tok/s" if "tokens_per_second" in vllm else vllm["error"]
        lines.append(
            f"rollout {rollout['prompts']} x {rollout['samples']} x {rollout['max_new_tokens']} tokens: "
            f"{rollout['tokens_per_second']:.0f} tok/s, {rollout['fraction_of_decode_floor']:.1%} of the decode floor "
            f"({rollout['decode_floor_tokens_per_second']:.0f}); vLLM: {beside}"
        )
    likelihood = results.get("likelihood")
    if likelihood:
        lines.append(
            f"likelihood {likelihood['dtype']} vs float32 ({likelihood['model']}, {likelihood['rows']} rows): Spearman "
            f"{likelihood['spearman']:.4f}, largest change {likelihood['largest_change']:.3g} nats against an "
            f"interquartile spread of {likelihood['interquartile_spread']:.3g}"
        )
    return lines
