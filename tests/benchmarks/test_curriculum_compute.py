"""The compute account on a smoke bench: every kind of token counted again here from the prompts, the draws and the
tokenizer, its FLOPs and its price from the model's shape by hand, and the report that puts it first."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from gaincurate.lab.benchmarks.curriculum import compute, run_bench
from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED
from gaincurate.lab.benchmarks.curriculum.report import publish, report

CONSOLE = str(Path(sys.executable).parent / "gaincurate")
NAME = "cpu-arith-probe"
ARMS = ["uniform", "probe-likelihood", "oracle"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("compute") / "out"
    summary = run_bench(NAME, out, strategies=ARMS, smoke=True)
    return out, summary


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _lengths(out: Path) -> tuple[dict[int, int], dict[int, int]]:
    """Per gc_id: the prompt's tokens as the chat template renders it, and the reference answer's with its
    end-of-sequence token (what the likelihood teacher-forces after the prompt)."""
    from transformers import AutoTokenizer

    from gaincurate.shards import read_scores

    tokenizer = AutoTokenizer.from_pretrained(out / "assets" / "model")
    pool = _lines(out / "assets" / "pool.jsonl")
    ids = read_scores(out / "assets" / "scores", ["gc_id"]).column("gc_id").to_pylist()
    assert ids == list(range(len(pool)))  # gc_id is the pool's row
    prompts, answers = {}, {}
    for gc_id, row in enumerate(pool):
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": row["problem"]}],
                                                 add_generation_prompt=True, tokenize=False)  # fmt: skip
        prompts[gc_id] = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        answers[gc_id] = len(tokenizer(str(row["answer"]), add_special_tokens=False)["input_ids"]) + 1
    return prompts, answers


def test_every_kind_of_token_adds_up_to_what_the_pair_did(bench):
    out, _ = bench
    config = BUNDLED[NAME].smoke()
    prompts, answers = _lengths(out)
    points = _lines(out / "runs.jsonl")
    drawn = {(line["strategy"], line["seed"]): line["drawn"] for line in _lines(out / "draws.jsonl")}
    assert set(drawn) == {(arm, 0) for arm in ARMS}  # the oracle's from its record, the others' from their run
    for arm in ARMS:
        mine = [p for p in points if p["strategy"] == arm]
        # Each trained rollout's prompt was prefilled once to generate it.
        trained = sum(count * prompts[gc_id] for gc_id, count in drawn[(arm, 0)])
        assert mine[-1]["prompt_tokens"] == config.num_generations * trained
        # GRPO's loss runs the policy over every rollout's prompt and completion, nothing else; so no other prefill
        # (the oracle's sampling of the pool, evaluation) was counted as a rollout's.
        assert all(p["trained_tokens"] == p["prompt_tokens"] + p["tokens"] for p in mine)
        # The scoring pass (the pool's prompts, once) is charged from the start to every arm but the baseline.
        scoring = 0 if arm == config.baseline else sum(prompts.values())
        assert {p["scoring_tokens"] for p in mine} == {scoring}
    # probe's likelihood refresh: after the first epoch (the last point's epoch end comes after it), whose rewards
    # differ and whose groups carry no likelihood yet, exactly the next epoch's prompts, teacher-forced with their
    # answers (ProbeStrategy.wants).
    likelihood = [p for p in points if p["strategy"] == "probe-likelihood"]
    epoch_steps = config.subset_size // config.prompts_per_step
    run = out / "runs" / "probe-likelihood-seed0"
    groups: dict[int, list[float]] = {}
    for line in _lines(run / "feedback-0000.jsonl"):
        groups.setdefault(line["gc_id"], []).append(line["reward"])
    assert len({sum(rewards) / len(rewards) for rewards in groups.values()}) > 1
    following = _lines(run / "history.jsonl")[1]["subset_ids"]
    refreshed = sum(prompts[int(i)] + answers[int(i)] for i in set(following))
    assert [p["refresh_tokens"] for p in likelihood] == [
        refreshed if p["step"] > epoch_steps else 0 for p in likelihood
    ]
    assert all(p["refresh_tokens"] == 0 for p in points if p["strategy"] != "probe-likelihood")
    oracle = json.loads((out / "pairs" / "oracle-seed0.json").read_text())
    assert oracle["costs"]["measure_rollouts"] > 0  # it measured, and none of it is in its tokens


def _brute_force_parameters(model_config: dict) -> int:
    """The matmul weights of a Llama block stack and its LM head, from the config's shape."""
    hidden, heads, kv = model_config["hidden_size"], model_config["num_attention_heads"], model_config[
        "num_key_value_heads"]  # fmt: skip
    head = model_config.get("head_dim") or hidden // heads
    attention = hidden * heads * head * 2 + hidden * kv * head * 2  # q and o, k and v
    mlp = 3 * hidden * model_config["intermediate_size"]  # gate, up, down
    return model_config["num_hidden_layers"] * (attention + mlp) + hidden * model_config["vocab_size"]


def test_flops_and_price_match_a_hand_computation_from_the_models_shape(bench):
    out, summary = bench
    config = BUNDLED[NAME].smoke()
    shape = json.loads((out / "assets" / "model" / "config.json").read_text())
    n = _brute_force_parameters(shape)
    costs = {(line["strategy"], line["seed"]): line["costs"] for line in _lines(out / "costs.jsonl")}
    assert {c[compute.PARAMETERS] for c in costs.values()} == {n}
    account = summary["account"]
    assert account["parameters"] == n and account["decode_batch"] == config.prompts_per_step * config.num_generations
    batch = account["decode_batch"]
    prefill = 2 * n / (989.5e12 * 0.4)  # H100 SXM dense bf16 peak at 40% MFU
    decode = max(prefill, 2 * n / (3.35e12 * 0.6) / batch)  # bf16 weights read once per step of `batch` sequences
    trained = 6 * n / (989.5e12 * 0.4)
    points = _lines(out / "runs.jsonl")
    for arm in ARMS:
        last = [p for p in points if p["strategy"] == arm][-1]
        forward = last["tokens"] + last["prompt_tokens"] + last["scoring_tokens"] + last["refresh_tokens"]
        flops = 2 * n * forward + 6 * n * last["trained_tokens"]  # Python integers: exact
        row = account["arms"][arm]
        assert row["flops"] == float(flops)
        priced = (last["tokens"] * decode + last["trained_tokens"] * trained
                  + (last["prompt_tokens"] + last["scoring_tokens"] + last["refresh_tokens"]) * prefill)  # fmt: skip
        assert math.isclose(row["gpu_seconds"], priced, rel_tol=1e-12)
        refresh = last["refresh_tokens"] * prefill / priced
        assert math.isclose(row["refresh_tokens_share"], refresh, rel_tol=1e-12, abs_tol=1e-15)
        assert row["refresh_tokens_share_max"] == row["refresh_tokens_share"]  # one seed: its highest is its mean
        assert {kind: row[kind] for kind in compute.KINDS} == {kind: float(last[kind]) for kind in compute.KINDS}


def test_the_report_leads_with_the_compute_account_and_re_derives_it(bench, tmp_path):
    out, summary = bench
    publish(out, tmp_path / "results")
    again, table = report(tmp_path / "results")
    kept = json.loads((out / "summary.json").read_text())
    kept.pop("initial_sha256")
    assert json.loads(json.dumps(again)) == kept
    result = subprocess.run([CONSOLE, "bench", "curriculum", "--report", str(tmp_path / "results")],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0 and result.stdout == table == (out / "table.md").read_text()
    # Compute first, with the paired statistics the rollouts have (the same functions, in another unit).
    assert table.index("Compute to the target, the headline") < table.index("Rollouts to the target, second")
    for arm in ("probe-likelihood", "oracle"):
        ratio = summary["strategies"][arm]["vs_baseline"]["compute"]
        assert ratio["n"] == 1 and ratio["p"] == 1.0  # one seed: the sign-flip test cannot say more
        per_seed = summary["strategies"][arm]["to_target"]["compute"]["mean"] / (
            summary["strategies"]["uniform"]["to_target"]["compute"]["mean"])  # fmt: skip
        assert math.isclose(ratio["mean"], per_seed, rel_tol=1e-9)
    assert set(summary["compute_primary"]) == {"probe-likelihood"}  # the declared primary arms that ran
    row = next(line for line in table.splitlines() if line.startswith("| probe-likelihood | 1 |"))
    # The refresh's share of its arm's compute, the figure issue 57 bounds at 10%: only arms that refresh are named.
    share = summary["account"]["arms"]["probe-likelihood"]["refresh_tokens_share"]
    assert f"compute over the run, mean (highest seed): probe-likelihood {share:.1%} ({share:.1%}).\n" in table
    assert f"| {summary['strategies']['probe-likelihood']['vs_baseline']['compute']['mean']:.2f} |" in row


def test_a_bench_without_the_token_counts_says_so_and_keeps_rollouts_first(bench, tmp_path):
    out, _ = bench
    folder = tmp_path / "old"
    publish(out, folder)
    points = [{k: v for k, v in p.items() if k not in compute.RECORDED} for p in _lines(folder / "runs.jsonl")]
    (folder / "runs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    summary, table = report(folder)
    assert "account" not in summary and "compute_primary" not in summary
    assert "compute" not in summary["strategies"]["oracle"]["vs_baseline"]
    assert "Compute account: not recorded." in table and "Compute to the target" not in table


def test_the_demo_note_says_compute_before_rollouts_where_recorded():
    from gaincurate.lab.benchmarks.curriculum.report import demo_note

    versus = {"rollouts": {"mean": 0.5}, "compute": {"mean": 0.62}}
    summary = {
        "baseline": "uniform",
        "strategies": {
            "uniform": {"seeds": [200, 201], "vs_baseline": None, "censored": 0},
            "probe": {"seeds": [200, 201], "vs_baseline": versus, "censored": 0},
        },
    }
    assert "probe needed 0.62x uniform's compute and 0.50x uniform's rollouts to reach the target" in demo_note(
        summary, "demo"
    )
