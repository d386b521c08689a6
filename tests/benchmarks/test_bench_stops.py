"""Ctrl-C stops a bench every time, through the real console script: a KeyboardInterrupt that Python drops inside a
`__del__` is raised again at the next step, and with workers the queued pairs never start and the workers go too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gaincurate.lab.benchmarks.curriculum.interrupts import raise_if_stopped, stops_noted
from gaincurate.supervisor import group_alive

INTERRUPTED = "gaincurate: interrupted; finished work is kept: run the same command again to resume"
SMOKE = ["bench", "curriculum", "--bench", "cpu-arith", "--smoke", "--strategies", "uniform,length", "--quiet"]

# The console script's `main`, with datasets' Dataset.__del__ sending this process a SIGINT the first time it runs
# once the first pair trains: the handler then raises inside `__del__`, where Python drops the exception.
DROPPED = """
import os, signal, sys
import datasets
original, training, fired = datasets.Dataset.__del__, sys.argv[1], []
def deleted(self):
    if not fired and os.path.isdir(training):
        fired.append(True)
        print("SIGINT inside Dataset.__del__", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
    original(self)
datasets.Dataset.__del__ = deleted
from gaincurate.cli import main
sys.argv = ["gaincurate", *sys.argv[2:]]
main()
"""


def _default_signals() -> None:
    """The child handles SIGINT as a terminal's foreground job does, whatever pytest was started with."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _environment() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "GAINCURATE_DEBUG"}, "OMP_NUM_THREADS": "1"}


def test_a_ctrl_c_python_drops_inside_a_del_still_stops_the_bench(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-c", DROPPED, str(out / "work" / "uniform-seed0"), *SMOKE, "--seeds", "0-0",
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(), preexec_fn=_default_signals,
                          timeout=300)  # fmt: skip
    assert "SIGINT inside Dataset.__del__" in done.stderr, done.stderr[-2000:]
    assert done.returncode == 130, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-2000:]
    assert not (out / "pairs" / "length-seed0.json").exists()  # the bench did not train on


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process group through /proc")
def test_a_ctrl_c_with_workers_cancels_the_queued_pairs_and_stops_the_workers(tmp_path):
    out = tmp_path / "out"
    command = [str(Path(sys.executable).with_name("gaincurate")), *SMOKE, "--seeds", "0-1", "--workers", "2",
               "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=_environment(), start_new_session=True, preexec_fn=_default_signals)  # fmt: skip
    training = out / "work" / "uniform-seed0" / "points.jsonl"  # a worker is inside its first pair
    deadline = time.monotonic() + 240
    while not training.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert training.is_file(), process.communicate()[1][-2000:]
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole group, workers included
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    assert time.monotonic() - sent < 30  # not after the queued pairs: each takes seconds here, hours in a real bench
    assert not list((out / "pairs").glob("*-seed1.json"))  # the queued pairs never started (seed 0's were running)
    gone = time.monotonic() + 10  # multiprocessing's resource tracker takes a moment to see its bench gone
    while group_alive(process.pid) and time.monotonic() < gone:
        time.sleep(0.1)
    assert not group_alive(process.pid)  # no worker left training


def test_a_keyboard_interrupt_dropped_in_a_del_is_raised_at_the_next_check_and_not_printed(capsys):
    class Collected:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as the console script has it
    try:
        with pytest.raises(KeyboardInterrupt), stops_noted():
            Collected()  # collected at once: the handler's KeyboardInterrupt is raised inside __del__ and dropped
            reached = True
            raise_if_stopped()
        assert reached
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        raise_if_stopped()  # the note ends with the block
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "KeyboardInterrupt" not in capsys.readouterr().err
