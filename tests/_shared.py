"""Helpers of the shared-state tests: fake upstreams that count their calls, and several
:class:`SharedState` instances standing for several processes of one bot."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from bot.llm.types import Done
from bot.shared.state import SharedState


class Upstream:
    """A fake LLM: ``source`` streams ``chunks`` (``delay`` s apart) then a :class:`Done`, or
    raises ``error`` after the chunks. ``calls`` counts the upstream calls."""

    def __init__(
        self,
        chunks: Sequence[str] = ("Hel", "lo", " world"),
        *,
        delay: float = 0.0,
        error: BaseException | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self.delay = delay
        self.error = error
        self.calls = 0

    def source(self) -> AsyncIterator[Any]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[Any]:
        self.calls += 1
        for chunk in self.chunks:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield chunk
        if self.error is not None:
            raise self.error
        yield Done(tokens_in=3, tokens_out=len(self.chunks), reason="stop", model="fake")


def expected(chunks: Sequence[str]) -> list[Any]:
    return [*chunks, Done(tokens_in=3, tokens_out=len(chunks), reason="stop", model="fake")]


async def collect(subscription: AsyncIterator[Any], timeout: float = 20.0) -> list[Any]:
    async def run() -> list[Any]:
        return [chunk async for chunk in subscription]

    return await asyncio.wait_for(run(), timeout)


def prefix() -> str:
    """A key prefix of its own per test: the tests never see each other's keys."""
    return f"test{secrets.token_hex(4)}:"


async def states(url: str, count: int, *, key_prefix: str, **kwargs: Any) -> list[SharedState]:
    return [
        await SharedState.connect(url, prefix=key_prefix, process_id=f"p{i}", **kwargs)
        for i in range(count)
    ]


async def close_all(items: Sequence[SharedState]) -> None:
    for state in items:
        with contextlib.suppress(Exception):
            await state.close()


async def eventually(check: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> None:
    """Wait (bounded) until ``check()`` is true (awaited when it returns an awaitable)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(step)
