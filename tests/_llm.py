"""Helpers for the LLM tests: a sandbox LLM server on loopback, a recording metrics service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.metrics import MetricsService
from botctl.sandbox.llm_server import LLMServer

FAST = {"latency": 0.0, "tokens_per_second": 0.0}


@asynccontextmanager
async def running_llm(**settings: Any) -> AsyncIterator[LLMServer]:
    """An :class:`LLMServer` on 127.0.0.1, fast (no latency, all tokens at once) unless told."""
    server = LLMServer(**{**FAST, **settings})
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def wait_until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms; fail after ``limit`` seconds."""
    async with asyncio.timeout(limit):
        # Polling: the counters watched (a server's in_flight...) have no event to wait on.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


class RecordingMetrics(MetricsService):
    """A MetricsService (never started, never written) that also keeps every event it is given."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.events: list[tuple[str, dict[str, Any]]] = []

    def log_event(self, event_type: str, data: Any = None) -> None:
        self.events.append((event_type, dict(data or {})))
        super().log_event(event_type, data)

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [data for kind, data in self.events if kind == event_type]
