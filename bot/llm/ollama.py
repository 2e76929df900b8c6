"""Ollama's native protocol: ``POST /api/chat`` streamed as NDJSON, ``/api/version``, ``/api/embed``.

The transport asks with ``"stream": true`` always and turns the lines of each network read into one
``str`` delta (a chunk costs a trip through the flight, the answer and the delivery, so fewer is
cheaper), then a :class:`~bot.llm.types.Done` from the final line. Every line is checked for
Ollama's ``{"error": ...}``, which arrives mid-stream with the HTTP status still 200.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson

from bot.llm.errors import LLMError, LLMResponseError, LLMStreamError
from bot.llm.http import HTTPTransport
from bot.llm.types import Api, ChatRequest, Chunk, Done

__all__ = ["OllamaTransport"]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ms(nanoseconds: Any) -> float | None:
    value = _int(nanoseconds)
    return None if value is None else value / 1e6


def _decode_read(lines: list[bytearray], url: str) -> list[Any]:
    """The lines of one network read, decoded in one call (an answer sent at once is ~75 lines:
    one decode of an array costs a fraction of 75). A bad line is found line by line."""
    full = [line for line in lines if line]
    try:
        items: list[Any] = orjson.loads(b"[" + b",".join(full) + b"]")
        return items
    except orjson.JSONDecodeError:
        pass
    decoded = []
    for line in full:
        if not line.strip():
            continue  # a blank line between two: nothing to read (and no error)
        try:
            decoded.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            decoded.append(_BAD_LINE)  # read as far as the good lines go, then fail
            break
    return decoded


_BAD_LINE = object()


def _parse(data: Any, url: str) -> str | Done:
    """One decoded NDJSON line (past the hot path of plain tokens): its text, a :class:`Done` for
    the final line (with any text or tool calls it carries: a server that ignores ``stream`` sends
    the answer there), or the error it says."""
    if data is _BAD_LINE:
        raise LLMResponseError("a line of the stream is not JSON", url=url)
    if not isinstance(data, dict):
        raise LLMResponseError("a line of the stream is not a JSON object", url=url)
    error = data.get("error")
    if error is not None:
        raise LLMStreamError(str(error), url=url)
    done = data.get("done")
    if not isinstance(done, bool):
        raise LLMResponseError("a chunk has no 'done' field", url=url)
    message = data.get("message")
    content: Any = ""
    calls: Any = None
    if isinstance(message, dict):
        content = message.get("content") or ""
        calls = message.get("tool_calls")
    elif not done or message is not None:
        raise LLMResponseError("a chunk has no 'message' object", url=url)
    if not isinstance(content, str):
        raise LLMResponseError("a chunk's content is not a string", url=url)
    if not done and not calls:
        return content
    model = data.get("model")
    reason = data.get("done_reason")
    return Done(
        text=content,
        tool_calls=tuple(c for c in calls if isinstance(c, dict))
        if isinstance(calls, list)
        else (),
        done=done,
        tokens_in=_int(data.get("prompt_eval_count")),
        tokens_out=_int(data.get("eval_count")),
        reason=reason if isinstance(reason, str) else None,
        model=model if isinstance(model, str) else None,
        server_prompt_ms=_ms(data.get("prompt_eval_duration")),
        server_total_ms=_ms(data.get("total_duration")),
    )


class OllamaTransport(HTTPTransport):
    """An Ollama server (or anything speaking its native API)."""

    api: Api = "ollama"

    def __init__(self, base_url: str, *, keep_alive: str | None = None, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.keep_alive = keep_alive

    def payload(self, request: ChatRequest) -> bytes:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "stream": True,
        }
        if request.options is not None:
            body["options"] = request.options
        if request.format is not None:
            body["format"] = request.format
        if request.tools is not None:
            body["tools"] = request.tools
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        return orjson.dumps(body)

    async def send(self, payload: bytes) -> AsyncIterator[Chunk]:
        deadline = asyncio.get_running_loop().time() + self.timeout
        response, first = await self._post("/api/chat", payload, deadline)
        url = self.base_url
        calls: list[dict[str, Any]] = []
        async with contextlib.aclosing(self._lines(response, deadline, first)) as reads:
            async for lines in reads:
                texts: list[str] = []
                for data in _decode_read(lines, url):
                    # A plain token line, inline: ~one per token, the hot path of every answer.
                    if type(data) is dict and data.get("done") is False and "error" not in data:
                        message = data.get("message")
                        if type(message) is dict and "tool_calls" not in message:
                            token = message.get("content")
                            if type(token) is str:
                                if token:
                                    texts.append(token)
                                continue
                    try:
                        item = _parse(data, url)
                    except LLMError:
                        if texts:  # the text before a mid-stream error still reaches the user
                            yield "".join(texts)
                        raise
                    if type(item) is str:
                        if item:
                            texts.append(item)
                        continue
                    assert isinstance(item, Done)
                    if item.text:
                        texts.append(item.text)
                    if texts:
                        yield "".join(texts)
                    if not item.done:  # tool calls mid-stream: kept for the final Done
                        calls.extend(item.tool_calls)
                        texts = []
                        continue
                    if calls or item.text:  # the final line's text went out above
                        item = replace(item, tool_calls=(*calls, *item.tool_calls), text="")
                    yield item
                    await self._drain(response, deadline)
                    return
                if texts:
                    yield texts[0] if len(texts) == 1 else "".join(texts)
        raise LLMResponseError("the stream ended before its final chunk", url=url)

    async def probe(self, timeout: float = 2.0) -> str | None:
        data = await self._try_json("/api/version", timeout)
        version = data.get("version") if isinstance(data, dict) else None
        return f"Ollama {version}" if isinstance(version, str) else None

    async def models(self, timeout: float = 5.0) -> list[str] | None:
        """The models the server has (``/api/tags``), or ``None`` if it does not say."""
        data = await self._try_json("/api/tags", timeout)
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            return None
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    async def embed(
        self, model: str, texts: Sequence[str], timeout: float = 60.0
    ) -> list[list[float]]:
        data = await self._json(
            "POST", "/api/embed", {"model": model, "input": list(texts)}, timeout
        )
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise LLMResponseError("/api/embed gave no embeddings", url=self.base_url)
        return vectors
