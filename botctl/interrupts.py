"""SIGTERM and SIGHUP taken as Ctrl-C by commands that run children (``profile``, ``analyze --web``).

Their children run in sessions of their own, so a signal to the CLI reaches the CLI only: killed by
the default action, it would leave them orphaned (the bot, and under it the sandbox, would run on
with nobody to stop them). As a ``KeyboardInterrupt``, the signal takes the path Ctrl-C takes: stop
the children in order, keep what they wrote.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """Which signal interrupted the command last, for the notes (``None``: Ctrl-C or none)."""

    last: signal.Signals | None = None

    @classmethod
    def describe(cls) -> str:
        return "Ctrl-C" if cls.last is None else cls.last.name


def _raise(signum: int, _frame: FrameType | None) -> None:
    Interrupts.last = signal.Signals(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
