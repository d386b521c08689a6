"""`bench gpu --liger` scores each case again without Liger-Kernel and says how far its kernels moved the scores,
against the tolerance the scores promise. Liger needs a GPU; here its patch is stood in for on CPU by nothing (the
same scores) and by a small change of the weights (other scores), so the comparison itself is what is tested. The
Liger run gets a process of its own (its patch holds for the whole process); the stand-in runs in this one."""

from __future__ import annotations

import pytest

from gaincurate.lab.benchmarks.gpu import GpuBench, bench_gpu, table_lines


def _run(monkeypatch, patch) -> dict:
    from gaincurate import forward_kernels
    from gaincurate.lab.benchmarks import gpu

    monkeypatch.setattr(gpu, "warm_score_apart", gpu.warm_score)
    monkeypatch.setattr(forward_kernels, "check_liger", lambda device: None)
    monkeypatch.setattr(forward_kernels, "apply_liger", patch)
    options = GpuBench(device="cpu", dtype="float32", tiny=True, rows=6, naive_rows=2, prompt_tokens=32, liger=True)
    return bench_gpu(options)


@pytest.mark.slow
def test_the_same_forward_scores_alike_and_a_changed_one_is_caught(monkeypatch):
    import torch

    case = _run(monkeypatch, lambda model, device: None)["models"][0]
    assert case["padding_overhead"] == 0.0  # a CPU pads no row, and the shared prefix counts on both sides
    same = case["liger_against_plain"]
    assert same["max_abs_score_diff"] == 0.0 and same["within"] is True and same["spearman"] == pytest.approx(1.0)
    assert same["speedup"] > 0 and same["tolerance"] == 1e-5

    def nudge(model, device):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1.05)

    results = _run(monkeypatch, nudge)
    moved = results["models"][0]["liger_against_plain"]
    assert moved["max_abs_score_diff"] > moved["tolerance"] and moved["within"] is False
    assert any("BEYOND it" in line for line in table_lines(results))


@pytest.mark.slow
def test_a_run_in_a_process_of_its_own_scores_what_this_process_would(tmp_path):
    import json

    from gaincurate.lab.benchmarks import gpu
    from gaincurate.scoring.config import ScoreConfig

    folder = gpu.build_model_folder(tmp_path / "model", gpu.TINY["tiny"], "float32")
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in gpu.prompts_of(gpu.LONG, 6, 32)))
    config = ScoreConfig(dataset=str(data), model=str(folder), dtype="float32", device="cpu", max_length=64,
                         answer_column=None)  # fmt: skip

    apart = gpu.warm_score_apart(config, tmp_path / "apart")
    gpu.warm_score(config, tmp_path / "here")

    assert apart["timings"]["tokens"] > 0
    assert gpu.score_agreement(tmp_path / "apart", tmp_path / "here", "float32")["max_abs_score_diff"] == 0.0
