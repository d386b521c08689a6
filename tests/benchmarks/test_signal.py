"""`signal check`: the rank statistics by hand, the answer gradient against autograd, the --json shape end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import PROBLEMS, write_jsonl

from gaincurate.errors import InputError
from gaincurate.lab.benchmarks.signal import answer_gradient, partial_spearman, rankdata, signal_check, spearman


def test_ranks_and_spearman_by_hand():
    assert rankdata(np.array([10.0, 20.0, 20.0, 30.0])).tolist() == [1.0, 2.5, 2.5, 4.0]
    # d = (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert spearman(np.arange(1.0, 6.0), np.array([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8)
    assert spearman(np.array([1.0, 2.0, np.nan, 4.0]), np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(1.0)
    assert spearman(np.ones(5), np.arange(5.0)) is None


def test_partial_spearman_is_the_partial_correlation_of_ranks():
    rng = np.random.default_rng(0)
    z = rng.normal(size=40)
    x, y = z + rng.normal(size=40), z + rng.normal(size=40)
    r_xy, r_xz, r_yz = spearman(x, y), spearman(x, z), spearman(y, z)
    expected = (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    assert partial_spearman(x, y, z) == pytest.approx(expected)
    assert abs(partial_spearman(x, y, z)) < abs(r_xy)  # the shared z explained most of it
    assert partial_spearman(x, y, np.ones(40)) == pytest.approx(r_xy)


def test_answer_gradient_is_the_answer_tokens_mean_nll_and_its_full_gradient_norm(tiny_llama):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    prompt, answer = [5, 6, 7, 8], [9, 10, 11]
    nll, norm = answer_gradient(model, prompt, answer)
    logits = model(input_ids=torch.tensor([prompt + answer])).logits[0]
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    # Token t is predicted at position t - 1; only the answer's tokens count.
    expected = -torch.stack([log_probs[len(prompt) - 1 + k, token] for k, token in enumerate(answer)]).mean()
    grads = torch.autograd.grad(expected, [p for p in model.parameters()], allow_unused=True)
    expected_norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
    assert nll == pytest.approx(float(expected.detach()), rel=1e-5)
    assert norm == pytest.approx(expected_norm, rel=1e-4)
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def scored(tiny_llama, tmp_path_factory):
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    root = tmp_path_factory.mktemp("signal")
    data = write_jsonl(root / "problems.jsonl", PROBLEMS)
    config = ScoreConfig(dataset=str(data), model=str(tiny_llama), dtype="float32", device="cpu", backend="torch",
                         system_prompt="Solve it.", few_shot=())  # fmt: skip
    score(config, RunOptions(out=str(root / "scores"), quiet=True))
    return root / "scores", data


def test_signal_check_json_shape(scored):
    scores, data = scored
    result = signal_check(scores, str(data))
    assert set(result) == {"rows", "spearman", "partial_spearman_score_given_length"}
    assert set(result["spearman"]) == {"score", "question_tokens", "difficulty", "nll"}
    assert result["rows"] == len(PROBLEMS) - 1  # "7" has one question token: no score, left out
    assert all(r is None or -1 <= r <= 1 for r in result["spearman"].values())
    assert result["spearman"]["difficulty"] is not None
    json.dumps(result)
    sample = signal_check(scores, str(data), rows=4, seed=1)
    assert sample["rows"] == 4
    assert signal_check(scores, str(data), rows=4, seed=1) == sample


def test_signal_check_reads_the_scores_table_without_data_and_refuses_the_wrong_data(scored, tmp_path):
    scores, data = scored
    assert signal_check(scores)["rows"] == len(PROBLEMS) - 1
    no_difficulty = write_jsonl(tmp_path / "plain.jsonl", [{k: v for k, v in p.items() if k != "difficulty"}
                                                           for p in PROBLEMS])  # fmt: skip
    assert signal_check(scores, str(no_difficulty))["spearman"]["difficulty"] is None
    other = write_jsonl(tmp_path / "other.jsonl", [dict(p, problem=p["problem"] + "!") for p in PROBLEMS])
    with pytest.raises(InputError, match="not the dataset"):
        signal_check(scores, str(other))


def console(*args: object) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    command = [str(Path(sys.executable).with_name("gaincurate")), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env={**environment, "OMP_NUM_THREADS": "1"})


def test_a_named_difficulty_column_that_is_missing_or_not_numeric_and_too_few_prompts_are_one_line(scored, tmp_path):
    """The default difficulty column may be absent; one the user names may not. Under 3 prompts no Spearman exists:
    refused before the model loads."""
    scores, _ = scored
    data = write_jsonl(tmp_path / "kinds.jsonl", [dict(p, kind=f"kind {p['difficulty']}") for p in PROBLEMS])
    for column, fault in (("nope", "no such column"), ("kind", "not a numeric column")):
        done = console("signal", "check", scores, "--data", data, "--difficulty-column", column)
        said = f"gaincurate: error: --difficulty-column {column}: {fault}; name one of the numeric columns (answer, "
        assert (done.returncode, done.stderr.strip()) == (1, said + "difficulty)"), done.stderr
    answered = [dict(p, answer=p["answer"] if i < 2 else "") for i, p in enumerate(PROBLEMS)]
    two = write_jsonl(tmp_path / "two.jsonl", answered)
    done = console("signal", "check", scores, "--data", two)
    said = f"{scores} has 2 prompts with an answer and a score; Spearman needs 3 or more: score a larger set, or give "
    assert (done.returncode, done.stderr.strip()) == (1, f"gaincurate: error: {said}the answers it lacks (--data)")
