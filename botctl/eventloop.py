"""The event loop a bot process runs on: uvloop where it is installed, else asyncio's own.

uvloop is a default dependency on Linux and macOS; ``botctl bench`` measures the bot on both loops
(the bare discord.py baseline runs on asyncio's). ``BOT_EVENT_LOOP=asyncio`` forces the standard
loop (to compare, or to rule uvloop out when debugging).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["LoopName", "loop_name", "run"]

T = TypeVar("T")
LoopName = Literal["uvloop", "asyncio"]
ENV = "BOT_EVENT_LOOP"


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # optional: absent on Windows, or uninstalled
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(wanted: str | None = None) -> LoopName:
    """The loop :func:`run` will use for ``wanted`` (``auto``, ``uvloop`` or ``asyncio``)."""
    choice = (wanted or os.environ.get(ENV) or "auto").strip().lower()
    if choice == "asyncio":
        return "asyncio"
    return "uvloop" if _uvloop_factory() is not None else "asyncio"


def run(coro: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """``asyncio.run(coro)`` on the chosen loop."""
    factory = _uvloop_factory() if loop_name(loop) == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
