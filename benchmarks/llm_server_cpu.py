"""The sandbox LLM server's own CPU per streamed answer, Ollama (NDJSON) against OpenAI (SSE).

The server is the load generator of the bench row that compares the bot's Ollama path with its
OpenAI path, so both protocols must cost it about the same, or that row would measure the server.

``botctl sandbox llm`` runs as a child process (one per pace); this process streams answers from
it, ``--requests`` per protocol per round, ``--concurrency`` at a time, the protocols alternated in
a rotating order over ``--rounds``. The server's CPU is its own ``process_cpu_s`` (from
``GET /_sandbox/stats``) before and after each batch, so the client's cost never counts. Reported:
the median CPU milliseconds per answer for each protocol and the ratio OpenAI / Ollama.

Paced (one write per token), most of the cost is the kernel's: ``socket.send`` on loopback, which
here costs more for Ollama's ~110-byte chunks than for OpenAI's ~190-byte ones (padding Ollama's
chunks to OpenAI's size evens them out), so expect Ollama a little dearer paced, not the reverse.

    .venv/bin/python -m benchmarks.llm_server_cpu [--rounds 5] [--requests 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp

from botctl.analyze.web import free_port
from botctl.bench.common import median, ratio, rotated

START_TIMEOUT_S = 30.0
BATCH_TIMEOUT_S = 300.0
ANSWER_CHARS_DEFAULT = 300  # the server's default: 75 tokens


def _body(api: str, i: int) -> tuple[str, dict[str, Any]]:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": f"question number {i}: what is a closure?"},
    ]
    if api == "ollama":
        return "/api/chat", {"model": "llama3.2", "messages": messages, "stream": True}
    body = {"model": "llama3.2", "messages": messages, "stream": True}
    body["stream_options"] = {"include_usage": True}
    return "/v1/chat/completions", body


async def _server_cpu(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/_sandbox/stats") as r:
        return float((await r.json())["process_cpu_s"])


async def _batch(
    session: aiohttp.ClientSession, url: str, api: str, requests: int, concurrency: int
) -> float:
    """Server CPU seconds per answer over one batch of streamed answers."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        path, body = _body(api, i)
        async with gate, session.post(url + path, json=body) as r:
            raw = await r.read()
            if r.status != 200 or not raw:
                raise RuntimeError(f"{api}: HTTP {r.status}")

    before = await _server_cpu(session, url)
    async with asyncio.timeout(BATCH_TIMEOUT_S):
        await asyncio.gather(*(one(i) for i in range(requests)))
    return (await _server_cpu(session, url) - before) / requests


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await _server_cpu(session, url)
                return
            except aiohttp.ClientError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox LLM did not start") from None
                await asyncio.sleep(0.1)


async def _drive(
    url: str, process: subprocess.Popen[bytes], rounds: int, requests: int, concurrency: int
) -> dict[str, list[float]]:
    await _wait_ready(url, process)
    samples: dict[str, list[float]] = {"ollama": [], "openai": []}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for api in samples:  # warm-up: imports, first allocations
            await _batch(session, url, api, max(1, requests // 10), concurrency)
        for r in range(rounds):
            for api in rotated(list(samples), r):
                samples[api].append(await _batch(session, url, api, requests, concurrency))
    return samples


def measure(
    tokens_per_second: float, rounds: int, requests: int, concurrency: int
) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, "-m", "botctl", "sandbox", "llm", "--port", str(port)]
    cmd += ["--latency", "0", "--tokens-per-second", f"{tokens_per_second:g}"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        samples = asyncio.run(_drive(url, process, rounds, requests, concurrency))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    ollama_ms, openai_ms = (median(samples[api]) * 1000 for api in ("ollama", "openai"))
    return {
        "tokens_per_second": tokens_per_second,
        "tokens_per_answer": ANSWER_CHARS_DEFAULT // 4,
        "requests_per_batch": requests,
        "rounds": rounds,
        "concurrency": concurrency,
        "cpu_ms_per_answer": {"ollama": ollama_ms, "openai": openai_ms},
        "samples_ms": {api: [s * 1000 for s in values] for api, values in samples.items()},
        "ratio_openai_over_ollama": ratio(openai_ms, ollama_ms),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--paces",
        default="0,200",
        help="tokens per second to measure, comma-separated (0: every token in one write)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [
        measure(float(pace), args.rounds, args.requests, args.concurrency)
        for pace in args.paces.split(",")
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        cpu = row["cpu_ms_per_answer"]
        pace = row["tokens_per_second"] or "all at once"
        print(
            f"pace {pace} tok/s, {row['tokens_per_answer']} tokens/answer: server CPU per answer "
            f"ollama {cpu['ollama']:.3f} ms, openai {cpu['openai']:.3f} ms, "
            f"ratio openai/ollama {row['ratio_openai_over_ollama']:.2f}x "
            f"(median of {row['rounds']} rounds x {row['requests_per_batch']} answers)"
        )


if __name__ == "__main__":
    main()
