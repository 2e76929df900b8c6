"""The real local model's speed as a raw client sees it, against llama.cpp's own ``timings``.

Starts ``botctl.sandbox.local_model`` (llama.cpp's server, SmolLM2-135M-Instruct Q4_1, one CPU
thread, as ``botctl run --local-model`` does) and streams chat completions from it with aiohttp
(a fresh connection per request: llama.cpp closes each after a stream), temperature 0 and a fixed
seed, for a short prompt (~40 tokens) and a long one (a ~350-token history), alternated.

Per answer the client measures its time to first token (request sent -> first content delta) and
its decode rate ((tokens - 1) / (first -> last content delta)); the server reports, in the
``timings`` of its last chunk, ``prompt_ms`` (prompt processing) and ``predicted_per_second``.
``client TTFT - prompt_ms`` is what HTTP, the first token's decode and the client add. Prompts are
sent with ``cache_prompt: false`` (every prompt processed cold, as a new conversation is), and once
more with the cache on, to show what a slot that already holds the history saves.

    .venv/bin/python -m benchmarks.local_model_speed [--rounds 5] [--max-tokens 64] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp
import orjson

from botctl.bench.common import median
from botctl.sandbox.local_model import LocalModelProcess

SYSTEM = "You are a helpful assistant in a Discord server. Answer clearly."
SHORT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Explain what a Python closure is."},
]
_TURNS = [
    (
        "What is a list comprehension in Python?",
        "A list comprehension builds a list from an iterable in one expression, for example "
        "[x * x for x in range(10)] makes the squares of 0 to 9. It can filter with an if clause, "
        "as in [x for x in items if x > 0], and nest loops. It is usually faster and clearer than "
        "a for loop that appends to a list, but long ones are hard to read.",
    ),
    (
        "And a generator expression?",
        "A generator expression looks like a list comprehension in parentheses, (x * x for x in "
        "range(10)), but it produces values lazily, one at a time, instead of building the whole "
        "list in memory. It suits large or endless sequences and functions like sum() or any() "
        "that consume an iterable once. It can be iterated only once.",
    ),
    (
        "When should I use a dict instead of a list?",
        "Use a dict when you look things up by a key, such as a user id or a name: lookups take "
        "constant time on average. Use a list when order matters and you access items by position "
        "or iterate over all of them. Since Python 3.7 dicts keep insertion order too, so you can "
        "iterate over a dict in the order items were added.",
    ),
]
LONG = [
    {"role": "system", "content": SYSTEM},
    *[
        m
        for q, a in _TURNS
        for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
    ],
    {"role": "user", "content": "Now explain what a Python closure is, with an example."},
]


async def one_answer(
    url: str, messages: list[dict[str, str]], max_tokens: int, cache: bool
) -> dict[str, float]:
    body = {
        "model": "smollm2",
        "messages": messages,
        "stream": True,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "seed": 42,
        "cache_prompt": cache,
    }
    first = last = 0.0
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        sent = time.perf_counter()
        async with session.post(f"{url}/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                event = orjson.loads(line[6:])
                if event["choices"] and event["choices"][0]["delta"].get("content"):
                    last = time.perf_counter()
                    first = first or last
                if "usage" in event:
                    usage, timings = event["usage"], event.get("timings", {})
    tokens = int(usage["completion_tokens"])
    return {
        "prompt_tokens": float(usage["prompt_tokens"]),
        "completion_tokens": float(tokens),
        "client_ttft_ms": (first - sent) * 1000,
        "client_tokens_per_s": (tokens - 1) / (last - first) if tokens > 1 and last > first else 0,
        "server_prompt_ms": float(timings["prompt_ms"]),
        "server_cache_n": float(timings.get("cache_n", 0)),
        "server_predicted_per_second": float(timings["predicted_per_second"]),
    }


async def measure(rounds: int, max_tokens: int, threads: int) -> dict[str, Any]:
    results: dict[str, list[dict[str, float]]] = {"short": [], "long": [], "long, cached": []}
    async with LocalModelProcess(threads=threads) as model:
        await one_answer(model.url, SHORT, 4, cache=False)  # warm-up: page cache, allocations
        for i in range(rounds):
            order = [("short", SHORT), ("long", LONG)][:: 1 if i % 2 == 0 else -1]
            for name, messages in order:
                results[name].append(await one_answer(model.url, messages, max_tokens, False))
            # The same history again with the cache on: the slot that served it keeps it.
            await one_answer(model.url, LONG, 1, cache=True)
            results["long, cached"].append(await one_answer(model.url, LONG, max_tokens, True))
        info = dict(model.info)
    summary = {
        name: {key: median([r[key] for r in rows]) for key in rows[0]}
        for name, rows in results.items()
    }
    return {
        "model": info,
        "rounds": rounds,
        "max_tokens": max_tokens,
        "medians": summary,
        "raw": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(measure(args.rounds, args.max_tokens, args.threads))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['model']['model']} ({report['model']['gguf']}), {args.threads} thread(s), "
        f"median of {args.rounds}, max_tokens {args.max_tokens}"
    )
    head = (
        "prompt",
        "prompt tok",
        "out tok",
        "client TTFT ms",
        "server prompt_ms",
        "client tok/s",
        "server tok/s",
    )
    print(" | ".join(head))
    for name, m in report["medians"].items():
        print(
            " | ".join(
                [
                    name,
                    f"{m['prompt_tokens']:.0f}",
                    f"{m['completion_tokens']:.0f}",
                    f"{m['client_ttft_ms']:.0f}",
                    f"{m['server_prompt_ms']:.0f}",
                    f"{m['client_tokens_per_s']:.1f}",
                    f"{m['server_predicted_per_second']:.1f}",
                ]
            )
        )


if __name__ == "__main__":
    main()
