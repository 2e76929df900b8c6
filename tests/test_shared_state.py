"""History, summaries, cooldown and channel choices in Redis (real redis-server); SharedState's
start error. Several SharedState instances stand for several processes; a fresh one for a restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from _redis import RedisServer, free_port, redis_or_skip, running_redis
from _shared import close_all, eventually, prefix, states

from bot.shared import (
    SharedChoices,
    SharedCooldown,
    SharedHistory,
    SharedState,
    SharedStateError,
    SharedSummaries,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
async def procs(redis_server: RedisServer) -> AsyncIterator[list[SharedState]]:
    items = await states(redis_server.url, 2, key_prefix=prefix())
    yield items
    await close_all(items)


def history(state: SharedState, limit: int = 6) -> SharedHistory:
    return SharedHistory(state, 100, limit, summaries=SharedSummaries(state, 100))


# -- start ---------------------------------------------------------------------------------------


async def test_unreachable_at_start_is_one_line_without_password() -> None:
    port = free_port()
    with pytest.raises(SharedStateError) as caught:
        await SharedState.connect(f"redis://:s3cret-pw@127.0.0.1:{port}/0", timeout=1.0)
    message = str(caught.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "check that the server runs" in message
    assert "s3cret-pw" not in message


async def test_a_bad_url_is_one_line() -> None:
    with pytest.raises(SharedStateError) as caught:
        await SharedState.connect("http://:pw@127.0.0.1:1/0")
    assert "\n" not in str(caught.value) and "pw@" not in str(caught.value)


# -- history and summaries -----------------------------------------------------------------------


async def test_history_written_by_one_process_is_loaded_after_a_restart(
    redis_server: RedisServer, procs: list[SharedState]
) -> None:
    first = history(procs[0])
    for i in range(4):
        first.add_message("conv", "user", f"q{i}")
        first.add_message("conv", "assistant", f"a{i}")
    assert first.summaries is not None
    first.summaries.set("conv", "they talked")
    await first.close()  # a graceful stop writes what is pending
    # A restarted process (a fresh pool, nothing local) continues the conversation.
    (restarted,) = await states(redis_server.url, 1, key_prefix=procs[0].prefix)
    try:
        again = history(restarted)
        assert "conv" not in again
        await again.load("conv")
        got = again.get_history("conv")
        assert [m["content"] for m in got] == ["q1", "a1", "q2", "a2", "q3", "a3"]  # limit 6
        assert again.summaries is not None and again.summaries.get("conv") == "they talked"
        assert again.get_stats()["shared_loaded"] == 1
    finally:
        await close_all([restarted])


async def test_writes_reach_redis_behind_the_hot_path(procs: list[SharedState]) -> None:
    a, b = history(procs[0]), history(procs[1])
    a.add_message("c1", "user", "hello")
    a.add_message("c1", "assistant", "hi")
    assert await a.writer.flush(5)
    await b.load("c1")
    assert b.get_history("c1") == a.get_history("c1")
    # A trim (a fold into the summary) rewrites the list; a clear deletes it.
    assert a.trim("c1", 1, a.get_history("c1")[0])
    assert await a.writer.flush(5)
    c = history(procs[1])
    await c.load("c1")
    assert [m["content"] for m in c.get_history("c1")] == ["hi"]
    a.clear("c1")
    assert await a.writer.flush(5)
    d = history(procs[1])
    await d.load("c1")
    assert "c1" not in d
    for h in (a, b, c, d):
        await h.close()


async def test_summaries_alone_load_and_clear(procs: list[SharedState]) -> None:
    a, b = SharedSummaries(procs[0]), SharedSummaries(procs[1])
    a.set("s", "summary one")
    assert await a.writer.flush(5)
    await b.load("s")
    assert b.get("s") == "summary one"
    a.clear("s")
    assert await a.writer.flush(5)
    c = SharedSummaries(procs[1])
    await c.load("s")
    assert c.get("s") is None
    for s in (a, b, c):
        await s.close()


async def test_history_ttl_and_bounds_in_redis(procs: list[SharedState]) -> None:
    a = SharedHistory(procs[0], 10, 4, ttl=3600)
    for i in range(10):
        a.add_message("b", "user", f"m{i}")
    assert await a.writer.flush(5)
    key = procs[0].key("h", "b")
    assert await procs[0].client.llen(key) == 4
    assert 0 < await procs[0].client.ttl(key) <= 3600
    await a.close()


# -- cooldown ------------------------------------------------------------------------------------


async def test_cooldown_holds_across_processes(procs: list[SharedState]) -> None:
    a, b = SharedCooldown(procs[0], 1.0), SharedCooldown(procs[1], 1.0)
    assert await a.check(42, 0.0) == 0.0
    left = await b.check(42, 0.0)  # another shard, another process: still cooling down
    assert 0.5 < left <= 1.0
    assert await b.check(43, 0.0) == 0.0  # another user is free
    await asyncio.sleep(1.1)
    assert await b.check(42, 0.0) == 0.0


# -- channel choices -----------------------------------------------------------------------------


async def test_choices_reach_the_other_process_at_once_and_after_a_restart(
    redis_server: RedisServer, procs: list[SharedState]
) -> None:
    a, b = SharedChoices(procs[0]), SharedChoices(procs[1])
    await a.start()
    await b.start()
    a.set("model", 7, "big")
    a.set("persona", 7, "pirate")
    await eventually(lambda: b.get("model", 7) == "big" and b.get("persona", 7) == "pirate", 5)
    a.set("persona", 7, None)
    await eventually(lambda: b.get("persona", 7) is None, 5)
    assert b.applied >= 3
    await a.close()
    await b.close()
    (restarted,) = await states(redis_server.url, 1, key_prefix=procs[0].prefix)
    try:
        c = SharedChoices(restarted)
        await c.start()
        assert (c.get("model", 7), c.get("persona", 7)) == ("big", None)
        await c.close()
    finally:
        await close_all([restarted])


# -- credentials, expiry, close ------------------------------------------------------------------


async def test_credentials_never_appear_in_errors_or_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer(redis_or_skip())
    server.extra = ["--requirepass", "Pw-0f-the-bot"]
    server.start()
    try:
        with pytest.raises(SharedStateError) as caught:
            await SharedState.connect(f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
        assert "credentials" in str(caught.value) and "wrong-pw" not in str(caught.value)
        state = await SharedState.connect(f"redis://:Pw-0f-the-bot@127.0.0.1:{server.port}/0")
        try:
            with caplog.at_level(logging.INFO, logger="bot.shared"):
                server.kill()
                await SharedCooldown(state, 5.0).check(1, 0.0)  # fails over to local
                server.start()
                await eventually(lambda: state.is_up, 10)
            logged = " ".join(r.getMessage() for r in caplog.records)
            assert "unreachable" in logged and "is back" in logged
            assert "Pw-0f-the-bot" not in logged and f"127.0.0.1:{server.port}" in logged
        finally:
            await state.close()
    finally:
        server.stop()


async def test_every_key_the_bot_writes_expires_but_the_choices(procs: list[SharedState]) -> None:
    from bot.shared import SharedFlights

    state = procs[0]
    flights = SharedFlights(state, window=5.0, lease=1.0, publish_interval=0.01)
    async for _ in flights.join("q", _answer):
        pass
    await flights.close()
    h = history(state)
    h.add_message("c", "user", "hi")
    assert h.summaries is not None
    h.summaries.set("c", "s")
    await h.close()
    await SharedCooldown(state, 5.0).check(9, 0.0)
    choices = SharedChoices(state)
    choices.set("model", 1, "m")
    await choices.close()
    keys = [k.decode() async for k in state.client.scan_iter(match=f"{state.prefix}*")]
    assert len(keys) == 6  # flight, stream, history, summary, cooldown, choices
    for key in keys:
        ttl = await state.client.pttl(key)
        if key == state.key("choices"):
            assert ttl == -1  # one field per channel that chose: bounded by the channels
        else:
            assert 0 < ttl <= 7 * 24 * 3600 * 1000, key


async def _answer() -> AsyncIterator[object]:
    yield "an answer"


async def test_close_goes_on_when_a_step_fails(
    procs: list[SharedState], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = procs[0]

    async def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(state.client, "aclose", broken)
    pool = state.client.connection_pool
    await state.close()  # logs a warning, still closes the pool
    assert not pool._in_use_connections
    assert not any(c.is_connected for c in pool._available_connections)
    assert not state.is_up
