"""`--dtype auto` and `--batch-tokens` by measurement: the choice, the fidelity gate, the cache, the manifest.

Timings and fidelity figures are faked where the property is about the decision, so the tests say the
same thing on every CPU; the tiny `from_config` models run the real measuring code where it is about
plumbing (the cache, the manifest, the int8 conversion).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.scoring import tuning
from gaincurate.scoring.batch_size import choose_batch_tokens
from gaincurate.scoring.config import SCORE_TOLERANCE, RunOptions, ScoreConfig
from gaincurate.scoring.dtype import choose_dtype, flops_per_token, model_shapes, unavailable
from gaincurate.scoring.fidelity import MAX_DIFF_FRACTION, MIN_SPEARMAN, verdict


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test starts from an empty measurement cache of its own, on a machine that reads as quiet."""
    from gaincurate.scoring import tuning_cache

    monkeypatch.setenv("GAINCURATE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tuning_cache, "machine_load", lambda: 0.0)  # the cache's rule depends on the load


def gate_result(passed: bool, spearman: float = 0.999, max_abs_diff: float = 0.001) -> dict:
    return {"passed": passed, "spearman": spearman, "min_spearman": MIN_SPEARMAN, "max_abs_diff": max_abs_diff,
            "bound": 0.01, "prompts": 64}  # fmt: skip


class RecordingGate:
    def __init__(self, passes: dict[str, bool]) -> None:
        self.passes, self.asked = passes, []

    def __call__(self, dtype: str) -> dict:
        self.asked.append(dtype)
        return gate_result(self.passes[dtype], spearman=0.999 if self.passes[dtype] else 0.98)


def test_bf16_faster_and_faithful_is_chosen():
    gate = RecordingGate({"bfloat16": True})
    choice = choose_dtype({"float32": 4e-6, "bfloat16": 1e-6}, gate)
    assert choice.dtype == "bfloat16" and gate.asked == ["bfloat16"]
    assert "4.00x" in choice.reason and "passed the fidelity gate" in choice.reason


def test_bf16_slower_keeps_float32_without_running_the_gate():
    # The AVX512-BF16 Xeon without AMX: flags say bf16, the measurement says 0.58x.
    gate = RecordingGate({"bfloat16": True})
    choice = choose_dtype({"float32": 1e-6, "bfloat16": 1.72e-6}, gate)
    assert choice.dtype == "float32" and gate.asked == []
    assert "bfloat16 0.58x" in choice.reason


def test_a_faster_dtype_that_fails_the_gate_gives_way_to_the_next():
    gate = RecordingGate({"int8": False, "bfloat16": True, "float16": True})
    choice = choose_dtype({"float32": 8e-6, "float16": 6e-6, "bfloat16": 2e-6, "int8": 1e-6}, gate)
    assert choice.dtype == "bfloat16" and gate.asked == ["int8", "bfloat16"]
    assert "int8 ran at 8.00x float32's speed but failed" in choice.reason
    assert set(choice.gates) == {"int8", "bfloat16"}


def test_every_lossy_dtype_failing_leaves_float32():
    gate = RecordingGate({"bfloat16": False, "int8": False})
    choice = choose_dtype({"float32": 4e-6, "bfloat16": 1e-6, "int8": 2e-6}, gate)
    assert choice.dtype == "float32" and gate.asked == ["bfloat16", "int8"]


def test_a_dtype_whose_attention_torch_cannot_run_here_is_no_candidate(monkeypatch):
    """torch's narrowed bfloat16 attention on an AMX CPU (tests/test_score_faults.py has the forced run's one line):
    `--dtype auto` leaves bfloat16 out, and says why."""
    import torch

    attention = torch.nn.functional.scaled_dot_product_attention

    def narrowed(query, *args, **kwargs):
        if query.dtype == torch.bfloat16:
            raise RuntimeError("pack_vnni2 is only supported when avx512 is supported")
        return attention(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", narrowed)
    assert "cannot run bfloat16 attention" in unavailable("bfloat16")
    assert unavailable("float32") is None


def test_gate_verdict_from_fidelity_numbers():
    reference = np.linspace(0.0, 1.0, 64)
    bound = MAX_DIFF_FRACTION * reference.std()
    assert verdict(reference, reference + 0.5 * bound)["passed"]
    moved = reference.copy()
    moved[10] += 1.5 * bound  # ranking still almost intact, but one prompt moved past the bound
    result = verdict(reference, moved)
    assert result["spearman"] >= MIN_SPEARMAN and not result["passed"]
    assert result["max_abs_diff"] == pytest.approx(1.5 * bound)
    # Every run of 4 reversed: no prompt moves past the bound, yet the ranking falls below the minimum.
    reversed_fours = reference.reshape(16, 4)[:, ::-1].reshape(-1)
    result = verdict(reference, reversed_fours)
    assert result["max_abs_diff"] <= result["bound"] and result["spearman"] < MIN_SPEARMAN and not result["passed"]
    unscored = reference.copy()
    unscored[3] = np.nan
    assert not verdict(reference, unscored)["passed"]  # a prompt the candidate cannot score fails it


def test_batch_size_choice_takes_the_fastest():
    assert choose_batch_tokens({"256": 1.0, "512": 0.9, "1024": 0.92, "2048": 1.3})[0] == 512
    assert choose_batch_tokens({"256": 0.5, "512": 0.9, "1024": 1.0, "2048": 1.3})[0] == 256


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt2"])
def test_batch_probe_times_the_engine_on_a_one_layer_copy(architecture, tiny_models):
    from transformers import AutoConfig

    from gaincurate.model import load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.batch_size import measure_batch_sizes, one_layer_model

    folder = tiny_models[architecture]
    model_config = AutoConfig.from_pretrained(folder)
    assert one_layer_model(model_config, "float32").config.num_hidden_layers == 1
    config = ScoreConfig(model=str(folder), device="cpu")
    encoder = PromptEncoder(load_tokenizer(resolve_source(str(folder))), config.prompt_format, config.max_length)
    questions = [f"What is {i} + {i * i}? Show the steps." for i in range(40)]
    timings = measure_batch_sizes(model_config, "float32", config, encoder, questions, sizes=(64, 256), budget=0.1)
    assert set(timings) == {"64", "256"} and all(0 < value < 1 for value in timings.values())


def test_flops_follow_the_model_shapes(tiny_llama):
    from transformers import AutoConfig

    shapes = model_shapes(AutoConfig.from_pretrained(tiny_llama))
    # hidden 48, 4 heads of 12, 2 key/value heads: q, o 48x48; k, v 48x24; gate, up 48x96; down 96x48.
    assert sorted(map(tuple, shapes["linears"])) == [
        (48, 24, 2, False), (48, 48, 2, False), (48, 96, 2, True), (96, 48, 1, True),
    ]  # fmt: skip
    attention, mlp = 2 * (2 * 48 * 48 + 2 * 48 * 24), 2 * 3 * 48 * 96
    assert flops_per_token(shapes, 2, "residual") == 3 * (attention + mlp)
    assert flops_per_token(shapes, 2, "mlp-input") == 3 * (attention + mlp) - mlp


def fake_measurements(monkeypatch, seconds: dict[str, float], passes: dict[str, bool]) -> dict[str, int]:
    """Replace the timing probe and the gate's figures; count how often each runs."""
    calls = {"dtype": 0, "batch": 0, "gate": 0}

    def measure(shapes):
        calls["dtype"] += 1
        speedup = {dtype: seconds["float32"] / value for dtype, value in seconds.items()}
        return {"seconds_per_token": dict(seconds), "speedup": speedup, "rounds": 9, "unavailable": {}, "tokens": 256}

    def measure_batches(model_config, dtype, config, encoder, questions):
        calls["batch"] += 1
        assert questions, "the probe times the run's own prompts"
        return {"256": 2.0, "512": 1.0, "1024": 1.2, "2048": 1.5}

    class Gate:
        def __init__(self, model, config, encoder):
            pass

        def __call__(self, dtype):
            calls["gate"] += 1
            return gate_result(passes[dtype])

    monkeypatch.setattr(tuning, "measure_dtypes", measure)
    monkeypatch.setattr(tuning, "measure_batch_sizes", measure_batches)
    monkeypatch.setattr("gaincurate.scoring.fidelity.FidelityGate", Gate)
    return calls


class Stages:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, message: str) -> None:
        self.lines.append(message)

    def set_total(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


def test_auto_run_records_the_choice_and_a_second_run_does_not_measure(
    tiny_llama, problems_file, tmp_path, monkeypatch
):
    from gaincurate.scoring import score

    calls = fake_measurements(monkeypatch, {"float32": 3e-6, "bfloat16": 1e-6}, {"bfloat16": True})
    config = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), device="cpu")
    stages = Stages()
    manifest = score(config, RunOptions(out=str(tmp_path / "a")), progress=stages)
    assert calls == {"dtype": 1, "batch": 1, "gate": 1}
    assert manifest["dtype"] == "bfloat16" and manifest["config"]["batch_tokens"] == 512
    record = manifest["tuning"]
    assert record["dtype"]["how"] == "measured" and record["dtype"]["gates"]["bfloat16"]["passed"]
    dtype_lines = [line for line in stages.lines if line.startswith("dtype ")]
    assert dtype_lines == [f"dtype bfloat16: {record['dtype']['reason']}"]
    timings = manifest["timings"]
    assert timings["floor_dtype"] == "bfloat16"
    rate = record["rate_flops"]
    assert timings["floor_seconds"] == pytest.approx(record["flops_per_token"] * timings["tokens"] / rate)
    for fixed in ("model_load_seconds", "tokenizer_seconds", "first_batch_seconds", "tuning_seconds"):
        assert timings[fixed] >= 0

    again = score(config, RunOptions(out=str(tmp_path / "b")), progress=Stages())
    assert calls == {"dtype": 1, "batch": 1, "gate": 1}, "the cache answers the second run"
    assert again["dtype"] == "bfloat16" and again["config"]["batch_tokens"] == 512
    assert "[measurements cached]" in again["tuning"]["dtype"]["reason"]


def test_forced_dtype_skips_the_gate_and_a_slower_bf16_keeps_float32(tiny_llama, problems_file, tmp_path, monkeypatch):
    from gaincurate.scoring import score

    calls = fake_measurements(monkeypatch, {"float32": 1e-6, "bfloat16": 2e-6}, {"bfloat16": True})
    base = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), device="cpu", batch_tokens=256)
    manifest = score(base, RunOptions(out=str(tmp_path / "auto")))
    assert manifest["dtype"] == "float32" and calls["gate"] == 0
    forced = score(base.replace(dtype="bfloat16"), RunOptions(out=str(tmp_path / "forced")))
    assert forced["dtype"] == "bfloat16" and forced["tuning"]["dtype"]["how"] == "forced"
    assert forced["config"]["batch_tokens"] == 256 and calls["batch"] == 0 and calls["gate"] == 0


def test_a_rescore_computes_in_the_dtype_the_scores_were_computed_in(tiny_llama, problems_file, tmp_path, monkeypatch):
    """`auto` chose float32 (bf16 measured slower) on a CPU whose flags favour bf16: a re-score of the same weights
    takes the recorded dtype, not `auto` resolved again from the flags (bf16's rounding would move every score). A
    directory scored in int8 re-scores in int8."""
    from gaincurate.scoring import rescore, score
    from gaincurate.shards import read_scores

    fake_measurements(monkeypatch, {"float32": 1e-6, "bfloat16": 2e-6}, {"bfloat16": True})
    monkeypatch.setattr("gaincurate.model.cpu_has_fast_bf16", lambda: True)
    base = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), device="cpu", batch_tokens=256)
    manifest = score(base, RunOptions(out=str(tmp_path / "auto")))
    assert (manifest["dtype"], manifest["config"]["dtype"]) == ("float32", "auto")
    ids = [4, 0, 2]
    stored = read_scores(tmp_path / "auto")["gc_score"].to_numpy()[ids]
    fresh = rescore(tmp_path / "auto", ids, checkpoint=tiny_llama)
    np.testing.assert_allclose(fresh, stored, atol=SCORE_TOLERANCE["float32"].score)
    if importlib.util.find_spec("torchao") is not None:
        score(base.replace(dtype="int8"), RunOptions(out=str(tmp_path / "int8")))
        stored = read_scores(tmp_path / "int8")["gc_score"].to_numpy()[ids]
        np.testing.assert_allclose(rescore(tmp_path / "int8", ids, checkpoint=tiny_llama), stored, atol=1e-4)


def test_split_runs_do_not_measure(tiny_llama, problems_file, tmp_path, monkeypatch):
    from gaincurate.model import resolve_source
    from gaincurate.model_identity import source_fingerprint
    from gaincurate.scoring.config import ScoreConfig as Config

    calls = fake_measurements(monkeypatch, {"float32": 3e-6, "bfloat16": 1e-6}, {"bfloat16": True})
    source = resolve_source(str(tiny_llama))
    config = Config(dataset=str(problems_file), model=str(tiny_llama), device="cpu")
    chosen = tuning.tune(config, source, source_fingerprint(source), "cpu", encoder=None, split=True)
    assert (chosen.dtype, chosen.batch_tokens) == ("float32", 512) and calls["gate"] == 0 and calls["batch"] == 0


def test_gate_runs_on_real_scores(tiny_llama, problems_file, tmp_path):
    """The real gate on the tiny model: float16 scores track float32's (a property of the numbers, not a fake)."""
    from gaincurate.model import load_model, load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.fidelity import GATE_PROMPTS, FidelityGate

    source = resolve_source(str(tiny_llama))
    config = ScoreConfig(model=str(tiny_llama), device="cpu")
    encoder = PromptEncoder(load_tokenizer(source), config.prompt_format, config.max_length)
    model = load_model(source, dtype="float32", device="cpu")
    result = FidelityGate(model, config, encoder)("float16")
    assert result["prompts"] == GATE_PROMPTS and result["spearman"] > 0.9 and result["max_abs_diff"] < 0.05
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.float32"


def test_int8_scores_close_to_float32(tiny_llama, problems_file, tmp_path):
    pytest.importorskip("torchao")
    from gaincurate.scoring import score
    from gaincurate.shards import read_scores

    base = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), device="cpu", batch_tokens=256)
    score(base.replace(dtype="float32"), RunOptions(out=str(tmp_path / "fp32")))
    manifest = score(base.replace(dtype="int8"), RunOptions(out=str(tmp_path / "int8")))
    assert manifest["dtype"] == "int8"
    exact, quantized = (read_scores(tmp_path / name)["gc_score"].to_numpy() for name in ("fp32", "int8"))
    assert not np.array_equal(exact, quantized), "int8 must actually quantize"
    np.testing.assert_allclose(quantized, exact, atol=0.05)


def test_unknown_dtype_is_a_one_line_error():
    with pytest.raises(ConfigError, match="^dtype must be one of auto, float32, bfloat16, float16, int8"):
        ScoreConfig(dtype="float8")


def load_timers(speed: dict[str, float], *, busy: bool, seed: int) -> dict[str, object]:
    """Fake probe timers: seconds of one pass per dtype, on a quiet machine or a busy one.

    Busy: everything runs 2-3x slower and a third of the passes are hit by a burst (up to 4x more), at
    random, whichever dtype happens to be running: what made the old one-off measurement flip.
    """
    rng = np.random.default_rng(seed)

    def timer(dtype: str):
        def one_pass() -> float:
            seconds = 1e-3 / speed[dtype] * (1 + 0.01 * rng.random())
            if busy:
                seconds *= rng.uniform(2.0, 3.0) * (rng.uniform(1.5, 4.0) if rng.random() < 1 / 3 else 1.0)
            return seconds

        return one_pass

    return {dtype: timer(dtype) for dtype in speed}


@pytest.mark.parametrize("speed", [{"float32": 1.0, "bfloat16": 1.54}, {"float32": 1.0, "bfloat16": 0.8}],
                         ids=["bf16-faster", "bf16-slower"])  # fmt: skip
def test_auto_chooses_the_same_dtype_quiet_or_busy(speed):
    """Two runs of the same command, one on a busy machine, choose the same dtype (timings faked)."""
    gate = RecordingGate({"bfloat16": True})
    quiet_choice = measure_and_choose(load_timers(speed, busy=False, seed=0), gate)
    for seed in range(20):
        busy_choice = measure_and_choose(load_timers(speed, busy=True, seed=seed), gate)
        assert busy_choice == quiet_choice, f"seed {seed}"
    assert quiet_choice == ("bfloat16" if speed["bfloat16"] > 1 else "float32")


def measure_and_choose(timers, gate) -> str:
    from gaincurate.scoring.dtype import measure_dtypes

    shapes = {"linears": [[8, 8, 1, False]], "num_layers": 1}
    timings = measure_dtypes(shapes, candidates=tuple(timers), timers=timers)
    return choose_dtype(timings["seconds_per_token"], gate).dtype


def test_a_near_tie_keeps_float32_and_says_what_a_lossy_dtype_needs():
    gate = RecordingGate({"bfloat16": True})
    choice = choose_dtype({"float32": 1.05e-6, "bfloat16": 1e-6}, gate)
    assert choice.dtype == "float32" and gate.asked == []
    assert "bfloat16 1.05x" in choice.reason and "needs 1.10x" in choice.reason


def test_a_measurement_under_load_is_taken_again_once_the_machine_is_quiet(
    tiny_llama, problems_file, tmp_path, monkeypatch
):
    """The cache keeps a busy machine's measurement only until a quiet run re-measures; quiet ones are kept."""
    from gaincurate.scoring import score, tuning_cache

    calls = fake_measurements(monkeypatch, {"float32": 3e-6, "bfloat16": 1e-6}, {"bfloat16": True})
    config = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), device="cpu", batch_tokens=256)
    runs = iter(range(100))
    for load, measured in [(3.0, 1), (2.5, 1), (0.4, 2), (3.0, 2), (0.2, 2)]:
        monkeypatch.setattr(tuning_cache, "machine_load", lambda load=load: load)
        stages = Stages()
        manifest = score(config, RunOptions(out=str(tmp_path / f"run-{next(runs)}")), progress=stages)
        assert calls["dtype"] == measured, f"load {load}"
        assert manifest["dtype"] == "bfloat16"
        line = next(line for line in stages.lines if line.startswith("dtype "))
        assert line.endswith("pin it with --dtype bfloat16")


def test_an_old_one_off_measurement_in_the_cache_is_not_read(tiny_llama, problems_file, tmp_path, monkeypatch):
    """Caches written before paired rounds hold a best-of-one figure taken under whatever load there was."""
    from gaincurate.scoring import score, tuning_cache

    calls = fake_measurements(monkeypatch, {"float32": 3e-6, "bfloat16": 1e-6}, {"bfloat16": True})
    config = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), device="cpu", batch_tokens=256)
    score(config, RunOptions(out=str(tmp_path / "first")))
    path = tuning_cache.cache_path()
    data = json.loads(path.read_text())
    (key,) = data["sections"].pop("dtype_speed")
    slow_bf16 = {"seconds_per_token": {"float32": 1e-6, "bfloat16": 1.37e-6}, "unavailable": {}, "tokens": 256}
    data["sections"]["dtype_timings"] = {key: slow_bf16}  # "bfloat16 0.73x", measured once under load
    path.write_text(json.dumps(data))
    manifest = score(config, RunOptions(out=str(tmp_path / "second")))
    assert calls["dtype"] == 2 and manifest["dtype"] == "bfloat16"
