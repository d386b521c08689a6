"""`gaincurate verl export`, the full prompt set verl's one-launch curriculum and 0.5-0.7.1 sampler pick from,
through the real console script: what it writes, and its one-line refusal.
"""

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from schedule_helpers import write_scores

from gaincurate.integrations.verl.sampler import export_prompts


def gaincurate(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("gaincurate")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=600)


def test_export_writes_every_prompt_as_the_library_does(tmp_path):
    scores = write_scores(tmp_path / "scores")
    out = tmp_path / "all.parquet"
    result = gaincurate("verl", "export", "--scores", str(scores), "--out", str(out), "--data-source", "openai/gsm8k")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    table = pq.read_table(out)
    assert table.column("gc_id").to_pylist() == list(range(table.num_rows))
    assert set(table.column("data_source").to_pylist()) == {"openai/gsm8k"}
    assert out.read_bytes() == export_prompts(scores, tmp_path / "again.parquet", "openai/gsm8k").read_bytes()


def test_export_of_a_missing_scores_directory_is_one_line(tmp_path):
    result = gaincurate("verl", "export", "--scores", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a.parquet"))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("gaincurate: error: ") and "nowhere" in line
    assert not (tmp_path / "a.parquet").exists()


def test_an_out_path_that_is_a_folder_or_under_a_file_is_one_line(tmp_path):
    scores = write_scores(tmp_path / "scores")
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    for out, why in [(tmp_path / "folder", "it is a folder"), (tmp_path / "file" / "a.parquet", "a file stands where")]:
        result = gaincurate("verl", "export", "--scores", str(scores), "--out", str(out))
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("gaincurate: error: ") and why in line and line.endswith("pick another path"), line
