"""`bench gpu`'s other parts, checked on a CPU: the decode floor's arithmetic, scoring forced to padded rows and put
back, and the lines a run prints. The parts themselves run on a GPU: `gaincurate bench gpu --out FILE`."""

from __future__ import annotations

import pytest

from gaincurate import packed_forward
from gaincurate.lab.benchmarks import gpu_paths
from gaincurate.lab.benchmarks.gpu import table_lines
from gaincurate.scoring import engine


def test_the_decode_floor_is_the_longer_of_reading_the_weights_and_the_steps_matmuls():
    # 3 GB of weights at 3 TB/s: 1 ms a step; 1.5e9 parameters x 2 FLOPs x 64 rows at 1e15 FLOP/s: 0.19 ms.
    assert gpu_paths.decode_floor(3 * 10**9, 15 * 10**8, 64, 3e12, 1e15) == pytest.approx(64 / 1e-3)
    # 4,096 rows a step: the matmuls take 12.3 ms, longer than the weights' read.
    assert gpu_paths.decode_floor(3 * 10**9, 15 * 10**8, 4096, 3e12, 1e15) == pytest.approx(1e15 / 3e9)


def test_padded_rows_turns_packing_off_inside_and_back_on_after():
    before = engine.default_varlen
    with gpu_paths.padded_rows():
        assert engine.default_varlen("any model", "cuda") is None
    assert engine.default_varlen is before


def test_a_run_kept_padded_says_why(monkeypatch):
    timings = {"tokens": 1000, "padded_tokens": 1025}
    assert "GPU" in gpu_paths.why_padded("cpu", "bfloat16", timings)
    assert "half dtype" in gpu_paths.why_padded("cuda", "float32", timings)
    monkeypatch.setattr(packed_forward, "cuda_varlen", lambda: (object(), ""))
    assert gpu_paths.why_padded("cuda", "bfloat16", timings) == "2.5% padding, under the 10% from which rows pack"


def test_the_lines_name_packing_the_loop_the_padded_comparison_the_rollout_floor_and_the_likelihood():
    row = {"model": "qwen2-7b-class", "prompts": "math", "batches": 1, "padding_overhead": 0.0,
           "tokens_per_second": 1e5, "naive_tokens_per_second": 1e4, "speedup_vs_naive": 10.0, "achieved_tflops": 400,
           "fraction_of_roofline": 0.5, "packed": True, "not_packed_because": None, "rows": 8192,
           "loop_tokens_per_second": 6e4, "first_batch_seconds": 0.3,
           "padded": {"tokens_per_second": 5e4, "padding_overhead": 0.27, "largest_score_difference": 1e-3,
                      "tolerance": 1e-2}}  # fmt: skip
    results = {"device": "NVIDIA H100", "dtype": "bfloat16", "matmul_tflops": 800, "models": [row], "cold": None,
               "rollout": {"prompts": 32, "samples": 8, "max_new_tokens": 128, "tokens_per_second": 2000.0,
                           "fraction_of_decode_floor": 0.25, "decode_floor_tokens_per_second": 8000.0,
                           "vllm": {"error": "vllm is not importable here"}},
               "likelihood": {"dtype": "bfloat16", "model": "random weights", "rows": 320, "spearman": 0.999,
                              "largest_change": 0.01, "interquartile_spread": 3.0}}  # fmt: skip
    lines = table_lines(results)
    assert any("padded to buckets: 50000 tok/s (27.0% padding); scores within 0.001" in line for line in lines)
    assert any("8192 rows; the scoring loop 60000 tok/s of wall clock; first batch 0.30 s" in line for line in lines)
    assert any("25.0% of the decode floor (8000); vLLM: vllm is not importable here" in line for line in lines)
    assert any("Spearman 0.9990" in line for line in lines)
    assert not any("rows padded" in line for line in lines)  # packed: no reason to give
    results["rollout"] = {"error": "ConfigError: answer checking needs math-verify"}
    assert any(line.startswith("rollout: did not run (ConfigError") for line in table_lines(results))
