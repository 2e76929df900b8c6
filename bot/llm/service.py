"""``OllamaService``: the public, standalone Ollama client — a transport behind the deduplicator.

The bot itself goes through :class:`~bot.engine.ChatEngine`; this class is for code that wants
Ollama's ``/api/chat`` with the bot's deduplication and nothing else::

    async with OllamaService("http://127.0.0.1:11434", "llama3.2") as llm:
        answer = await llm.chat([{"role": "user", "content": "hi"}])
        print(answer["message"]["content"], llm.get_cache_stats())

``chat()`` returns a dict shaped like Ollama's own non-streamed answer; ``chat(stream=True)``
returns an async iterator of dicts shaped like its streamed lines. Identical requests in flight (or
within the window) share one upstream call, whether streamed or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from bot.dedup import RequestDeduplicator
from bot.llm.ollama import OllamaTransport
from bot.llm.types import ChatRequest, Chunk, Done
from bot.settings import DEFAULT_LLM_URL, DEFAULT_MODEL

__all__ = ["OllamaService"]


def _done_fields(done: Done, model: str) -> dict[str, Any]:
    return {
        "model": done.model or model,
        "done": True,
        "done_reason": done.reason,
        "prompt_eval_count": done.tokens_in,
        "eval_count": done.tokens_out,
    }


class OllamaService:
    """An Ollama chat client with request deduplication (one ``aiohttp`` session)."""

    def __init__(
        self,
        base_url: str = DEFAULT_LLM_URL,
        model: str = DEFAULT_MODEL,
        *,
        timeout: float = 120.0,
        dedup: bool = True,
        dedup_window: float = 5.0,
        deduplicator: RequestDeduplicator | None = None,
        transport: OllamaTransport | None = None,
    ) -> None:
        self.transport = transport or OllamaTransport(base_url, timeout=timeout)
        self.model = model
        self.dedup = dedup
        self.deduplicator = deduplicator or RequestDeduplicator(dedup_window)

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> OllamaService:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _chunks(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        transport = self.transport
        if not self.dedup:
            return transport.stream(request)
        payload = transport.payload(request)
        return self.deduplicator.join(transport.key(payload), lambda: transport.send(payload))

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        stream: bool = False,
    ) -> Any:
        """The answer as Ollama's JSON (a dict), or with ``stream=True`` an async iterator of its
        streamed lines. Raises :class:`~bot.llm.errors.LLMError` on failure."""
        name = model or self.model
        request = ChatRequest(name, list(messages), options, format, tools)
        if stream:
            return self._lines(request, name)
        parts: list[str] = []
        final = Done()
        async for chunk in self._chunks(request):
            if type(chunk) is str:
                parts.append(chunk)
            elif isinstance(chunk, Done):
                final = chunk
        message: dict[str, Any] = {"role": "assistant", "content": "".join(parts)}
        if final.tool_calls:
            message["tool_calls"] = list(final.tool_calls)
        return {"message": message, **_done_fields(final, name)}

    async def _lines(self, request: ChatRequest, name: str) -> AsyncIterator[dict[str, Any]]:
        async for chunk in self._chunks(request):
            if type(chunk) is str:
                yield {
                    "model": name,
                    "message": {"role": "assistant", "content": chunk},
                    "done": False,
                }
            elif isinstance(chunk, Done):
                yield {"message": {"role": "assistant", "content": ""}, **_done_fields(chunk, name)}

    def get_cache_stats(self) -> dict[str, Any]:
        return {"deduplication": self.deduplicator.get_stats(), "dedup_enabled": self.dedup}
