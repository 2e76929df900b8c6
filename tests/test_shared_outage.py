"""Redis lost while running: one warning, every operation answers from the process's own state,
nothing escapes; Redis back on the same port: shared again, and what changed meanwhile is written."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from _redis import RedisServer, running_redis
from _shared import Upstream, close_all, collect, eventually, expected, prefix, states

from bot.shared import (
    SharedChoices,
    SharedCooldown,
    SharedFlights,
    SharedHistory,
    SharedState,
    SharedSummaries,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


class Process:
    """Every shared class over one SharedState, as the bot wires them."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self.summaries = SharedSummaries(state, 100)
        self.history = SharedHistory(state, 100, 10, summaries=self.summaries)
        self.flights = SharedFlights(state, window=5.0, lease=1.0, publish_interval=0.01)
        self.cooldown = SharedCooldown(state, 30.0)
        self.choices = SharedChoices(state)

    async def close(self) -> None:
        await self.history.close()
        await self.choices.close()
        await self.state.close()


async def test_redis_killed_then_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    key_prefix = prefix()
    sa, sb = await states(redis_server.url, 2, key_prefix=key_prefix, reconnect_max=0.5)
    a, b = Process(sa), Process(sb)
    try:
        await a.choices.start()
        await b.choices.start()
        with caplog.at_level(logging.INFO, logger="bot.shared"):
            redis_server.kill()
            # Every operation still answers, from the process's own state.
            up = Upstream(delay=0.01)
            assert await collect(a.flights.join("k", up.source)) == expected(up.chunks)
            a.history.add_message("conv", "user", "while down")
            a.history.add_message("conv", "assistant", "still here")
            a.summaries.set("conv", "down summary")
            await a.history.load("other")
            assert [m["content"] for m in a.history.get_history("conv")] == [
                "while down",
                "still here",
            ]
            assert await a.cooldown.check(5, 100.0) == 0.0
            assert await a.cooldown.check(5, 101.0) == pytest.approx(29.0)  # the local cooldown
            a.choices.set("model", 1, "small")
            assert a.choices.get("model", 1) == "small"
            await eventually(lambda: not sa.is_up and not sb.is_up, 5)
            for _ in range(5):  # more failures while down: still one warning
                await collect(a.flights.join("k2", Upstream().source))
                await a.cooldown.check(6, 0.0)
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len([r for r in warnings if "unreachable" in r.getMessage()]) == 2  # a and b
            assert all("carrying on" in r.getMessage() for r in warnings)

            redis_server.start()  # the same port
            await eventually(lambda: sa.is_up and sb.is_up, 10)
            assert any("is back" in r.getMessage() for r in caplog.records)

        # Shared again: what a changed while Redis was away reaches b.
        await eventually(lambda: b.choices.get("model", 1) == "small", 10)
        assert await a.history.writer.flush(5)
        fresh = SharedHistory(sb, 100, 10, summaries=SharedSummaries(sb, 100))
        await fresh.load("conv")
        assert [m["content"] for m in fresh.get_history("conv")] == ["while down", "still here"]
        assert fresh.summaries is not None and fresh.summaries.get("conv") == "down summary"
        # Dedup across the two processes again, and the cooldown shared again.
        up2 = Upstream(delay=0.05)
        subs = [a.flights.join("k3", up2.source), b.flights.join("k3", up2.source)]
        await asyncio.gather(*(collect(s) for s in subs))
        assert up2.calls == 1
        assert await a.cooldown.check(77, 0.0) == 0.0
        assert await b.cooldown.check(77, 0.0) > 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not loop_errors
    finally:
        await a.close()
        await b.close()
        await close_all([sa, sb])
