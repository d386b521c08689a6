"""How a bench stops on Ctrl-C or SIGTERM: every time, promptly, its finished pairs kept, its workers gone with it.

    with stops_noted():
        for pair in todo:
            raise_if_stopped()      # between pairs, and after every optimizer step (`train_pair`'s step callback)
            ...

Inside `stops_noted`, SIGINT and SIGTERM raise KeyboardInterrupt where the main thread is, as Python's own SIGINT
handler does, so the console script exits 130 with its one "interrupted" line. The signal is also noted, because
Python drops a KeyboardInterrupt raised inside a `__del__` (datasets' `Dataset.__del__` runs while a pair trains):
`raise_if_stopped` raises it again at the next check, and the dropped one is not printed. The handlers compose with
`gaincurate.errors.interrupts_held`, which defers them across a compiled extension's import and then calls them.

`stop_workers` ends a process pool at once: its queued pairs cancelled, its workers terminated (a worker ignores
SIGINT, `bench.start_worker`, so a Ctrl-C at the terminal reaches the bench alone, which then stops them).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

_NOTED: list[int] = []
_WORKER: list[bool] = []  # set in a bench's worker process, whose bench stops it


def mark_worker() -> None:
    """This process is a bench's worker: `stops_noted` leaves its signals alone, so SIGTERM ends it at once."""
    _WORKER.append(True)


def _stop(received: int, _frame: Any) -> None:
    _NOTED.append(received)
    raise KeyboardInterrupt


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt when a stop was noted since `stops_noted` began (it may have been dropped)."""
    if _NOTED:
        raise KeyboardInterrupt


@contextmanager
def stops_noted() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM stop the bench (see the module docstring); off the main thread, or in a bench's
    worker (`mark_worker`), this does nothing.

    A signal that is ignored stays ignored: a shell's background job ignores SIGINT, so that the Ctrl-C meant for
    the foreground leaves it alone (CPython does the same)."""
    if _WORKER or threading.current_thread() is not threading.main_thread():
        yield
        return
    _NOTED.clear()
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) not in (signal.SIG_IGN, None):
            previous[number] = signal.signal(number, _stop)
    unraisable = sys.unraisablehook

    def dropped(info: Any) -> None:
        if not (_NOTED and isinstance(info.exc_value, KeyboardInterrupt)):  # ours: raised again at the next check
            unraisable(info)

    sys.unraisablehook = dropped
    try:
        yield
    finally:
        sys.unraisablehook = unraisable
        for number, handler in previous.items():
            signal.signal(number, handler)
        _NOTED.clear()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the pool's queued work and terminate its workers now (a pair in progress is lost; its lock is stale)."""
    # ProcessPoolExecutor.terminate_workers (Python 3.14) does this; its private process table serves until then.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join()
    pool.shutdown(wait=True)  # its manager thread, which now finds the workers gone
