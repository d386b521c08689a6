"""Scoring throughput against a naive baseline and the forward's compute floor, in one run.

    gaincurate bench scoring --data math_train.json --rows 200 [--out r.json]
    gaincurate bench scoring --data math_train.json --offset 5000 --rows 200 \\
        --threads 1 --compare-dtypes float32,bfloat16,float16,int8 --batch-sweep 256,512,1024,2048

The naive baseline does what the published GAIN-RL scorer does, with its defaults: float32, one prompt
at a time, a full forward through every layer and the LM head (logits), then the O(T^2) cosine matrix
of the hooked hidden states. gaincurate scores the same prompts with the same model as `gaincurate
score` would (`--dtype auto` by default: dtype and batch size measured on this machine): truncated
forward, shared prefix run once, length-bucketed batches, one pass of segment sums.

The floor is the forward's matmul FLOPs over the rate measured in this run for the dtype actually used,
on the model's own linear shapes at the batch size actually used. Fixed costs (model load, tokenizer,
tuning, first batch) are reported apart from the forward. `--compare-dtypes` scores the same prompts
with each forced dtype, and `--batch-sweep` with each forced batch size, in the same process.
`--memory` also measures peak RSS when scoring 500 and 5,000 prompts, in subprocesses.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.settings import at_least, setting

if TYPE_CHECKING:
    from gaincurate.scoring.config import ScoreConfig

_FIXED = ("model_load_seconds", "tokenizer_seconds", "tuning_seconds", "first_batch_seconds")


def naive_scores(
    model, tokenizer, prompts, layer_index: int, inter_weight: float, device: str = "cpu"
) -> tuple[np.ndarray, float]:
    """Published-style scorer: per prompt, full forward with logits, hook, O(T^2) cosine matrix."""
    import torch

    from gaincurate.model import decoder_layers
    from gaincurate.prompts import CONTEXT, QUESTION

    captured = {}
    mlp = decoder_layers(model)[layer_index].mlp
    handle = mlp.register_forward_pre_hook(lambda module, args: captured.__setitem__("h", args[0]))
    scores = []
    start = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            model(input_ids=torch.from_numpy(prompt.input_ids)[None].to(device))  # logits computed, thrown away
            hidden = captured["h"][0].float()
            unit = hidden / hidden.norm(dim=-1, keepdim=True)
            cosine = unit @ unit.T
            labels = torch.from_numpy(prompt.segment_ids).to(device)
            question, context = labels == QUESTION, labels == CONTEXT
            block = cosine[question][:, question]
            n = int(question.sum())
            intra = (block.sum() - block.diagonal().sum()) / (n * (n - 1)) if n > 1 else torch.tensor(float("nan"))
            inter = cosine[question][:, context].mean() if context.any() else torch.tensor(0.0)
            scores.append(float(intra + inter_weight * inter))  # float() waits for the device
    elapsed = time.perf_counter() - start
    handle.remove()
    return np.array(scores), elapsed


def matmul_rate(dtype_name: str, size: int = 1536, repeats: int = 20) -> float:
    """Dense square matmul rate on this machine, FLOP/s (best of repeats): a reference next to the model's shapes."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.min(times))


def model_rate(shapes: dict[str, Any], dtype: str, tokens: int, seconds: float = 2.0) -> float:
    """FLOP/s of the model's own linear shapes in `dtype` on `tokens` tokens: the floor's rate, measured with care."""
    from gaincurate.scoring.dtype import layer_flops_per_token, probe_layer, race

    per_token = race({dtype: (probe_layer(shapes, dtype), tokens)}, budget=seconds, rounds=50)[dtype]
    return layer_flops_per_token(shapes) / per_token


def peak_memory_mb(data: str, rows: int, layer: int) -> float:
    """Peak RSS of a fresh child process that scores `rows` prompts (its own ru_maxrss, in KiB on Linux)."""
    with tempfile.TemporaryDirectory() as out:
        argv = ["gaincurate", "score", data, "--limit", str(rows), "--out", out, "--quiet", "--layer", str(layer)]
        program = (
            "import resource, sys\n"
            "from gaincurate.cli import main\n"
            f"sys.argv = {argv!r}\n"
            "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        done = subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


@dataclass(frozen=True, kw_only=True)
class ScoringRows:
    """What `bench scoring` and `bench profile` share: the rows they score, the model and dtype, the threads."""

    data: str = setting(help="JSON/JSONL prompt file with a 'problem' column.")
    rows: int = setting(200, "Rows to score.", check=at_least(1))
    offset: int = setting(0, "Skip this many rows first.", check=at_least(0))
    model: str | None = setting(None, "Hub id, local folder or .gguf.", shown="the embedded SmolLM2-135M")
    dtype: str = setting("auto", "gaincurate's dtype; auto: measured on this machine.")
    batch_tokens: int | None = setting(None, "Padded tokens per batch.", check=at_least(1), shown="measured")
    threads: int | None = setting(None, "Torch CPU threads.", check=at_least(1), shown="torch's choice")

    def score_config(self, dataset: str) -> ScoreConfig:
        """The `score` settings for the rows written to `dataset`, on the CPU."""
        from gaincurate.scoring.config import ScoreConfig

        # The bench's rows are questions only: no answer column to check.
        return ScoreConfig(dataset=dataset, model=self.model, dtype=self.dtype, device="cpu",
                           batch_tokens=self.batch_tokens, answer_column=None)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ScoringBench(ScoringRows):
    """What one scoring bench measures; `gaincurate bench scoring` takes each field as an option."""

    compare_dtypes: tuple[str, ...] = setting((), "Comma list: also score with each forced dtype.", cli="words")
    batch_sweep: tuple[int, ...] = setting((), "Comma list: also score with each forced batch size.", cli="sizes")
    naive: bool = setting(True, "Run the naive published-style baseline (--no-naive: skip it).", flags=("--no-naive",))
    memory: bool = setting(False, "Also measure peak RSS at 500 and 5,000 rows.", flags=("--memory",))
    memory_layer: int = setting(2, "Site layer of the memory runs.")


def write_rows(data: str, offset: int, rows: int, path: Path) -> None:
    from gaincurate.data import load_rows
    from gaincurate.errors import InputError, MissingColumnError
    from gaincurate.errors import setting as spelled

    try:  # the bench has no column flags: it reads the questions from `problem`, as the bundled sample names them
        selected = load_rows(data, split=None, prompt_column="problem", limit=offset + rows).rows
    except MissingColumnError as missing:
        has = ", ".join(missing.available)
        raise InputError(f"the bench reads the questions from a 'problem' column; {data} has none (it has {has}): "
                         "rename its question column to problem") from None  # fmt: skip
    if offset >= len(selected):
        raise InputError(f"{spelled('offset', offset)} skips every row of {data} ({len(selected)} rows); "
                         f"pass a smaller {spelled('offset')}")  # fmt: skip
    selected = selected.select(range(offset, min(offset + rows, len(selected))))
    path.write_text("".join(json.dumps({"problem": text}) + "\n" for text in selected["problem"]))


@contextmanager
def selected_rows(options: ScoringRows) -> Iterator[Path]:
    """Set torch's CPU threads, then hold the chosen rows in a temporary JSONL file for the bench to score."""
    import torch

    if options.threads:
        # On a shared machine, 2 OpenMP threads fighting other jobs can run several times slower than 1.
        torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "rows.jsonl"
        write_rows(options.data, options.offset, options.rows, data)
        yield data


def _score_once(config: Any, reference: np.ndarray | None) -> dict[str, Any]:
    """One `score` run in a fresh directory: its times, floor, choices and agreement with `reference`."""
    from gaincurate.metrics import spearman
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions
    from gaincurate.scoring.engine import padding_overhead
    from gaincurate.shards import read_scores

    with tempfile.TemporaryDirectory() as out:
        manifest = score(config, RunOptions(out=out, quiet=True))
        scores = read_scores(Path(out))["gc_score"].to_numpy()
    timings, tuning = manifest["timings"], manifest["tuning"]
    result = {
        "dtype": manifest["dtype"],
        "dtype_reason": tuning["dtype"]["reason"],
        "batch_tokens": manifest["config"]["batch_tokens"],
        "seconds": timings["score_seconds"],
        "forward_seconds": timings["forward_seconds"],
        "fraction_of_floor_probe_rate": timings.get("fraction_of_floor"),
        "tokens_through_model": timings["tokens"],
        "padding_overhead": padding_overhead(timings["padded_tokens"], timings["tokens"]),
        **{key: timings.get(key) for key in _FIXED},
        "gates": tuning["dtype"].get("gates", {}),
        "flops_per_token": tuning.get("flops_per_token"),
        "scores": scores,
    }
    if reference is not None:
        result["max_abs_diff_vs_naive"] = float(np.nanmax(np.abs(reference - scores)))
        result["spearman_vs_naive"] = spearman(reference, scores)
    return result


def _naive(source: Any, tokenizer: Any, prompts: list, inter_weight: float) -> tuple[np.ndarray, float, Any]:
    from gaincurate.model import load_model

    model = load_model(source, dtype="float32", device="cpu")  # the published scorer's default
    scores, seconds = naive_scores(model, tokenizer, prompts, model.config.num_hidden_layers - 1, inter_weight)
    return scores, seconds, model.config


def _floor(run: dict[str, Any], shapes: dict[str, Any]) -> dict[str, Any]:
    """The floor of one run at its own dtype and batch size, with the rate measured now, with care."""
    rate = model_rate(shapes, run["dtype"], run["batch_tokens"])
    floor = run["flops_per_token"] * run["tokens_through_model"] / rate
    return {"rate_gflops": rate / 1e9, "floor_seconds": floor, "fraction_of_floor": floor / run["forward_seconds"],
            "fraction_of_floor_wall": floor / run["seconds"]}  # fmt: skip


def run_benchmark(args: ScoringBench, data: str) -> dict[str, Any]:
    import torch

    from gaincurate.model import load_tokenizer, resolve_source
    from gaincurate.model_identity import source_fingerprint
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring import tuning_cache
    from gaincurate.scoring.dtype import layer_flops_per_token

    config = args.score_config(data)
    source = resolve_source(args.model)
    tokenizer = load_tokenizer(source)
    prompts = PromptEncoder(tokenizer, config.prompt_format, config.max_length).encode(
        [json.loads(line)["problem"] for line in Path(data).read_text().splitlines()]
    )
    tokens = sum(len(p.input_ids) for p in prompts)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": tuning_cache.machine(),
        "threads": torch.get_num_threads(),
        "rows": len(prompts),
        "offset": args.offset,
        "prompt_tokens": tokens,
    }
    naive = None
    if args.naive:
        naive, naive_seconds, model_config = _naive(source, tokenizer, prompts, config.inter_weight)
        result["naive_seconds"] = naive_seconds
    ours = _score_once(config, naive)
    shapes = tuning_cache.get("model_shapes", source_fingerprint(source))  # stored by the run above
    ours.update(_floor(ours, shapes))
    result["gaincurate"] = ours
    if naive is not None:
        result["speedup"] = naive_seconds / ours["seconds"]
        # Its floor: every layer and the LM head for every token, at float32's rate on prompt-sized matmuls.
        per_token = layer_flops_per_token(shapes) * shapes["num_layers"]
        per_token += 2 * model_config.hidden_size * model_config.vocab_size
        naive_floor = per_token * tokens / model_rate(shapes, "float32", 256)
        result["naive_fraction_of_floor"] = naive_floor / naive_seconds
    for dtype in args.compare_dtypes:
        forced = _score_once(config.replace(dtype=dtype), naive)
        forced.update(_floor(forced, shapes))
        if naive is not None:
            forced["speedup"] = result["naive_seconds"] / forced["seconds"]
        result.setdefault("forced_dtypes", {})[dtype] = forced
    for size in args.batch_sweep:
        run = _score_once(config.replace(batch_tokens=size, dtype=ours["dtype"]), naive)
        result.setdefault("batch_sweep", {})[str(size)] = {key: run[key] for key in ("seconds", "forward_seconds")}
    result["square_matmul_gflops"] = {dtype: matmul_rate(dtype) / 1e9 for dtype in ("float32", ours["dtype"])
                                      if dtype != "int8"}  # fmt: skip
    return result


def bench_scoring(options: ScoringBench) -> dict[str, Any]:
    """Score `options.rows` rows of `options.data` naively and with gaincurate; times, floors and agreement."""
    with selected_rows(options) as data:
        result = run_benchmark(options, str(data))
    if options.memory:
        result["peak_rss_mb"] = {n: peak_memory_mb(options.data, n, options.memory_layer) for n in (500, 5000)}
        result["memory_layer"] = options.memory_layer
    return result


def result_lines(result: dict[str, Any], indent: str = "") -> list[str]:
    """The result as aligned `key: value` lines, nested sections indented; the per-prompt scores left out."""
    lines = []
    for key, value in result.items():
        if key == "scores":
            continue
        if isinstance(value, dict):
            lines += [f"{indent}{key}:", *result_lines(value, indent + "  ")]
        else:
            shown = f"{value:.4g}" if isinstance(value, float) else value
            lines.append(f"{indent}{key:>30}: {shown}")
    return lines
