"""Progress on stderr: a plain line every 30 s when stderr is not a terminal, a rich bar on one, nothing when quiet."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from gaincurate.cli.progress import RowProgress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_without_a_terminal_one_plain_line_every_30_seconds():
    clock, stream = Clock(), io.StringIO()
    with RowProgress("scoring", quiet=False, stream=stream, terminal=False, clock=clock) as progress:
        progress.stage("loading model")
        progress.set_total(5000)
        progress.advance(1000)  # a resumed run's finished shards: done at once, not counted in rows/s
        for _ in range(10):  # 100 rows every 5 s: 20 rows/s
            clock.now += 5
            progress.advance(100)
    assert stream.getvalue().splitlines() == [
        "loading model",
        "scoring: 1,600/5,000 rows (32%), 20.0 rows/s, ETA 2m50s",  # at 30 s: (5000 - 1600) / 20 = 170 s
    ]


def test_a_second_total_starts_a_new_count():
    clock, stream = Clock(), io.StringIO()
    with RowProgress("bench", quiet=False, stream=stream, terminal=False, clock=clock) as progress:
        progress.set_total(1000)  # the bench's warm start
        for _ in range(10):
            clock.now += 10
            progress.advance(100)
        progress.set_total(640)  # then its pairs: 1,160/640 before this fix
        for _ in range(4):
            clock.now += 10
            progress.advance(40)
    assert stream.getvalue().splitlines()[-1] == "bench: 80/640 rows (12%), 4.0 rows/s, ETA 2m20s"
    bar = io.StringIO()
    with RowProgress("bench", quiet=False, stream=bar, terminal=True) as progress:
        progress.set_total(10)
        progress.advance(10)
        progress.set_total(8)
        progress.advance(2)
    assert "2/8" in bar.getvalue()


def test_quiet_prints_nothing_not_even_stages():
    clock, stream = Clock(), io.StringIO()
    with RowProgress("scoring", quiet=True, stream=stream, terminal=False, clock=clock) as progress:
        progress.stage("loading model")
        progress.set_total(10)
        clock.now += 60
        progress.advance(10)
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_with_rate_and_eta():
    stream = io.StringIO()
    with RowProgress("scoring", quiet=False, stream=stream, terminal=True) as progress:
        progress.stage("loading model")
        progress.set_total(10)
        progress.advance(4)
    output = stream.getvalue()
    assert output.startswith("loading model\n") and "scoring" in output and "4/10" in output and "ETA" in output


def test_quiet_silences_other_libraries_bars():
    """The embedded GGUF model's conversion bar is plain tqdm; `--quiet` must silence it too."""
    program = (
        "from gaincurate.cli.progress import setup_logging\n"
        "setup_logging({quiet})\n"
        "from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(3), desc='Converting and de-quantizing GGUF tensors'): pass\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("TQDM_DISABLE", "TORCH_LOGS")}
    loud = subprocess.run([sys.executable, "-c", program.format(quiet=False)], capture_output=True, text=True, env=env)
    quiet = subprocess.run([sys.executable, "-c", program.format(quiet=True)], capture_output=True, text=True, env=env)
    assert "GGUF" in loud.stderr
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_score_prints_its_stage_lines_on_a_pipe(tiny_llama, problems_file, gaincurate):
    """Nothing when quiet: the next test, through the same console script."""
    common = ["score", problems_file, "--model", tiny_llama, "--device", "cpu", "--dtype", "float32"]
    loud = gaincurate(*common, "--out", "loud")
    assert loud.returncode == 0 and "loading model" in loud.stderr.splitlines()


@pytest.mark.slow
def test_quiet_score_with_the_embedded_gguf_model_prints_nothing(gaincurate):
    """The embedded model is a GGUF file: transformers converts it behind a tqdm bar that `--quiet` must silence.
    Not a stage line, no bar, no library's message: stderr stays empty."""
    result = gaincurate(
        "score", "--limit", "4", "--out", "s", "--quiet", env={"TQDM_DISABLE": None, "TORCH_LOGS": None}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "Scored 4 rows" in result.stdout
