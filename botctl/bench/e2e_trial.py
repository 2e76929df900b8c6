"""One end-to-end trial, in the child process ``python -m botctl.bench.e2e_trial CONFIG_JSON``.

The child starts the sandbox in *its* own process (:class:`~botctl.sandbox.client.SandboxProcess`)
and runs the real bot (:func:`bot.frontend.app.serve`) or the bare bot in-process, starts the
simulated users, skips the warm-up and reads every counter at both ends of the load window: the
users' (replies, latency), the sandbox's (REST calls, 429s), the bot's (messages taken, chain
fetches) and the CPU of both processes. With ``drain`` the users stop at the window's end and the
trial waits until the bot has replied to everything it took, so latency figures cover every
question (under Discord's rate limits the last answers can be seconds late, and they count).

It prints one JSON line, an :class:`~botctl.bench.e2e.E2EResult`; :func:`botctl.bench.e2e.run_child`
reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import inspect
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from botctl import eventloop
from botctl.bench.common import median, ratio
from botctl.bench.e2e import E2EConfig, E2EResult
from botctl.sandbox.plan import DEFAULT_QUESTIONS

__all__ = ["main", "run_trial"]

BARE_READY_TIMEOUT = 0.5  # run_bare_bot's default
PREPARE_TIMEOUT = 60.0  # the users' own set-up (reply chains) before the load starts
MODEL_TIME_SAMPLES = 3
# What is compared, window end against window start, of the sandbox's /stats.
SANDBOX_COUNTS = (
    "messages_posted",
    "rest_calls",
    "bot_messages",
    "bot_edits",
    "typing_calls",
    "rate_limited_total",
)

Snapshot = Callable[[], dict[str, int]]


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``), else ``None``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return None


def _self_cpu() -> tuple[float, float]:
    """This process's (user, system) CPU seconds: the kernel's share is mostly the loopback
    sockets' (a send on loopback runs the receiver's TCP input too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def model_time_ms(llm_url: str, samples: int = MODEL_TIME_SAMPLES) -> dict[str, float]:
    """The sandbox LLM's own time for an answer, streamed to a bare client (Ollama's API): from
    the request sent to its first and last byte, median of ``samples`` answers, one at a time."""
    firsts: list[float] = []
    totals: list[float] = []
    async with aiohttp.ClientSession() as session:
        for question in DEFAULT_QUESTIONS[:samples]:
            body: dict[str, Any] = {
                "model": "bench",
                "stream": True,
                "messages": [{"role": "user", "content": question}],
            }
            sent = time.perf_counter()
            first: float | None = None
            async with session.post(f"{llm_url}/api/chat", json=body) as response:
                async for _chunk in response.content.iter_any():
                    first = first or time.perf_counter()
            totals.append((time.perf_counter() - sent) * 1000)
            firsts.append(((first or time.perf_counter()) - sent) * 1000)
    return {"first_token_ms": median(firsts), "answer_ms": median(totals)}


async def _drain(
    sandbox: Any, config: E2EConfig, snapshot: Snapshot | None, out: dict[str, Any]
) -> None:
    """Stop the users, then wait (bounded) until the bot has logged a reply to every message it
    took and the users have seen a reply to every question."""
    await sandbox.stop_traffic()
    deadline = time.monotonic() + config.drain
    while time.monotonic() < deadline:
        stats = await sandbox.traffic_stats()
        bot = snapshot() if snapshot is not None else {}
        if stats.get("unanswered", 0) <= 0 and bot.get("replies", 0) >= bot.get("messages", 0):
            break
        await asyncio.sleep(0.1)
    else:
        out["drain_timed_out"] = True


async def _measure(
    sandbox: Any,
    config: E2EConfig,
    stop: asyncio.Event,
    out: dict[str, Any],
    snapshot: Snapshot | None = None,
) -> None:
    """Start the load, skip the warm-up, read the counters at both ends of the window, stop."""
    try:
        if config.model_time:
            out["model"] = await model_time_ms(sandbox.endpoints.llm_url)
        await sandbox.start_traffic()
        async with asyncio.timeout(PREPARE_TIMEOUT):
            while True:  # the users' own set-up (reply chains) is not part of the load
                if not (await sandbox.traffic_stats()).get("preparing"):
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(config.warmup)
        pid = sandbox.proc.pid if sandbox.proc is not None else None
        first, sb_first = await sandbox.traffic_stats(), await sandbox.stats()
        bot0 = snapshot() if snapshot is not None else {}
        profiler = cProfile.Profile() if config.profile else None
        cpu0, sb0 = _self_cpu(), _proc_cpu_s(pid) if pid else None
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(config.duration)
        last = await sandbox.traffic_stats()
        if config.drain > 0:
            await _drain(sandbox, config, snapshot, out)
            last = await sandbox.traffic_stats()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(config.profile)
        cpu1, sb1 = _self_cpu(), _proc_cpu_s(pid) if pid else None
        sb_last = await sandbox.stats()
        bot1 = snapshot() if snapshot is not None else {}
        user_s, system_s = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        out.update(first=first, last=last, bot_cpu_s=user_s + system_s)
        out["cpu"] = {"user_s": user_s, "system_s": system_s}
        out["sandbox_cpu_s"] = sb1 - sb0 if sb0 is not None and sb1 is not None else None
        out["sandbox"] = {k: sb_last.get(k, 0) - sb_first.get(k, 0) for k in SANDBOX_COUNTS}
        out["sandbox"]["rate_limited"] = sb_last.get("rate_limited", {})
        out["bot"] = {k: bot1[k] - bot0.get(k, 0) for k in bot1}
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stop.set()


def _result(config: E2EConfig, out: dict[str, Any], llm: dict[str, Any] | None) -> E2EResult:
    first, last = out.get("first"), out.get("last")
    if not first or not last:
        error = out.get("error") or "the load window was never measured"
        return E2EResult.failed(config.kind, error)
    window = float(last["elapsed_s"]) - float(first["elapsed_s"])
    replies = int(last["replies_received"]) - int(first["replies_received"])
    sent = int(last["messages_sent"]) - int(first["messages_sent"])
    extra: dict[str, Any] = {
        key: out[key] for key in ("sandbox", "bot", "model", "drain_timed_out", "cpu") if key in out
    }
    extra["unanswered"] = last.get("unanswered")
    if llm:
        extra["llm_calls_by_api"] = llm.get("calls_by_api")
    return E2EResult(
        kind=config.kind,
        replies_per_s=ratio(replies, window),
        offered_per_s=ratio(sent, window),
        window_s=window,
        replies=replies,
        p50_ms=last.get("last_reply_p50_ms"),
        p95_ms=last.get("last_reply_p95_ms"),
        p99_ms=last.get("last_reply_p99_ms"),
        bot_cpu_s=float(out.get("bot_cpu_s", 0.0)),
        sandbox_cpu_s=out.get("sandbox_cpu_s"),
        llm_calls=int(llm["calls_total"]) if llm else None,
        error=out.get("error"),
        extra=extra,
    )


async def run_trial(config: E2EConfig) -> E2EResult:
    """One trial in this process: the sandbox in its own process, the bot (or bare bot) here."""
    from botctl.sandbox.client import SandboxProcess

    out: dict[str, Any] = {}
    stop = asyncio.Event()
    async with SandboxProcess(config.load) as sandbox:
        endpoints = sandbox.endpoints
        assert endpoints is not None
        if config.kind == "bare":
            await _run_bare(sandbox, endpoints, config, stop, out)
        else:
            await _run_bot(sandbox, endpoints, config, stop, out)
        llm: dict[str, Any] | None = None
        with contextlib.suppress(Exception):
            llm = await sandbox.llm_stats()
    return _result(config, out, llm)


async def _run_bare(
    sandbox: Any, endpoints: Any, config: E2EConfig, stop: asyncio.Event, out: dict[str, Any]
) -> None:
    from botctl.bench.bare_bot import run_bare_bot

    ready = asyncio.Event()

    async def when_ready() -> None:
        await ready.wait()
        await _measure(sandbox, config, stop, out)

    measuring = asyncio.create_task(when_ready())
    try:
        await run_bare_bot(endpoints.api_base, endpoints.gateway_url, stop=stop, ready=ready)
    except Exception as exc:
        out.setdefault("error", f"{type(exc).__name__}: {exc}")
    finally:
        measuring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await measuring


async def _run_bot(
    sandbox: Any, endpoints: Any, config: E2EConfig, stop: asyncio.Event, out: dict[str, Any]
) -> None:
    from bot.components import Components
    from bot.frontend.app import serve
    from bot.settings import Settings

    tasks: set[asyncio.Task[None]] = set()

    async def on_ready(components: Components) -> None:
        def snapshot() -> dict[str, int]:
            counters = components.engine.counters()
            return {
                "messages": counters["messages"],
                "replies": counters["replies"],
                "chains_fetched": components.chains.fetched,
            }

        # In a task of its own: serve() awaits on_ready, which must not hold it for the window.
        task = asyncio.create_task(_measure(sandbox, config, stop, out, snapshot))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    llm_url = endpoints.llm_url
    if config.api == "openai":
        llm_url = f"{llm_url}/v1"  # the sandbox LLM serves both protocols on one port
    with tempfile.TemporaryDirectory(prefix="botctl-bench-") as tmp:
        settings = Settings().with_changes(
            llm_url=llm_url,
            llm_api=config.api,
            discord_api=endpoints.api_base,
            discord_gateway=endpoints.gateway_url,
            metrics_file=str(Path(tmp) / "metrics.jsonl"),
            # Paced only against a sandbox that limits: a raw load answers every write at once.
            write_pacing=config.load.rate_limits,
        )
        extra: dict[str, Any] = {}
        if "client_options" in inspect.signature(serve).parameters:
            # Ready as soon as the bare bot is (its guild_ready_timeout), not 2 s later.
            extra["client_options"] = {"guild_ready_timeout": BARE_READY_TIMEOUT}
        # Without a drain the load is left running to the end (stopping it makes the sandbox wait
        # until the bot has read its backlog); a short drain, as replies after the window are
        # not measured.
        result = await serve(
            settings,
            "sandbox-token",
            stop,
            on_ready=on_ready,
            drain_timeout=1.0,
            tune_gc=True,  # as `botctl run` does: this child is the bot's process
            **extra,
        )
    if result.error:
        out.setdefault("error", result.error)
    for task in list(tasks):
        task.cancel()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config = E2EConfig.from_json(args[0]) if args else E2EConfig()
    result = eventloop.run(run_trial(config), loop=config.loop)
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
