"""kill -9 of the leading process mid-stream: the follower's caller still gets an answer (or the
clear error when the new try answers differently), within a bound. The leader is a real second
process (tests/_shared_leader.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from _redis import RedisServer, running_redis
from _shared import Upstream, close_all, collect, expected, prefix, states

from bot.llm.errors import LLMStreamError
from bot.shared import SharedFlights, SharedState

pytestmark = pytest.mark.integration

CHILD = Path(__file__).with_name("_shared_leader.py")
CHUNKS = 200
LEASE = 1.0
# Detection takes about a lease after the last renewal plus one idle read; the rerun is fast.
BOUND = LEASE * 3 + 3.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def follower(redis_server: RedisServer) -> AsyncIterator[SharedState]:
    (state,) = await states(redis_server.url, 1, key_prefix=prefix())
    yield state
    await close_all([state])


async def leading_child(url: str, key_prefix: str, key: str) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), url, key_prefix, key, str(CHUNKS),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    for _ in range(3):  # it leads, and its first chunks are out
        line = await asyncio.wait_for(child.stdout.readline(), 15)
        assert line.strip() == b"chunk leader", line
    return child


async def kill(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.send_signal(signal.SIGKILL)
    await asyncio.wait_for(child.wait(), 10)


@pytest.mark.parametrize("same_answer", [True, False], ids=["rerun-continues", "rerun-differs"])
async def test_kill_9_of_the_leader_mid_stream(
    redis_server: RedisServer, follower: SharedState, same_answer: bool
) -> None:
    child = await leading_child(redis_server.url, follower.prefix, "killed")
    try:
        flights = SharedFlights(follower, window=5.0, lease=LEASE, publish_interval=0.01)
        words = [f"w{i} " for i in range(CHUNKS)]
        up = Upstream(words if same_answer else [w.upper() for w in words], delay=0.001)
        subscription = flights.join("killed", up.source)
        given = [await asyncio.wait_for(anext(subscription), 10) for _ in range(5)]
        assert subscription.role == "follower" and given == words[:5]
        await kill(child)
        killed = time.monotonic()
        if same_answer:
            rest = await collect(subscription, timeout=BOUND)
            assert given + rest == expected(words)  # one whole answer, nothing twice
        else:
            with pytest.raises(LLMStreamError, match="stopped mid-answer"):
                await collect(subscription, timeout=BOUND)
        elapsed = time.monotonic() - killed
        print(f"answer complete {elapsed:.2f} s after the kill")
        assert elapsed < BOUND
        assert up.calls == 1
        assert flights.get_stats()["reruns"] == 1
    finally:
        await kill(child)
