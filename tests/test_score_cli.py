"""`gaincurate score` and `show` end to end on a tiny model: files, resume, errors, flags."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
from helpers import PROBLEMS, run_cli, score_in_process, write_jsonl

from gaincurate.shards import read_manifest, read_scores


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def shard_bytes(folder: Path) -> dict[str, str]:
    return {name: digest for name, digest in snapshot(folder).items() if name.startswith("shard-")}


def base_args(model: Path, out: Path) -> list[str]:
    return ["--model", str(model), "--out", str(out), "--dtype", "float32", "--device", "cpu", "--quiet"]


def test_score_writes_shards_other_tools_read(tiny_llama, problems_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores"
    code, stdout, _ = run_cli(["score", str(problems_file), *base_args(tiny_llama, out), "--shard-rows", "3"],
                              monkeypatch, capsys)  # fmt: skip
    assert code == 0
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["rows"] == len(PROBLEMS)
    assert manifest["shards"] == ["shard-00000.arrow", "shard-00001.arrow", "shard-00002.arrow"]
    assert "spearman_score_vs_question_tokens" in manifest["diagnostics"]
    assert "Spearman" in stdout
    # Every shard opens with datasets and pyarrow, with input columns carried through.
    first = datasets.Dataset.from_file(str(out / "shard-00000.arrow"))
    assert first["problem"] == [p["problem"] for p in PROBLEMS[:3]]
    assert set(first.column_names) >= {"problem", "answer", "difficulty", "gc_id", "gc_score", "gc_truncated"}
    with pa.memory_map(str(out / "shard-00001.arrow")) as source:
        assert pa.ipc.open_stream(source).read_all()["gc_id"].to_pylist() == [3, 4, 5]
    table = read_scores(out)
    assert table["gc_id"].to_pylist() == list(range(len(PROBLEMS)))
    assert table.schema.field("gc_question_tokens").type == pa.int32()
    # The one-token question is kept and flagged, not dropped.
    assert manifest["diagnostics"]["status_counts"]["one_question_token"] == 1


def test_score_reports_its_stages_on_stderr_unless_quiet(tiny_llama, problems_file, tmp_path, monkeypatch, capsys):
    loud = [a for a in base_args(tiny_llama, tmp_path / "loud") if a != "--quiet"]
    code, stdout, stderr = run_cli(["score", str(problems_file), *loud], monkeypatch, capsys)
    assert code == 0 and "loading model" in stderr and "loading model" not in stdout
    code, _, stderr = run_cli(["score", str(problems_file), *base_args(tiny_llama, tmp_path / "quiet")],
                              monkeypatch, capsys)  # fmt: skip
    assert code == 0 and "loading model" not in stderr


def test_show_json_and_against(tiny_llama, problems_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores"
    run_cli(["score", str(problems_file), *base_args(tiny_llama, out)], monkeypatch, capsys)
    code, stdout, _ = run_cli(["show", str(out), "--json", "--against", "difficulty", "--top", "2"],
                              monkeypatch, capsys)  # fmt: skip
    assert code == 0
    summary = json.loads(stdout)
    assert set(summary["spearman"]) == {"question_tokens", "difficulty"}
    assert len(summary["top"]) == 2 and summary["top"][0]["score"] >= summary["top"][1]["score"]
    assert summary["rows"] == len(PROBLEMS)
    code, stdout, _ = run_cli(["show", str(out), "--against", "difficulty"], monkeypatch, capsys)
    assert code == 0 and "Highest concentration" in stdout and "difficulty" in stdout
    assert "trained first" not in stdout  # the ranking is described; which prompts train is the strategy's


def test_rerun_resumes_and_equals(tiny_llama, problems_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores"
    args = ["score", str(problems_file), *base_args(tiny_llama, out), "--shard-rows", "2"]
    run_cli(args, monkeypatch, capsys)
    before = shard_bytes(out)
    (out / "shard-00002.arrow").unlink()
    code, _, _ = run_cli(args, monkeypatch, capsys)
    assert code == 0
    assert read_manifest(out)["timings"]["shards_resumed"] == 3
    assert shard_bytes(out) == before


def test_overwrite_starts_over(tiny_llama, problems_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores"
    run_cli(["score", str(problems_file), *base_args(tiny_llama, out)], monkeypatch, capsys)
    code, _, err = run_cli(["score", str(problems_file), *base_args(tiny_llama, out), "--layer", "1", "--overwrite"],
                           monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    assert read_manifest(out)["layer"] == 1


def test_debias_length_ranks_by_residual(tiny_llama, problems_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "scores"
    run_cli(["score", str(problems_file), *base_args(tiny_llama, out), "--debias", "length"], monkeypatch, capsys)
    manifest = read_manifest(out)
    assert manifest["debias"]["method"] == "length"
    assert abs(manifest["diagnostics"]["spearman_debiased_vs_question_tokens"]) < 0.6


def test_debias_on_a_complete_folder_re_ranks_without_the_model_and_keeps_the_scoring_pass_timings(
    tiny_llama, problems_file, tmp_path
):
    """Through the console script. The model's weights are made unreadable after scoring (same size and time, so the
    same fingerprint): the re-rank succeeds only because it never loads them."""
    import shutil

    model, out = shutil.copytree(tiny_llama, tmp_path / "model"), tmp_path / "scores"
    score_in_process([problems_file, *base_args(model, out)])
    before, shards = read_manifest(out), shard_bytes(out)
    weights = model / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"x" * stat.st_size)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    args = ["score", problems_file, *base_args(model, out)[:-1], "--debias", "length"]  # not --quiet: what users see
    done = run_gaincurate_console(args)
    assert done.returncode == 0, done.stderr
    after = read_manifest(out)
    assert shard_bytes(out) == shards and after["checksums"] == before["checksums"]
    assert {k: v for k, v in after["timings"].items() if k != "debias_seconds"} == before["timings"]
    assert after["timings"]["debias_seconds"] >= 0 and after["config"]["debias"] == "length"
    raw = after["diagnostics"]["spearman_score_vs_question_tokens"]
    debiased = after["diagnostics"]["spearman_debiased_vs_question_tokens"]
    assert raw == before["diagnostics"]["spearman_score_vs_question_tokens"] and after["debias"]["method"] == "length"
    [line] = [line for line in done.stdout.splitlines() if line.startswith("Re-ranked")]
    assert "without scoring or loading the model" in line and "--debias length" in line
    assert line.endswith(f"Spearman(score, question tokens) = {raw:+.3f} raw, {debiased:+.3f} debiased.")
    assert "loading model" not in done.stderr

    again = run_gaincurate_console(["score", problems_file, *base_args(model, out)])  # undone the same way
    assert again.returncode == 0, again.stderr
    assert read_manifest(out)["debias"] is None and shard_bytes(out) == shards


def run_gaincurate_console(args: list[object]) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("gaincurate")), *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    "case",
    ["missing-file", "corrupt-file", "missing-column", "missing-model", "config-clash", "bad-few-shot", "foreign-dir"],
)
def test_user_errors_are_one_line_and_leave_disk_untouched(case, tiny_llama, problems_file, tmp_path, monkeypatch,
                                                           capsys):  # fmt: skip
    out = tmp_path / "scores"
    dataset, extra = str(problems_file), []
    if case == "config-clash":
        run_cli(["score", dataset, *base_args(tiny_llama, out)], monkeypatch, capsys)
        extra = ["--layer", "1"]
    elif case == "foreign-dir":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "missing-file":
        dataset = str(tmp_path / "nope.jsonl")
    elif case == "corrupt-file":
        dataset = str(tmp_path / "bad.parquet")
        Path(dataset).write_bytes(b"not a parquet file at all")
    elif case == "missing-column":
        extra = ["--prompt-column", "question"]
    elif case == "bad-few-shot":
        (tmp_path / "shots.json").write_text('[{"question": "q"}]')
        extra = ["--few-shot", str(tmp_path / "shots.json")]
    model = tmp_path / "no-such-model" if case == "missing-model" else tiny_llama
    before = snapshot(tmp_path)

    code, stdout, err = run_cli(["score", dataset, *base_args(model, out), *extra], monkeypatch, capsys)

    assert code == 1
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gaincurate: error: "), err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before
    expected = {
        "missing-file": "does not exist", "corrupt-file": "cannot read", "missing-column": "available: problem",
        "missing-model": "does not exist", "config-clash": "--overwrite", "bad-few-shot": "few-shot",
        "foreign-dir": "not empty",
    }[case]  # fmt: skip
    assert expected in lines[0]


def test_sigkill_mid_run_then_rerun_equals_uninterrupted(tiny_llama, tmp_path):
    rows = [{"problem": f"{p['problem']} Then add {i} to the result and double it.", "answer": p["answer"]}
            for i in range(60) for p in PROBLEMS[:4]]  # fmt: skip
    dataset = write_jsonl(tmp_path / "many.jsonl", rows)
    command = [sys.executable, "-m", "gaincurate", "score", str(dataset), "--shard-rows", "8", "--batch-tokens", "256"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"

    process = subprocess.Popen([*command, *base_args(tiny_llama, killed_out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(killed_out.glob("shard-*.arrow"))) < 4:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(list(killed_out.glob("shard-*.arrow")))
    assert 4 <= written < 30, "the kill must land mid-run"
    assert not read_manifest(killed_out)["complete"]

    subprocess.run([*command, *base_args(tiny_llama, killed_out)], env=env, check=True, capture_output=True)
    score_in_process([*command[4:], *base_args(tiny_llama, clean_out)])  # the reference; its start is not under test
    assert read_manifest(killed_out)["timings"]["shards_resumed"] >= 4
    assert read_scores(killed_out)["gc_id"].to_pylist() == list(range(len(rows)))
    assert shard_bytes(killed_out) == shard_bytes(clean_out)


@pytest.mark.parametrize("out", ["-o2", "my scores é"])
def test_the_next_hint_runs_as_pasted(out, tiny_llama, problems_file, tmp_path):
    """A leading dash (`show -o2` would read an option) and a space each survive the paste."""
    console = str(Path(sys.executable).with_name("gaincurate"))
    scored = subprocess.run([console, "score", str(problems_file), "--model", str(tiny_llama), f"--out={out}",
                             "--dtype", "float32", "--device", "cpu", "--quiet"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    hint = scored.stdout.splitlines()[-1]
    assert hint.startswith("Next: gaincurate "), hint
    pasted = subprocess.run([console, *shlex.split(hint.removeprefix("Next: gaincurate "))], capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
