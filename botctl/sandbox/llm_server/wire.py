"""What both protocols share on the wire: JSON bodies, tokens and the paced stream.

Both protocols stream through :func:`paced_write`, so the same knobs give the same timing (time to
the first token, tokens per second) whichever protocol a client speaks.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from botctl.sandbox.llm_server.messages import CHARS_PER_TOKEN


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    # Exactly "application/json", as Ollama and OpenAI send it, without aiohttp's added charset.
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


async def read_json(request: web.Request) -> dict[str, Any] | None:
    """The request's JSON object, or ``None`` when the body is not one."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def has_authorization(request: web.Request) -> bool:
    """Whether the request came with credentials (their value is never kept)."""
    return "Authorization" in request.headers


def split_tokens(text: str) -> list[str]:
    """The answer as the model's tokens: pieces of four characters."""
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def token_limit(value: Any) -> int | None:
    """A positive integer token cap from a request, else ``None`` (Ollama's ``-1``/``-2``: none)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


TOKEN_SLOT = "\x00token\x00"


def token_template(chunk: bytes) -> tuple[bytes, bytes]:
    """One encoded chunk whose content is :data:`TOKEN_SLOT`, cut around that JSON string: the
    chunk of any token is then ``head + orjson.dumps(token) + tail``. The server is a load
    generator and this is its hot loop: a dict encoded per token cost 2-4x more (24 µs for a
    75-token Ollama answer, 47 µs for OpenAI's bigger chunks, against 11 µs this way)."""
    head, found, tail = chunk.partition(orjson.dumps(TOKEN_SLOT))
    if not found:
        raise ValueError("the chunk holds no token slot")
    return head, tail


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def interval(tokens_per_second: float) -> float:
    """Seconds between tokens; ``0`` (all at once) for ``0`` or ``inf``."""
    tps = tokens_per_second
    return 0.0 if tps <= 0 or math.isinf(tps) else 1.0 / tps


async def paced_write(
    response: web.StreamResponse,
    count: int,
    every: float,
    encode: Callable[[int, int], bytes],
) -> None:
    """Write tokens ``0..count`` through ``encode(start, end)``, the first at once, then one every
    ``every`` seconds; every token that is due goes out in one write, so a slow event loop never
    slows the model down."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    while sent < count:
        due = count if not every else min(count, int((loop.time() - t0) / every) + 1)
        await response.write(encode(sent, due))
        sent = due
        if sent < count:
            await asyncio.sleep(max(0.0, t0 + sent * every - loop.time()))
