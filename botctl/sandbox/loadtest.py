"""What Discord's rate limits cost the sandbox: REST requests per second and server CPU per request.

``python -m botctl.sandbox.loadtest [--seconds S] [--concurrency N]`` starts the sandbox's Discord
server in a child process three times — without rate limits, with Discord's, and with limits so high
that every request passes (the limiter's bookkeeping and headers on every answer, no 429) — and posts
messages over 100 channels at it from this process for ``S`` seconds each, as fast as ``N``
connections allow. It prints one JSON object: per mode, requests per second, the server's CPU
microseconds per request (from ``/proc``, Linux) and the answers by status.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from botctl.sandbox.discord_server import DiscordServer, RateLimits

__all__ = ["main", "measure"]

CHANNELS = 100
_UNLIMITED = 10**9
MODES: dict[str, bool | RateLimits] = {
    "off": False,
    "discord": True,
    "all_pass": RateLimits(
        global_per_second=_UNLIMITED, messages=_UNLIMITED, edits=_UNLIMITED, typing=_UNLIMITED
    ),
}


def _serve(limits: bool | RateLimits, conn: Connection) -> None:
    async def run() -> None:
        server = DiscordServer(channels=CHANNELS, users=10, rate_limits=limits)
        await server.start()
        conn.send((server.api_base, server.channel_ids))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await server.stop()

    asyncio.run(run())


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(api: str, channels: list[str], seconds: float, concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    headers = {"Authorization": "Bot loadtest"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def worker(n: int) -> None:
            i = n
            while time.monotonic() < deadline:
                url = f"{api}/channels/{channels[i % len(channels)]}/messages"
                async with http.post(url, json={"content": "load"}) as response:
                    await response.read()
                    statuses[response.status] += 1
                i += concurrency

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return statuses


def measure(mode: str, seconds: float, concurrency: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(MODES[mode], child), daemon=True)
    proc.start()
    try:
        api, channels = parent.recv()
        assert proc.pid is not None
        cpu0, t0 = _cpu_s(proc.pid), time.monotonic()
        statuses = asyncio.run(_load(api, channels, seconds, concurrency))
        cpu1, t1 = _cpu_s(proc.pid), time.monotonic()
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    total = sum(statuses.values())
    return {
        "requests_per_s": round(total / (t1 - t0), 1),
        "server_cpu_us_per_request": round((cpu1 - cpu0) * 1e6 / total, 1) if total else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m botctl.sandbox.loadtest", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="load per mode (default 5)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections (default 32)")
    parser.add_argument("--rounds", type=int, default=1, help="times each mode runs (default 1)")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            results[mode].append(measure(mode, args.seconds, args.concurrency))
    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
