"""Write-behind to Redis: the hot path marks what changed, one background task writes it.

A shared store's synchronous methods (``add_message``, ``set``) change the local structure and
call :meth:`Flusher.changed`, which costs a dict update and an event; the task then writes
everything pending in one pipeline. Concurrent writes coalesce while a pipeline is in flight. A
failed write (Redis down) is put back as pending and written again when Redis returns
(:meth:`SharedState.on_up`). :meth:`close` writes what is pending, bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from functools import partial
from typing import Any, Generic, TypeVar

from bot.shared.state import SharedState, SharedUnavailable

__all__ = ["Flusher"]

log = logging.getLogger("bot.shared")

B = TypeVar("B")

# Keys per pipeline: a burst of writes becomes several bounded pipelines, not one huge one.
BATCH = 256


class Flusher(ABC, Generic[B]):
    """Subclasses say what is pending (:meth:`_take`, :meth:`_has_pending`), how to write it
    (:meth:`_write`) and how to keep it pending again when the write failed (:meth:`_restore`)."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.writes = 0
        self.failed_writes = 0
        state.on_up(self._wake.set)

    def changed(self) -> None:
        """Something is pending: make sure the writer runs (started on first use, in the loop)."""
        self._idle.clear()
        self._wake.set()
        if self._task is None and not self._closing:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop yet: the first change made in one starts the writer
                return
            self._task = self.state.spawn(self._loop(), name=f"redis-{type(self).__name__}")

    @abstractmethod
    def _take(self, limit: int) -> B | None:
        """Remove and return up to ``limit`` keys' pending writes, ``None`` when nothing is."""

    @abstractmethod
    def _has_pending(self) -> bool: ...

    @abstractmethod
    def _write(self, pipe: Any, batch: B) -> None:
        """Queue ``batch``'s commands on ``pipe``."""

    @abstractmethod
    def _restore(self, batch: B) -> None:
        """``batch`` was not written: keep it pending (newer changes win)."""

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.state.is_up:
                batch = self._take(BATCH)
                if batch is None:
                    break
                try:
                    await self.state.run(partial(self._execute, batch))
                    self.writes += 1
                except SharedUnavailable:
                    self.failed_writes += 1
                    self._restore(batch)
                    break  # the return of Redis wakes this loop again
                except BaseException:
                    self._restore(batch)  # cancelled mid-write: close() may still write it
                    raise
            if not self._has_pending():
                self._idle.set()

    async def _execute(self, batch: B, client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        self._write(pipe, batch)
        await pipe.execute()

    async def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until nothing is pending; ``False`` if something still is."""
        if self._task is None:
            return not self._has_pending()
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        return self._idle.is_set()

    async def close(self, timeout: float = 2.0) -> None:
        """Write what is pending (bounded), then stop the task. Never raises."""
        try:
            if self.state.is_up and not await self.flush(timeout):
                log.warning(
                    "%s: some writes to Redis were not done before close", type(self).__name__
                )
        except Exception:
            log.exception("%s: flushing to Redis failed", type(self).__name__)
        self._closing = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
