"""Dtype and batch size for one scoring run, decided before the model loads, and the compute floor after.

On CPU, `--dtype auto` and an unset `--batch-tokens` are decided by measurement on this machine
(`gaincurate.scoring.dtype`, `.fidelity`, `.batch_size`), cached per machine and torch version
(`gaincurate.scoring.tuning_cache`). A flag the user gave is kept as given. A run resumed in an existing `--out` keeps
the choices recorded there, and a run split into parts (torchrun, `--num-shards`) never measures, since parts that
measured differently would write clashing shards: it takes float32 and 512 tokens unless told otherwise. On CUDA the
dtype is bf16 (fp16 without bf16 support) and the batch what the GPU's free memory holds (`gpu_budget`; a split run's
parts take a fixed 65,536). `resolve_batch_tokens` alone turns an unset `--batch-tokens` into a number.

The decision, its one-line reason and the figures behind it become the manifest's `tuning`; after the
run, `floor_fields` turns them into the fraction of the compute floor at the chosen dtype's measured rate.

When a lossy dtype needs its fidelity gate (a cache miss), the float32 model is loaded here to run it
and handed to the run in `Tuning.model`, so the weights are read once either way.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.model import ModelSource, load_config, resolve_dtype, resolve_layer
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.prompts import PromptEncoder
from gaincurate.scoring import tuning_cache
from gaincurate.scoring.batch_size import choose_batch_tokens, measure_batch_sizes
from gaincurate.scoring.config import ScoreConfig
from gaincurate.scoring.dtype import (
    choose_dtype,
    flops_per_token,
    layer_flops_per_token,
    measure_dtypes,
    model_shapes,
    probe_layer,
    race,
    unavailable,
)

SPLIT_DTYPE, SPLIT_BATCH_TOKENS, GPU_SPLIT_BATCH_TOKENS = "float32", 512, 65_536
DTYPE_SECTION = "dtype_speed"  # paired-round medians; the cache's other sections are not read for the dtype
# Load average per core: a measurement above BUSY_LOAD is re-taken by the first run at or below QUIET_LOAD.
BUSY_LOAD, QUIET_LOAD = 1.0, 0.5


@dataclass(frozen=True)
class Tuning:
    dtype: str
    batch_tokens: int
    record: dict[str, Any]  # the manifest's `tuning`
    model: Any = None  # the float32 model loaded for the fidelity gate, reused by the run
    model_seconds: float = 0.0


@dataclass(frozen=True)
class _Run:
    """What the decisions depend on, passed down together."""

    config: ScoreConfig
    source: ModelSource
    model_fingerprint: str
    encoder: PromptEncoder
    previous: dict[str, Any] | None  # the fingerprint of the run already in --out, if any
    split: bool
    questions: list[str]  # the run's first prompts: the batch-size probe times the engine on them


def tune(
    config: ScoreConfig,
    source: ModelSource,
    model_fingerprint: str,
    device: str,
    encoder: PromptEncoder,
    *,
    previous: dict[str, Any] | None = None,
    split: bool = False,
    questions: list[str] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> Tuning:
    """Decide dtype and batch tokens for a run of `config` on `device`; reports each choice as a stage line.

    `questions`: the run's first prompts (a few hundred are plenty), for the batch-size probe.
    """
    started = time.perf_counter()
    if config.dtype == "int8" and (why := unavailable("int8")):
        raise ConfigError(f"--dtype int8 cannot run here: {why}")
    run = _Run(config, source, model_fingerprint, encoder, previous, split, list(questions or []))
    if not device.startswith("cpu"):
        from gaincurate.scoring.gpu_budget import gpu_batch_tokens

        dtype = config.dtype if config.dtype == "int8" else resolve_dtype(config.dtype, device)
        how = "forced" if config.dtype != "auto" else "device"
        gpu = functools.partial(gpu_batch_tokens, device, dtype, config.max_length, model_config(source))
        record = {
            "dtype": {"chosen": dtype, "how": how, "reason": f"{how} ({device}: not measured)"},
            "batch_tokens": resolve_batch_tokens(config, device, previous, split, gpu),
        }
        progress.stage(f"dtype {dtype}: {record['dtype']['reason']}")
        progress.stage(f"batch tokens {record['batch_tokens']['chosen']}: {record['batch_tokens']['reason']}")
        return Tuning(dtype, record["batch_tokens"]["chosen"], record)
    import torch

    threads = torch.get_num_threads()
    shapes = _shapes(source, model_fingerprint)
    dtype_record, model, model_seconds = _dtype(run, shapes, threads, progress)
    dtype = dtype_record["chosen"]
    progress.stage(f"dtype {dtype}: {dtype_record['reason']}")
    batch_record = resolve_batch_tokens(config, device, previous, split, lambda: _time_batches(run, dtype, threads))
    progress.stage(f"batch tokens {batch_record['chosen']}: {batch_record['reason']}")

    layers = shapes["num_layers"]
    last = resolve_layer(config.layer, layers)
    if config.embed and config.embed_layer is not None:
        last = max(last, resolve_layer(config.embed_layer, layers, "--embed-layer"))
    record = {
        "dtype": dtype_record,
        "batch_tokens": batch_record,
        "threads": threads,
        "flops_per_token": flops_per_token(shapes, last, config.site),
        "rate_flops": _linear_rate(run, shapes, dtype, batch_record["chosen"], threads),
        "seconds": time.perf_counter() - started - model_seconds,
    }
    return Tuning(dtype, batch_record["chosen"], record, model, model_seconds)


model_config = functools.lru_cache(maxsize=4)(load_config)  # the window, shapes and batch probe all read it


def _shapes(source: ModelSource, model_fingerprint: str) -> dict[str, Any]:
    """One decoder layer's linear shapes, from the model's config (cached: a GGUF's config takes seconds)."""
    shapes = tuning_cache.get("model_shapes", model_fingerprint)
    if shapes is None:
        shapes = model_shapes(model_config(source))
        tuning_cache.put("model_shapes", model_fingerprint, shapes)
    return shapes


def _dtype(run: _Run, shapes: dict[str, Any], threads: int, progress: Progress) -> tuple[dict[str, Any], Any, float]:
    """The dtype record (and the float32 model, if the fidelity gate had to load it)."""
    timings, cached = _dtype_timings(run, shapes, threads)
    record = {
        "seconds_per_token": timings["seconds_per_token"],
        "speedup": timings["speedup"],
        "unavailable": timings["unavailable"],
        "measured_under_load": timings["load"],
    }
    config = run.config
    if config.dtype != "auto":
        return {"chosen": config.dtype, "how": "forced", "reason": "forced by --dtype", **record}, None, 0.0
    if run.previous and run.previous.get("dtype"):
        reason = "kept from the run already in --out"
        return {"chosen": run.previous["dtype"], "how": "kept", "reason": reason, **record}, None, 0.0
    if run.split:
        reason = "split run: parts must agree, so none measures; pass --dtype to choose (a single run measures)"
        return {"chosen": SPLIT_DTYPE, "how": "split-default", "reason": reason, **record}, None, 0.0

    gate_key = "|".join(
        [run.model_fingerprint, config.prompt_format.fingerprint(), f"layer={config.layer}", config.site,
         f"w={config.inter_weight}", f"max_length={config.max_length}"]
    )  # fmt: skip
    verdicts = tuning_cache.get("fidelity", gate_key) or {}
    loaded: dict[str, Any] = {}

    def gate(dtype: str) -> dict[str, Any]:
        if dtype not in verdicts:
            if "gate" not in loaded:
                loaded.update(_load_for_gate(run, progress))
            progress.stage(f"fidelity gate: scoring the fixed prompts in float32 and {dtype}")
            verdicts[dtype] = loaded["gate"](dtype)
            tuning_cache.put("fidelity", gate_key, verdicts)
        return verdicts[dtype]

    choice = choose_dtype(timings["seconds_per_token"], gate)
    cached_note = " [measurements cached]" if cached and not loaded else ""
    if timings["load"] > BUSY_LOAD:  # contention can change the ratios themselves (seen: bf16 1.66x quiet, 0.5x busy)
        cached_note += f" [measured under load, {timings['load']:.1f} per core: measured again once quiet]"
    pin = f"; pin it with --dtype {choice.dtype}"
    dtype_record = {"chosen": choice.dtype, "how": "measured", "reason": choice.reason + cached_note + pin, **record}
    dtype_record["gates"] = choice.gates
    return dtype_record, loaded.get("model"), loaded.get("seconds", 0.0)


def _dtype_timings(run: _Run, shapes: dict[str, Any], threads: int) -> tuple[dict[str, Any], bool]:
    """The dtype speeds of this machine, model and thread count, and whether they came from the cache.

    A measurement taken on a busy machine is kept only until a run finds the machine quiet, which then
    measures again: the paired medians resist load, and a quiet measurement is better still.
    """
    key = f"{run.model_fingerprint}|threads={threads}"
    timings = tuning_cache.get(DTYPE_SECTION, key)
    load = tuning_cache.machine_load()
    if timings is not None and not (timings["load"] > BUSY_LOAD and load <= QUIET_LOAD):
        return timings, True
    timings = {**measure_dtypes(shapes), "load": load}
    tuning_cache.put(DTYPE_SECTION, key, timings)
    return timings, False


def _load_for_gate(run: _Run, progress: Progress) -> dict[str, Any]:
    from gaincurate.model import load_model
    from gaincurate.scoring.fidelity import FidelityGate

    progress.stage("loading model (float32, for the fidelity gate; the run reuses it)")
    started = time.perf_counter()
    model = load_model(run.source, dtype="float32", device="cpu")
    seconds = time.perf_counter() - started
    return {"model": model, "seconds": seconds, "gate": FidelityGate(model, run.config, run.encoder)}


def resolve_batch_tokens(
    config: ScoreConfig, device: str, previous: dict[str, Any] | None, split: bool, measure: Callable[[], dict]
) -> dict[str, Any]:
    """Padded tokens per forward batch for a run of `config` on `device`, as the manifest's `tuning` record: the
    `--batch-tokens` given, else the one recorded in `previous` (the fingerprint of the run in --out), else a split
    run's fixed budget (its parts must agree, so none measures), else `measure()` on this device."""
    if config.batch_tokens is not None:
        return {"chosen": config.batch_tokens, "how": "forced", "reason": "forced by --batch-tokens"}
    if previous and previous.get("batch_tokens"):
        return {"chosen": previous["batch_tokens"], "how": "kept", "reason": "kept from the run already in --out"}
    if split:
        chosen = SPLIT_BATCH_TOKENS if device.startswith("cpu") else GPU_SPLIT_BATCH_TOKENS
        reason = "split run: parts must agree, so none measures; pass --batch-tokens to choose"
        return {"chosen": chosen, "how": "split-default", "reason": reason}
    return measure()


def _time_batches(run: _Run, dtype: str, threads: int) -> dict[str, Any]:
    """The CPU's budget: the engine timed at each size on the run's first prompts (cached per machine)."""
    key = f"{run.model_fingerprint}|threads={threads}|{dtype}"
    timings = tuning_cache.get("batch_timings", key)
    cached = timings is not None
    if timings is None:
        if not run.questions:
            return {"chosen": SPLIT_BATCH_TOKENS, "how": "default", "reason": "no prompts to measure on"}
        timings = measure_batch_sizes(model_config(run.source), dtype, run.config, run.encoder, run.questions)
        tuning_cache.put("batch_timings", key, timings)
    size, reason = choose_batch_tokens(timings)
    reason += " [cached]" if cached else ""
    return {"chosen": size, "how": "measured", "reason": reason, "seconds_per_token": timings}


def _linear_rate(run: _Run, shapes: dict[str, Any], dtype: str, batch_tokens: int, threads: int) -> float:
    """FLOP/s of one layer's linears in `dtype` on `batch_tokens` tokens: the floor's rate (cached)."""
    key = f"{run.model_fingerprint}|threads={threads}|{dtype}|{batch_tokens}"
    rate = tuning_cache.get("linear_rates", key)
    if rate is None:
        parts = probe_layer(shapes, dtype)
        rate = layer_flops_per_token(shapes) / race({dtype: (parts, batch_tokens)}, budget=0.3, rounds=10)[dtype]
        tuning_cache.put("linear_rates", key, rate)
    return rate


def floor_fields(tuning: dict[str, Any] | None, timings: dict[str, Any], works: list[dict[str, Any]]) -> dict[str, Any]:
    """Fixed costs apart from the forward, and the fraction of the compute floor at the chosen dtype's rate.

    The floor is matmul FLOPs per token up to the site, times the tokens that went through the model, over
    the rate measured for the chosen dtype and batch size. `fraction_of_floor` compares it with the forward
    after the first batch (which also builds the kernels and runs the shared prefix); `..._wall` with the
    whole scoring loop. Reported for single-process runs only: parts on other machines run at other rates.
    """
    fields: dict[str, Any] = {
        "first_batch_seconds": max(w.get("first_batch_seconds", 0.0) for w in works) if works else 0.0,
        "tokenizer_seconds": (tuning or {}).get("tokenizer_seconds"),
        "tuning_seconds": (tuning or {}).get("seconds"),
    }
    rate = (tuning or {}).get("rate_flops")
    if not rate or len(works) != 1 or not timings.get("tokens"):
        return fields
    work = works[0]
    per_token = tuning["flops_per_token"]
    steady_seconds = work["forward_seconds"] - work.get("first_batch_seconds", 0.0)
    steady_tokens = work["tokens"] - work.get("first_batch_tokens", 0)
    if work["batches"] < 2 or steady_seconds <= 0:
        steady_seconds, steady_tokens = work["forward_seconds"], work["tokens"]
    floor = per_token * timings["tokens"] / rate
    fields.update(
        floor_dtype=tuning["dtype"]["chosen"],
        matmul_rate_gflops=rate / 1e9,
        floor_seconds=floor,
        fraction_of_floor=per_token * steady_tokens / rate / steady_seconds if steady_seconds > 0 else None,
        fraction_of_floor_wall=floor / timings["score_seconds"] if timings.get("score_seconds") else None,
    )
    return fields
