"""The OpenAI-compatible protocol: ``POST {base}/chat/completions`` streamed as SSE to ``[DONE]``.

Served by OpenAI, OpenRouter, vLLM, LM Studio, llama.cpp's ``llama-server`` and Ollama's own
``/v1``; ``base_url`` ends in ``/v1``. The answer is asked with ``stream: true`` and
``stream_options.include_usage`` (token counts come in a last chunk with no choices); llama.cpp also
sends its ``timings``. The ``data:`` lines of one network read become one ``str`` delta. An error
arrives as an HTTP status with ``{"error": {"message", ...}}`` or, mid-stream, as a ``data:`` event
holding ``error``. A server that ignores ``stream`` and answers one JSON object is read as well.

Messages are built in Ollama's shape (images as base64 in ``images``); they are sent here as
OpenAI spells them (content parts with ``image_url`` data URLs), and options too (``num_predict``
becomes ``max_tokens``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from bot.llm.errors import LLMError, LLMResponseError, LLMStreamError
from bot.llm.http import HTTPTransport
from bot.llm.types import Api, ChatRequest, Chunk, Done

__all__ = ["OpenAITransport", "openai_messages", "openai_options"]

# Ollama's option names and what OpenAI calls them; OpenAI's own names pass as they are.
_RENAMED = {"num_predict": "max_tokens"}
_OPENAI_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "logit_bias",
        "response_format",
    }
)
_IMAGE_TYPES = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
)


def openai_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Sampling options as OpenAI names them; those it has no name for are left out."""
    out: dict[str, Any] = {}
    for name, value in (options or {}).items():
        name = _RENAMED.get(name, name)
        if name == "max_tokens" and isinstance(value, int) and value < 0:
            continue  # Ollama's -1 is "no limit"; OpenAI has no limit unless one is given
        if name in _OPENAI_OPTIONS:
            out[name] = value
    return out


def _image_type(data: str) -> str:
    head = base64.b64decode(data[:16] + "=" * (-len(data[:16]) % 4), validate=False)
    return next((kind for magic, kind in _IMAGE_TYPES if head.startswith(magic)), "image/png")


def openai_messages(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Messages with ``images`` as content parts; the others as they are (no copy)."""
    out: list[Mapping[str, Any]] = []
    for message in messages:
        images = message.get("images")
        if not images:
            out.append(message)
            continue
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.get("content") or ""}]
        for data in images:
            url = f"data:{_image_type(data)};base64,{data}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
        out.append({"role": message["role"], "content": parts})
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _Answer:
    """What the events of one answer said so far (text is yielded, the rest kept for Done)."""

    __slots__ = ("model", "prompt_ms", "reason", "tokens_in", "tokens_out", "total_ms")

    def __init__(self) -> None:
        self.reason: str | None = None
        self.model: str | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.prompt_ms: float | None = None
        self.total_ms: float | None = None

    def read(self, data: Any, url: str) -> str:
        """One event's text; keeps its finish reason, usage and timings."""
        if not isinstance(data, dict):
            raise LLMResponseError("an event of the stream is not a JSON object", url=url)
        error = data.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            if not isinstance(message, str) or not message.strip():
                kind = error.get("type") if isinstance(error, dict) else None
                message = (
                    f"the server reported an error ({kind})"
                    if kind
                    else "the server reported an error"
                )
            raise LLMStreamError(message, url=url)
        if isinstance(data.get("model"), str):
            self.model = data["model"]
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.tokens_in = _int(usage.get("prompt_tokens"))
            self.tokens_out = _int(usage.get("completion_tokens"))
        timings = data.get("timings")
        if isinstance(timings, dict):
            self.prompt_ms = _float(timings.get("prompt_ms"))
            predicted = _float(timings.get("predicted_ms"))
            if self.prompt_ms is not None and predicted is not None:
                self.total_ms = self.prompt_ms + predicted
        choices = data.get("choices")
        if not isinstance(choices, list):
            raise LLMResponseError("an event of the stream has no 'choices'", url=url)
        text = ""
        for choice in choices[:1]:
            if not isinstance(choice, dict):
                raise LLMResponseError("a choice is not a JSON object", url=url)
            if isinstance(choice.get("finish_reason"), str):
                self.reason = choice["finish_reason"]
            part = choice.get("delta") or choice.get("message") or {}
            content = part.get("content") if isinstance(part, dict) else None
            if content is not None and not isinstance(content, str):
                raise LLMResponseError("a chunk's content is not a string", url=url)
            text = content or ""
        return text

    def done(self) -> Done:
        return Done(
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            reason=self.reason,
            model=self.model,
            server_prompt_ms=self.prompt_ms,
            server_total_ms=self.total_ms,
        )


class OpenAITransport(HTTPTransport):
    """An OpenAI-compatible server; ``base_url`` ends in ``/v1``."""

    api: Api = "openai"

    def payload(self, request: ChatRequest) -> bytes:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": openai_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            **openai_options(request.options),
        }
        if request.format is not None:
            body["response_format"] = (
                {"type": "json_object"} if request.format == "json" else request.format
            )
        if request.tools is not None:
            body["tools"] = request.tools
        return orjson.dumps(body)

    async def send(self, payload: bytes) -> AsyncIterator[Chunk]:
        deadline = asyncio.get_running_loop().time() + self.timeout
        response, first = await self._post("/chat/completions", payload, deadline)
        url = self.base_url
        answer = _Answer()
        if not response.content_type.startswith("text/event-stream"):
            # A server that ignored `stream` (or a proxy that buffered it): one JSON answer.
            body = bytearray()
            async with contextlib.aclosing(self._lines(response, deadline, first)) as reads:
                async for lines in reads:
                    body += b"\n".join(lines) + b"\n"
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise LLMResponseError("the answer is neither SSE nor JSON", url=url) from None
            text = answer.read(data, url)
            if text:
                yield text
            yield answer.done()
            return
        async with contextlib.aclosing(self._lines(response, deadline, first)) as reads:
            async for lines in reads:
                texts: list[str] = []
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank lines, `event:`, `: keep-alive` comments
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        if texts:
                            yield "".join(texts)
                        yield answer.done()
                        await self._drain(response, deadline)
                        return
                    try:
                        text = answer.read(orjson.loads(data), url)
                    except orjson.JSONDecodeError:
                        error: LLMError = LLMResponseError("an event is not JSON", url=url)
                    except LLMError as exc:
                        error = exc
                    else:
                        if text:
                            texts.append(text)
                        continue
                    if texts:  # the text before a mid-stream error still reaches the user
                        yield "".join(texts)
                    raise error
                if texts:
                    yield texts[0] if len(texts) == 1 else "".join(texts)
        if answer.reason is not None:  # finished, only the [DONE] marker missing
            yield answer.done()
            return
        raise LLMResponseError("the stream ended before its final chunk", url=url)

    async def probe(self, timeout: float = 2.0) -> str | None:
        models = await self.models(timeout)
        return None if models is None else f"OpenAI-compatible server at {self.base_url}"

    async def models(self, timeout: float = 5.0) -> list[str] | None:
        """The models the server lists, or ``None`` if it does not say."""
        listed = await self.list_models(timeout)
        return None if isinstance(listed, LLMError) else listed

    async def list_models(self, timeout: float = 5.0) -> list[str] | LLMError:
        """The models ``/models`` lists, else the error that says why not (for probes)."""
        try:
            data = await self._json("GET", "/models", None, timeout)
        except LLMError as exc:
            return exc
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return LLMResponseError("/models did not list models", url=self.base_url)
        return [str(m["id"]) for m in items if isinstance(m, dict) and m.get("id")]

    async def embed(
        self, model: str, texts: Sequence[str], timeout: float = 60.0
    ) -> list[list[float]]:
        data = await self._json(
            "POST", "/embeddings", {"model": model, "input": list(texts)}, timeout
        )
        items = data.get("data") if isinstance(data, dict) else None
        if (
            not isinstance(items, list)
            or len(items) != len(texts)
            or not all(isinstance(i, dict) and isinstance(i.get("embedding"), list) for i in items)
        ):
            raise LLMResponseError("/embeddings gave no embeddings", url=self.base_url)
        ordered = sorted(items, key=lambda item: item.get("index", 0))
        return [item["embedding"] for item in ordered]
