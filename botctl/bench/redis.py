"""What sharing the bot's state through Redis costs (``bot.shared``), against a real redis-server.

- :func:`flights_cpu`: CPU per request of :class:`~bot.shared.SharedFlights` (as leader, as
  follower, replaying its window) against the in-process :class:`~bot.dedup.RequestDeduplicator`,
  with a fake source that costs nearly nothing, so the figures are the mechanism's own. This
  process's CPU (``time.process_time``) and redis-server's (``INFO cpu``) are counted apart.
- :func:`ops_per_message`: Redis commands per message on the bot's path (cooldown, history load,
  flight, history write), by role, from ``INFO commandstats`` deltas.
- :func:`burst_calls`: upstream calls for a burst with 30 % duplicates of concurrent questions,
  split between two "processes" (two SharedState pools), against one in-process deduplicator.

Several SharedState instances in one process stand for several processes: each has its own pool
and its own connections, as separate processes would. One run; ratios and counts are what to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from bot.dedup import RequestDeduplicator
from bot.llm.types import Done
from bot.shared import SharedCooldown, SharedFlights, SharedHistory, SharedState, SharedSummaries
from botctl.bench.common import median, ratio, rotated
from botctl.bench.dedup import concurrent_schedule

__all__ = [
    "CAPACITY_COMMANDS",
    "burst_calls",
    "capacity",
    "flights_cpu",
    "ops_per_message",
    "redis_cpu",
    "redis_server",
]

START_TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 300.0


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of its own (127.0.0.1, a free port, no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def _two(url: str, name: str) -> tuple[SharedState, SharedState]:
    """Two pools standing for two processes of one bot, with keys of their own: a run never
    meets an earlier run's flights or window."""
    prefix = f"{name}{secrets.token_hex(4)}:"
    a = await SharedState.connect(url, prefix=prefix, process_id="p0")
    b = await SharedState.connect(url, prefix=prefix, process_id="p1")
    return a, b


async def redis_cpu(state: SharedState) -> float:
    """redis-server's own CPU seconds so far (user + system)."""
    info = await state.client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _commandstats(state: SharedState) -> dict[str, int]:
    info = await state.client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


def _source(chunks: int, pace: float) -> Callable[[], AsyncIterator[Any]]:
    words = [f"w{i} " for i in range(chunks)]
    done = Done(tokens_in=10, tokens_out=chunks, reason="stop", model="fake")

    async def stream() -> AsyncIterator[Any]:
        for word in words:
            if pace:
                await asyncio.sleep(pace)
            yield word
        yield done

    return stream


async def _drain(subscription: AsyncIterator[Any]) -> None:
    async for _ in subscription:
        pass


async def _waves(
    count: int, concurrency: int, one: Callable[[int], list[AsyncIterator[Any]]]
) -> None:
    for start in range(0, count, concurrency):
        subs = [s for i in range(start, min(count, start + concurrency)) for s in one(i)]
        await asyncio.gather(*(_drain(s) for s in subs))


async def flights_cpu(
    url: str,
    *,
    requests: int = 400,
    chunks: int = 40,
    pace: float = 0.0,
    concurrency: int = 20,
    rounds: int = 5,
    publish_interval: float = 0.2,
) -> dict[str, Any]:
    """Median CPU µs per request: ``local`` (in-process dedup, leader), ``shared_leader``,
    ``shared_pair`` (the same key asked in two processes at once: a leader and a follower),
    ``shared_window`` (a finished answer replayed from Redis). ``follower`` = pair - leader."""
    a, b = await _two(url, "bench:")
    keys = itertools.count()
    source = _source(chunks, pace)
    local = RequestDeduplicator(window=5.0)
    opts: dict[str, Any] = {"window": 30.0, "lease": 5.0, "publish_interval": publish_interval}
    fa, fb = SharedFlights(a, **opts), SharedFlights(b, **opts)
    # The window variant replays keys another process finished; a fresh deduplicator per round
    # (no local window) makes every replay come from Redis.
    finished: list[str] = []

    def fresh() -> str:
        return f"k{next(keys)}"

    def run_local(_: int) -> list[AsyncIterator[Any]]:
        return [local.join(fresh(), source)]

    def run_leader(_: int) -> list[AsyncIterator[Any]]:
        key = fresh()
        finished.append(key)
        return [fa.join(key, source)]

    def run_pair(_: int) -> list[AsyncIterator[Any]]:
        key = fresh()
        return [fa.join(key, source), fb.join(key, source)]

    variants: list[tuple[str, Callable[[int], list[AsyncIterator[Any]]]]] = [
        ("local", run_local),
        ("shared_leader", run_leader),
        ("shared_pair", run_pair),
        ("shared_window", lambda i: [window.join(finished[i], source)]),
    ]
    cpu: dict[str, list[float]] = {name: [] for name, _ in variants}
    server: dict[str, list[float]] = {name: [] for name, _ in variants}
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            await _waves(50, concurrency, run_pair)  # warm pools, scripts, code paths
            for r in range(rounds):
                finished.clear()
                window = SharedFlights(b, **{**opts, "window": 0.0})
                # leader before window, so the window has keys to replay: rotate the others
                order = rotated([v for v in variants if v[0] != "shared_window"], r)
                for name, run in [*order, variants[-1]]:
                    await _settle([fa, fb])
                    redis0, cpu0 = await redis_cpu(a), time.process_time()
                    await _waves(requests, concurrency, run)
                    await _settle([fa, fb])
                    cpu1, redis1 = time.process_time(), await redis_cpu(a)
                    cpu[name].append((cpu1 - cpu0) / requests * 1e6)
                    server[name].append((redis1 - redis0) / requests * 1e6)
    finally:
        await a.close()
        await b.close()
    us = {name: median(values) for name, values in cpu.items()}
    us["follower"] = us["shared_pair"] - us["shared_leader"]
    return {
        "requests": requests,
        "chunks": chunks,
        "pace_s": pace,
        "rounds": rounds,
        "client_cpu_us_per_request": {k: round(v, 1) for k, v in us.items()},
        "redis_cpu_us_per_request": {k: round(median(v), 1) for k, v in server.items()},
        "ratio_leader": round(ratio(us["shared_leader"], us["local"]), 2),
        "ratio_follower": round(ratio(us["follower"], us["local"]), 2),
        "ratio_window": round(ratio(us["shared_window"], us["local"]), 2),
    }


async def _settle(flights: list[SharedFlights]) -> None:
    """Let the publishers write their last entries, so each variant pays for its own."""
    for f in flights:
        await f.close(5.0)


async def ops_per_message(
    url: str, *, messages: int = 200, chunks: int = 40, concurrency: int = 20
) -> dict[str, Any]:
    """Redis commands per message on the bot's path, by role, from INFO commandstats, and
    redis-server's CPU per message; ``concurrency`` messages at a time, as a busy bot has."""
    a, b = await _two(url, "ops:")
    source = _source(chunks, 0.0)
    procs = []
    for state in (a, b):
        summaries = SharedSummaries(state)
        procs.append(
            (
                SharedFlights(state, window=30.0, lease=5.0, publish_interval=0.2),
                SharedHistory(state, 1000, 20, summaries=summaries),
                SharedCooldown(state, 1.0),
            )
        )
    users = itertools.count()

    async def message(proc: int, key: str, conversation: str) -> None:
        flights, history, cooldown = procs[proc]
        await cooldown.check(next(users), 0.0)
        await history.load(conversation)
        history.get_history(conversation)
        await _drain(flights.join(key, source))
        history.add_message(conversation, "user", "question")
        history.add_message(conversation, "assistant", "answer " * 20)

    async def measure(run: Callable[[int], Any], count: int) -> dict[str, Any]:
        before, cpu0 = await _commandstats(a), await redis_cpu(a)
        for start in range(0, count, concurrency):
            await asyncio.gather(*(run(i) for i in range(start, min(count, start + concurrency))))
        for _, history, _ in procs:
            await history.writer.flush(5)
        await _settle([p[0] for p in procs])
        cpu1, after = await redis_cpu(a), await _commandstats(a)
        after["info"] = after.get("info", 0) - 3  # the measurement's own INFOs
        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
        per = {k: round(v / count, 2) for k, v in sorted(delta.items())}
        return {
            "commands_per_message": round(sum(delta.values()) / count, 2),
            "by_command": per,
            "redis_cpu_us_per_message": round((cpu1 - cpu0) / count * 1e6, 1),
        }

    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            new_conv = await measure(lambda i: message(0, f"n{i}", f"c{i}"), messages)
            # A conversation this process has: no load; the usual case once it is going.
            known = await measure(lambda i: message(0, f"m{i}", f"c{i}"), messages)

            async def pair(i: int) -> None:
                await asyncio.gather(message(0, f"p{i}", f"c{i}"), message(1, f"p{i}", f"d{i}"))

            both = await measure(pair, messages)
            window = await measure(lambda i: message(1, f"m{i}", f"d{i}"), messages)
    finally:
        for _, history, _ in procs:
            await history.close()
        await a.close()
        await b.close()
    return {
        "messages": messages,
        "chunks": chunks,
        "leader_new_conversation": new_conv,
        "leader_known_conversation": known,
        "leader_and_follower_pair": both,
        "window_replay": window,
        "note": "EVAL counts once plus the commands the script calls",
    }


async def burst_calls(
    url: str, *, requests: int = 1000, duplicate_ratio: float = 0.3, rate: float = 200.0
) -> dict[str, Any]:
    """Upstream calls for ``requests`` arriving as the sandbox users ask them (``duplicate_ratio``
    of them repeat a question being asked at that moment), split between two processes."""
    arrivals, distinct = concurrent_schedule(requests, duplicate_ratio, rate)
    a, b = await _two(url, "burst:")
    calls = {"shared": 0, "local": 0}

    def source(which: str) -> Callable[[], AsyncIterator[Any]]:
        async def stream() -> AsyncIterator[Any]:
            calls[which] += 1
            await asyncio.sleep(0.05)  # as the dedup bench's LLM: identical requests overlap
            yield "answer"
            yield Done(reason="stop")

        return stream

    shared = [SharedFlights(s, window=0.0, lease=5.0) for s in (a, b)]
    local = RequestDeduplicator(window=0.0)

    async def burst(join: Callable[[int, str], AsyncIterator[Any]]) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i, arrival in enumerate(arrivals):
            wait = start + arrival.at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(_drain(join(i, arrival.question))))
        await asyncio.gather(*tasks)
        return loop.time() - start

    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            wall_shared = await burst(lambda i, q: shared[i % 2].join(q, source("shared")))
            wall_local = await burst(lambda i, q: local.join(q, source("local")))
    finally:
        await a.close()
        await b.close()
    stats = [f.get_stats() for f in shared]
    return {
        "requests": len(arrivals),
        "distinct_keys": distinct,
        "upstream_calls_two_processes": calls["shared"],
        "upstream_calls_one_process": calls["local"],
        "saved_two_processes": len(arrivals) - calls["shared"],
        "remote_followers": sum(s["remote_followers"] for s in stats),
        "wall_s": {"two_processes": round(wall_shared, 2), "one_process": round(wall_local, 2)},
    }


# The shapes of command the bot sends (see ops_per_message), for redis-benchmark.
_PAYLOAD = "x" * 400
CAPACITY_COMMANDS: dict[str, list[str]] = {
    "SET NX PX GET (claim, cooldown)": ["SET", "f:__rand_int__", "L:n", "NX", "PX", "5000", "GET"],
    "XADD MAXLEN ~ (publish 400 B)": ["XADD", "s:__rand_int__", "MAXLEN", "~", "4096", "*", "d", _PAYLOAD],
    "EVAL (lease/finish script)": ["EVAL", "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], 5000) end return 1", "1", "f:__rand_int__", "L:n"],
    "RPUSH (history write)": ["RPUSH", "h:__rand_int__", _PAYLOAD],
    "LRANGE 0 19 (history load)": ["LRANGE", "h:__rand_int__", "0", "19"],
    "XREAD (follow)": ["XREAD", "COUNT", "100", "STREAMS", "s:__rand_int__", "0-0"],
}  # fmt: skip


def capacity(url: str, *, requests: int = 100_000, clients: int = 50) -> dict[str, Any]:
    """redis-benchmark's requests/s for each command shape, one at a time (no pipelining, and
    16 per pipeline). On a small machine the benchmark's client shares the CPU with the server."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"error": "redis-benchmark is not installed (it comes with redis-server)"}
    port = url.rsplit(":", 1)[1].split("/")[0]
    rows: dict[str, dict[str, float]] = {}
    for name, command in CAPACITY_COMMANDS.items():
        rows[name] = {}
        for pipeline in (1, 16):
            args = [binary, "-h", "127.0.0.1", "-p", port, "-n", str(requests), "-c", str(clients)]
            args += ["-P", str(pipeline), "-r", "100000", "--csv", *command]
            out = subprocess.run(
                args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
            ).stdout
            lines = [line for line in out.splitlines() if line and not line.startswith('"test"')]
            rps = float(lines[-1].split('","')[1]) if lines else float("nan")
            rows[name][f"P{pipeline}"] = round(rps)
    return {"requests": requests, "clients": clients, "requests_per_s": rows}
