"""LLM calls with and without request deduplication, through the real client and a real server.

Everything goes through :class:`~bot.llm.service.OllamaService` (HTTP, NDJSON streaming, the
deduplicator it owns) to the sandbox's :class:`~botctl.sandbox.llm_server.LLMServer` on 127.0.0.1,
and upstream calls are what that server counts (``calls_total``), not what the client believes.

- ``identical``: K = 1, 10, 100 identical questions at the same moment; with dedup the budget is
  one upstream call whatever K.
- ``concurrent``: 1,000 requests arriving as the sandbox's users ask them (the same burst schedule
  as ``botctl run``): 30 % repeat a question another user is asking at that very moment. Every
  burst has a question of its own, so distinct keys = bursts, and with dedup upstream calls must
  equal distinct keys.
- ``near``: 1,000 requests of which 30 % repeat a question asked 0.3-2 s earlier, after its
  answer came back but within the reuse window (5 s): only the window merges those; in-flight
  merging alone does not.

Counts do not depend on timing, so one run per variant suffices; the wall time of each burst is
reported for context only.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.llm.ollama import OllamaTransport
from bot.llm.service import OllamaService
from botctl.sandbox.users import plan_traffic

__all__ = ["Arrival", "concurrent_schedule", "near_schedule", "run_dedup_bench"]

LLM_LATENCY_S = 0.05  # long enough that identical requests overlap as they would in production
BURST_TIMEOUT_S = 120.0
SYSTEM = {"role": "system", "content": "You are a helpful assistant in a Discord server."}


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # seconds after the start of the burst
    question: str


def concurrent_schedule(
    n: int, duplicate_ratio: float, rate: float, seed: int = 7
) -> tuple[list[Arrival], int]:
    """``n`` arrivals in the sandbox users' burst pattern; (arrivals, distinct questions)."""
    out: list[Arrival] = []
    at = 0.0
    bursts = 0
    for burst in plan_traffic(seed=seed, rate=rate, duplicate_ratio=duplicate_ratio):
        if len(out) >= n:
            break
        at += burst.delay
        question = f"{burst.question} (#{bursts})"  # a question per burst: keys = bursts
        bursts += 1
        out.extend(Arrival(at, question) for _ in range(min(burst.size, n - len(out))))
    return out, bursts


def near_schedule(
    n: int,
    repeat_ratio: float,
    rate: float,
    *,
    min_gap: float = 0.3,
    max_gap: float = 2.0,
    seed: int = 11,
) -> tuple[list[Arrival], int]:
    """``n`` Poisson arrivals; a share ``repeat_ratio`` repeat an earlier question asked between
    ``min_gap`` and ``max_gap`` seconds before. (arrivals, distinct questions)."""
    rng = random.Random(seed)
    out: list[Arrival] = []
    originals: list[Arrival] = []
    at = 0.0
    # Early arrivals have nothing old enough to repeat; ask a little more often later to keep the
    # overall share at repeat_ratio.
    for i in range(n):
        at += rng.expovariate(rate)
        candidates = [a for a in originals if min_gap <= at - a.at <= max_gap]
        remaining = n - i
        wanted = repeat_ratio * n - (len(out) - len(originals))
        if candidates and rng.random() < min(1.0, wanted / remaining * 1.0):
            out.append(Arrival(at, rng.choice(candidates).question))
        else:
            arrival = Arrival(at, f"question {len(originals)}: what is {len(originals)} squared?")
            originals.append(arrival)
            out.append(arrival)
    return out, len(originals)


async def _burst(service: Any, arrivals: list[Arrival]) -> float:
    """Ask every question at its time; wall seconds until the last answer."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    tasks: list[asyncio.Task[Any]] = []
    for arrival in arrivals:
        wait = start + arrival.at - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        messages = [SYSTEM, {"role": "user", "content": arrival.question}]
        tasks.append(asyncio.create_task(service.chat(messages)))
    async with asyncio.timeout(BURST_TIMEOUT_S):
        await asyncio.gather(*tasks)
    return loop.time() - start


async def _count(
    server: Any, url: str, arrivals: list[Arrival], *, dedup: bool, window: float
) -> dict[str, Any]:
    service = OllamaService(
        url, dedup=dedup, dedup_window=window, transport=OllamaTransport(url, max_retries=0)
    )
    before = server.calls_total
    try:
        wall = await _burst(service, arrivals)
    finally:
        await service.close()
    stats = service.get_cache_stats()["deduplication"]
    return {
        "requests": len(arrivals),
        "upstream_calls": server.calls_total - before,
        "followers": stats["followers"],
        "window_hits": stats["window_hits"],
        "wall_s": round(wall, 3),
    }


async def _identical(server: Any, url: str, ks: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    for k in ks:
        row: dict[str, Any] = {"k": k}
        for name, dedup in (("dedup", True), ("no_dedup", False)):
            # A fresh question per variant: the window (off here anyway) can never answer it.
            arrivals = [Arrival(0.0, f"identical question, K={k}, {name}")] * k
            counted = await _count(server, url, arrivals, dedup=dedup, window=0.0)
            row[name] = counted["upstream_calls"]
        rows.append(row)
    return rows


async def run_dedup_async(
    *,
    ks: tuple[int, ...] = (1, 10, 100),
    burst: int = 1000,
    duplicate_ratio: float = 0.3,
    rate: float = 1000.0,
    near: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from botctl.sandbox.llm_server import LLMServer

    server = LLMServer(host="127.0.0.1", port=0, latency=LLM_LATENCY_S, tokens_per_second=0)
    url = await server.start()
    try:
        if progress is not None:
            progress("dedup: K identical requests")
        identical = await _identical(server, url, ks)
        if progress is not None:
            progress(f"dedup: {burst:,}-request burst, {duplicate_ratio:.0%} concurrent duplicates")
        arrivals, distinct = concurrent_schedule(burst, duplicate_ratio, rate)
        concurrent = {
            "requests": len(arrivals),
            "distinct_keys": distinct,
            "no_dedup": await _count(server, url, arrivals, dedup=False, window=0.0),
            "dedup": await _count(server, url, arrivals, dedup=True, window=5.0),
        }
        near_row: dict[str, Any] | None = None
        if near:
            if progress is not None:
                progress(f"dedup: {burst:,}-request burst, {duplicate_ratio:.0%} near-duplicates")
            arrivals, distinct = near_schedule(burst, duplicate_ratio, rate)
            near_row = {
                "requests": len(arrivals),
                "distinct_keys": distinct,
                "no_dedup": await _count(server, url, arrivals, dedup=False, window=0.0),
                "in_flight_only": await _count(server, url, arrivals, dedup=True, window=0.0),
                "dedup": await _count(server, url, arrivals, dedup=True, window=5.0),
            }
    finally:
        await server.stop()
    return {
        "llm_latency_s": LLM_LATENCY_S,
        "rate": rate,
        "identical": identical,
        "concurrent": concurrent,
        "near": near_row,
    }


def run_dedup_bench(**kwargs: Any) -> dict[str, Any]:
    started = time.monotonic()
    result = asyncio.run(run_dedup_async(**kwargs))
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result
