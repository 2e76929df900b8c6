"""The real local model's time to first token as the bot sees it, against llama.cpp's own timings.

Starts :class:`~botctl.sandbox.local_model.LocalModelProcess` (llama.cpp's server with the SmolLM2
GGUF, one thread, as ``botctl run --local-model`` does) and asks it questions through the bot's
own engine (:class:`bot.components.Components`, the ``openai`` protocol, dedup on), in this
process, without Discord: the bot's time to first token is the ``ttft_ms`` of the engine's
``llm_call`` event (from before the request is keyed to the first text), and the server's is
llama.cpp's ``timings.prompt_ms`` for the same call, which the OpenAI transport reads into
``Done.server_prompt_ms`` (tapped on its way to the engine). What the bot adds is the difference.

Alternated with each call, a bare aiohttp client sends the very bytes the transport sent (a fresh
connection each time, as llama.cpp closes it after a stream) and measures the same difference:
the floor that HTTP and sampling the first token cost any client. Every question is distinct (no
dedup window reuse, no whole-prompt cache hit), answers are capped at a few tokens.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson

from bot.percentile import percentile
from botctl.bench.budgets import Budget
from botctl.bench.common import median, rotated

__all__ = ["TTFT_BUDGET_MS", "run_local_ttft", "ttft_budget"]

TTFT_BUDGET_MS = 10.0
MAX_TOKENS = 8
SYSTEM = "You are a helpful assistant in a Discord server. Answer clearly."
TOPICS = (
    "a Python closure",
    "a list comprehension",
    "a hash map",
    "a race condition",
    "exponential backoff",
    "an LRU cache",
    "a websocket",
    "a mutex",
)


class _Tap:
    """The model's transport, keeping the final :class:`Done` and the payload of each call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.done: list[Any] = []
        self.payloads: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def send(self, payload: bytes) -> AsyncIterator[Any]:
        """What the engine calls (through the flight) with the body the transport built."""
        from bot.llm.types import Done

        self.payloads.append(payload)
        async for chunk in self.inner.send(payload):
            if isinstance(chunk, Done):
                self.done.append(chunk)
            yield chunk


async def _raw(url: str, payload: bytes) -> dict[str, float]:
    """A bare client's time to first content and llama.cpp's prompt_ms for ``payload``."""
    connector = aiohttp.TCPConnector(force_close=True)
    first: float | None = None
    prompt_ms: float | None = None
    async with aiohttp.ClientSession(connector=connector) as session:
        sent = time.perf_counter()
        headers = {"Content-Type": "application/json"}
        async with session.post(f"{url}/chat/completions", data=payload, headers=headers) as r:
            r.raise_for_status()
            async for line in r.content:
                if not line.startswith(b"data: {"):
                    continue
                event = orjson.loads(line[6:])
                choices = event.get("choices") or []
                if first is None and choices and (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter()
                if "timings" in event:
                    prompt_ms = float(event["timings"]["prompt_ms"])
    if first is None or prompt_ms is None:
        raise RuntimeError("the local model's answer had no text or no timings")
    return {"ttft_ms": (first - sent) * 1000, "server_prompt_ms": prompt_ms}


async def _measure(rounds: int, progress: Callable[[str], None] | None) -> dict[str, Any]:
    from bot.components import Components
    from bot.engine import Question
    from bot.settings import Settings
    from botctl.sandbox.local_model import LocalModelProcess

    samples: dict[str, list[dict[str, float]]] = {"bot": [], "raw": []}
    events: list[dict[str, Any]] = []
    async with LocalModelProcess(threads=1) as model:
        with tempfile.TemporaryDirectory(prefix="botctl-bench-") as tmp:
            settings = Settings().with_changes(
                models={
                    "local": {
                        "api": "openai",
                        "url": model.url,
                        "model": model.model,
                        "options": {"num_predict": MAX_TOKENS, "temperature": 0, "seed": 42},
                    }
                },
                routing={"default": "local"},
                system_prompt=SYSTEM,
                metrics_file=str(Path(tmp) / "metrics.jsonl"),
            )
            parts = Components(settings)
            tap = _Tap(parts.models.get("local").transport)
            parts.models.get("local").transport = cast(Any, tap)
            parts.metrics.add_observer(
                lambda e: events.append(e) if e.get("type") == "llm_call" else None
            )
            await parts.start()
            try:

                async def bot(i: int) -> None:
                    topic = TOPICS[i % len(TOPICS)]
                    question = Question(f"ttft-{i}", f"Question {i}: what is {topic}?")
                    async for _ in parts.engine.answer(question):
                        pass
                    event, done = events[-1], tap.done[-1]
                    samples["bot"].append(
                        {
                            "ttft_ms": float(event["ttft_ms"]),
                            "server_prompt_ms": float(done.server_prompt_ms),
                        }
                    )

                async def raw(i: int) -> None:
                    # What the bot sent, with a question of its own (no prompt cache hit).
                    body = orjson.loads(tap.payloads[-1])
                    topic = TOPICS[i % len(TOPICS)]
                    body["messages"][-1]["content"] = f"Question {i} again: what is {topic}?"
                    samples["raw"].append(await _raw(model.url, orjson.dumps(body)))

                await bot(-1)  # warm-up: the session, the slot, the page cache
                samples["bot"].clear()
                for i in range(rounds):
                    if progress is not None:
                        progress(f"local model time to first token, round {i + 1}/{rounds}")
                    for name in rotated(["bot", "raw"], i):
                        await (bot(i) if name == "bot" else raw(i))
            finally:
                await parts.close()
        info = dict(model.info)
    return {"model": info, "samples": samples}


def run_local_ttft(
    rounds: int = 10, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The figures, or ``{"available": False, "reason": ...}`` without the local runtime."""
    from botctl.sandbox.local_model.runtime import LocalModelError, find_gguf, require_runtime

    try:
        require_runtime()
        find_gguf(None)
    except LocalModelError as exc:
        return {"available": False, "reason": str(exc)}
    raw = asyncio.run(_measure(rounds, progress))
    out: dict[str, Any] = {"available": True, "rounds": rounds, "model": raw["model"]}
    for name, rows in raw["samples"].items():
        added = sorted(r["ttft_ms"] - r["server_prompt_ms"] for r in rows)
        out[name] = {
            "ttft_p50_ms": median([r["ttft_ms"] for r in rows]),
            "server_prompt_p50_ms": median([r["server_prompt_ms"] for r in rows]),
            "added_p50_ms": percentile(added, 50),
            "added_p95_ms": percentile(added, 95),
            "samples": rows,
        }
    return out


def ttft_budget(result: dict[str, Any]) -> Budget:
    name = "local model: time to first token the bot adds over llama.cpp's prompt_ms (p50)"
    if not result.get("available"):
        return Budget(name, None, "<=", TTFT_BUDGET_MS, unit="ms", reason=result.get("reason"))
    bot, raw = result["bot"], result["raw"]
    return Budget(
        name,
        bot["added_p50_ms"],
        "<=",
        TTFT_BUDGET_MS,
        unit="ms",
        detail=(
            f"bot TTFT p50 {bot['ttft_p50_ms']:.1f} ms vs server prompt_ms p50 "
            f"{bot['server_prompt_p50_ms']:.1f} ms; a bare client adds {raw['added_p50_ms']:.1f} ms "
            f"(p95 bot {bot['added_p95_ms']:.1f}, bare {raw['added_p95_ms']:.1f}); "
            f"{result['rounds']} calls each, alternated"
        ),
    )
