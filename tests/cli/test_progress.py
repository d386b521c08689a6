"""Progress on stderr: a plain line every 30 s when stderr is not a terminal, a rich bar on one, nothing when quiet."""

from __future__ import annotations

import fcntl
import io
import json
import os
import struct
import subprocess
import sys
import termios

import pyarrow.parquet as pq
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


# A GGUF's first conversion as `gaincurate.model` runs it: the stage line, then transformers' plain tqdm bar.
CONVERSION = """
import sys
from gaincurate.cli.progress import setup_logging
setup_logging(sys.argv[1] == "quiet")
from tqdm.auto import tqdm
from gaincurate.model import ModelSource, _from_gguf

class Converted:
    def save_pretrained(self, folder):
        pass

def convert():
    for _ in tqdm(range(3), desc="Converting and de-quantizing GGUF tensors..."):
        pass
    return Converted()

_from_gguf(ModelSource("gguf", sys.argv[2], "m.gguf", "m.gguf"), "model-float32", convert, None)
"""


def stderr_of(program: str, *args: str, terminal: bool, env: dict[str, str]) -> str:
    """What `python -c program args` writes to its stderr: a pipe, or a pseudo-terminal with `terminal`."""
    leader, follower = os.openpty() if terminal else (None, subprocess.PIPE)
    if terminal:  # 80 columns: tqdm draws no bar on a terminal of width 0, a new one's
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    result = subprocess.run([sys.executable, "-c", program, *args], stderr=follower, env=env, text=True, check=True)
    if not terminal:
        return result.stderr
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end is closed: all is read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks).decode()


@pytest.mark.parametrize("quiet", [False, True], ids=["loud", "quiet"])
@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_other_libraries_bars_only_on_a_terminal_and_never_when_quiet(quiet, terminal, tmp_path):
    """The embedded model's GGUF conversion is plain tqdm. Off a terminal (Slurm, nohup) its carriage-return redraws
    would land in the log: a stage line says what runs instead. `--quiet` silences both, on a terminal too."""
    drop = ("TQDM_DISABLE", "TORCH_LOGS", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env["GAINCURATE_CACHE_DIR"] = str(tmp_path / "cache")
    (tmp_path / "m.gguf").write_bytes(b"GGUF" + bytes(60))
    stderr = stderr_of(CONVERSION, "quiet" if quiet else "loud", str(tmp_path), terminal=terminal, env=env)
    if quiet:
        assert stderr == ""
    elif terminal:
        assert "de-quantizing GGUF tensors" in stderr
    else:
        assert "\r" not in stderr and "de-quantizing" not in stderr, stderr
        assert "converting the GGUF's model-float32 once; later runs read the copy" in stderr, stderr


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


def test_schedule_step_loading_a_checkpoint_prints_nothing_when_quiet(scored, tiny_llama, gaincurate, tmp_path):
    """The likelihood refresh loads the checkpoint behind transformers' "Loading weights" bar: `--quiet` and
    `--json` leave stderr empty all the same."""
    unset = {key: None for key in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    assert gaincurate("schedule", "init", "--scores", scored, "--run", "run", "--subset-size", "4").returncode == 0
    assert gaincurate("schedule", "step", "--run", "run", "--quiet").returncode == 0
    for epoch, flag in enumerate(("--quiet", "--json")):
        ids = pq.read_table(tmp_path / f"run/epoch-{epoch:04d}.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
        feedback = tmp_path / f"feedback-{epoch}.jsonl"  # pass rates that differ: the likelihood is measured then
        feedback.write_text("".join(json.dumps({"gc_id": i, "reward": float(k <= i % 3)}) + "\n"
                                    for i in ids for k in range(4)))  # fmt: skip
        step = ("schedule", "step", "--run", "run", "--feedback", feedback, "--checkpoint", tiny_llama, flag)
        stepped = gaincurate(*step, env=unset)
        assert stepped.returncode == 0 and stepped.stderr == "", stepped.stderr
    history = json.loads(gaincurate("schedule", "status", "--run", "run", "--json").stdout)["history"]
    assert [("rescore_s" in line["timings"]) for line in history] == [True, True]  # both loaded the checkpoint


@pytest.mark.parametrize("quiet", [False, True], ids=["", "quiet"])
def test_off_a_terminal_a_log_record_is_one_line_however_long(quiet):
    """A log file or a pipe gets `WARNING message` on one line (rich would wrap it at 80 columns, padded); --quiet
    gets nothing."""
    said = "x" * 150
    script = (
        "import logging\nfrom gaincurate.cli.progress import setup_logging\n"
        f"setup_logging({quiet})\nlogging.getLogger('gaincurate').warning({said!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ("" if quiet else f"WARNING {said}\n"), done.stderr
