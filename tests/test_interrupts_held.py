"""`interrupts_held`: a Ctrl-C inside the block (a compiled extension's import, where KeyboardInterrupt would abort
the process) is acted on right after it, once, by the handler that was there; the handlers come back."""

from __future__ import annotations

import os
import signal

import pytest

from gaincurate.errors import interrupts_held


@pytest.fixture(autouse=True)
def python_handles_ctrl_c():
    """Python's own handler, as the console script has it (pytest-xdist's workers ignore SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_the_block_is_raised_after_it():
    reached = []
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        reached.append("the rest of the block ran")
    assert reached == ["the rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_block_without_a_signal_changes_nothing():
    with interrupts_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
