"""The Ollama client: ``/api/chat`` streamed, deduplicated, with explicit timeouts and retries.

One mechanism serves both forms: upstream is always asked with ``"stream": true``, and
:meth:`OllamaService.chat` (non-streamed) simply collects :meth:`OllamaService.chat_stream`. So a
streamed and a non-streamed identical request share one upstream call through
:meth:`RequestDeduplicator.stream`, whose key covers model, messages, options, format and tools.

The upstream iteration (the *source*) runs in the deduplicator's own task, or in the caller's task
when dedup is off; it therefore bounds every single await with a deadline instead of wrapping a
context-manager timeout around its ``yield``s (which would cancel whatever the consumer is doing
when it fires).

Timeouts: ``connect_timeout`` for the TCP connect, ``first_byte_timeout`` (default ``timeout``) from
sending the request to its first body byte, ``timeout`` for the whole call including retries. 429
and 503 are retried with exponential backoff and full jitter (or ``Retry-After``), while the total
deadline allows it. Failures are :mod:`bot.llm_errors`. One ``llm_call`` metrics event is logged
per caller, never with message content; credentials in ``base_url`` go into an
``Authorization: Basic`` header and never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson

from bot.dedup import KeyRequest, RequestDeduplicator
from bot.llm_errors import (
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMStreamError,
    LLMTimeoutError,
    LLMUnreachableError,
    TimeoutPhase,
    redact_url,
)

if TYPE_CHECKING:
    from bot.metrics import MetricsService

MAX_CONNECTIONS = 512

__all__ = ["ChatChunk", "ChatResult", "ChatStream", "DedupRole", "OllamaService"]

DedupRole = Literal["leader", "follower", "window", "off"]

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llama3.2"
_RETRY_STATUSES = frozenset({429, 503})
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 8.0
# A line longer than this is not something Ollama sends; refusing it bounds memory.
_MAX_LINE = 16 * 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024
_ERROR_TEXT_CHARS = 300
# After the final chunk only the end of the chunked body is expected; don't wait long for it.
_DRAIN_S = 1.0
_HEADERS = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}


# --- results ---------------------------------------------------------------------------------


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One line of the stream. The last one has ``done=True`` and the final fields."""

    content: str
    done: bool = False
    model: str | None = None
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_duration: int | None = None
    eval_duration: int | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()


_RESULT_KEYS = frozenset(
    {
        "model",
        "done_reason",
        "prompt_eval_count",
        "eval_count",
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    }
)


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole answer. ``result["message"]["content"]`` works as on Ollama's JSON; ``str()`` is
    the content. Durations are nanoseconds as Ollama reports them; ``latency_ms`` and ``ttft_ms``
    are this caller's own (request to last chunk, request to first content)."""

    content: str
    model: str
    role: str = "assistant"
    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_duration: int | None = None
    eval_duration: int | None = None
    dedup: DedupRole = "off"
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = list(self.tool_calls)
        return message

    def __getitem__(self, key: str) -> Any:
        if key == "message":
            return self.message
        if key == "done":
            return True
        if key in _RESULT_KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __str__(self) -> str:
        return self.content


class ChatStream:
    """One caller's answer as it arrives: an async iterator of :class:`ChatChunk`.

    ``role`` (leader/follower/window/off) is known at once; ``result`` is the :class:`ChatResult`
    once the final chunk has arrived. Ends with the final chunk; raises an :class:`LLMError` if the
    answer fails. Use ``collect()`` for the whole answer, ``aclose()`` (or ``async with``) to give
    up early.
    """

    __slots__ = (
        "_closed",
        "_inner",
        "_logged",
        "_on_end",
        "_parts",
        "_started",
        "_ttft",
        "model",
        "result",
        "role",
        "stream",
    )

    def __init__(
        self,
        inner: AsyncIterator[ChatChunk],
        role: DedupRole,
        *,
        model: str,
        stream: bool,
        on_end: Callable[[ChatStream, BaseException | None], None] | None = None,
    ) -> None:
        self.role: DedupRole = role
        self.model = model
        self.stream = stream
        self.result: ChatResult | None = None
        self._inner = inner
        self._on_end = on_end
        self._started = time.perf_counter()
        self._ttft: float | None = None
        self._parts: list[str] = []
        self._closed = False
        self._logged = False

    @property
    def latency_ms(self) -> float:
        """Milliseconds since the request (to the final chunk once finished)."""
        if self.result is not None:
            return self.result.latency_ms
        return (time.perf_counter() - self._started) * 1000

    @property
    def ttft_ms(self) -> float | None:
        return None if self._ttft is None else self._ttft * 1000

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self._closed = True
            if self.result is None:
                error = LLMResponseError("the stream ended before its final chunk")
                self._end(error)
                raise error from None
            raise
        except BaseException as exc:
            self._closed = True
            self._end(exc)
            raise
        if self._ttft is None and (chunk.content or chunk.done):
            self._ttft = time.perf_counter() - self._started
        if chunk.content:
            self._parts.append(chunk.content)
        if chunk.done and self.result is None:
            self.result = self._build(chunk)
            self._end(None)
        return chunk

    def _build(self, final: ChatChunk) -> ChatResult:
        return ChatResult(
            content="".join(self._parts),
            model=final.model or self.model,
            done_reason=final.done_reason,
            prompt_eval_count=final.prompt_eval_count,
            eval_count=final.eval_count,
            total_duration=final.total_duration,
            load_duration=final.load_duration,
            prompt_eval_duration=final.prompt_eval_duration,
            eval_duration=final.eval_duration,
            dedup=self.role,
            latency_ms=(time.perf_counter() - self._started) * 1000,
            ttft_ms=self.ttft_ms,
            tool_calls=final.tool_calls,
        )

    def _end(self, error: BaseException | None) -> None:
        if self._logged:
            return
        self._logged = True
        if self._on_end is not None:
            self._on_end(self, error)

    async def collect(self) -> ChatResult:
        """Read to the end and return the whole answer (raises what the stream raises)."""
        try:
            async for _ in self:
                pass
        finally:
            await self.aclose()
        if self.result is None:  # closed early by someone else
            raise LLMResponseError("the stream was closed before its final chunk")
        return self.result

    async def aclose(self) -> None:
        """Stop reading; a caller that leaves before the end is logged as cancelled."""
        if not self._closed:
            self._closed = True
            if self.result is None:
                self._end(asyncio.CancelledError())
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# --- helpers ---------------------------------------------------------------------------------


def _normalize_base(base_url: str) -> tuple[str, str | None]:
    """The base URL without credentials (and without a trailing slash), and the ``Authorization``
    header value its credentials make, if any."""
    url = base_url.strip()
    if "://" not in url:
        # OLLAMA_HOST style ("host:port"); the ollama CLI defaults the port to 11434.
        url = f"http://{url}"
        parts = urlsplit(url)
        if parts.port is None and parts.hostname:
            url = url.replace(parts.netloc, f"{parts.netloc}:11434", 1)
    parts = urlsplit(url)
    auth = None
    if parts.username is not None:
        # By hand: aiohttp.BasicAuth is deprecated and its replacement only exists in new aiohttp.
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(creds).decode("ascii")
    return redact_url(url).rstrip("/"), auth


def _error_text(body: bytes | bytearray, reason: str | None) -> str:
    """Ollama's own message: ``{"error": ...}``, else the body's text, else the reason phrase."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("error") is not None:
        text = str(data["error"])
    else:
        text = body.decode("utf-8", "replace")
    text = " ".join(text.split())
    if len(text) > _ERROR_TEXT_CHARS:
        text = text[: _ERROR_TEXT_CHARS - 1] + "…"
    return text or (reason or "")


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _backoff(attempt: int) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0.0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt))


def _merge(pending: list[str | ChatChunk]) -> ChatChunk:
    """The not-done lines of one read as one chunk."""
    if len(pending) == 1 and isinstance(pending[0], ChatChunk):
        return pending[0]
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    model: str | None = None
    for item in pending:
        if isinstance(item, str):
            texts.append(item)
        else:
            texts.append(item.content)
            calls.extend(item.tool_calls)
            model = model or item.model
    return ChatChunk("".join(texts), model=model, tool_calls=tuple(calls))


def _parse_line(line: bytes | bytearray, url: str) -> str | ChatChunk:
    """One NDJSON line: a plain token line is its text (the hot path: ~one per token, merged
    per read by the caller); a line with tool calls, or the final one, is a :class:`ChatChunk`."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise LLMResponseError("a line of the stream is not JSON", url=url) from None
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
    tool_calls: tuple[dict[str, Any], ...] = ()
    if isinstance(message, dict):
        content = message.get("content") or ""
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            tool_calls = tuple(call for call in calls if isinstance(call, dict))
    elif not done or message is not None:
        raise LLMResponseError("a chunk has no 'message' object", url=url)
    if not isinstance(content, str):
        raise LLMResponseError("a chunk's content is not a string", url=url)
    model = data.get("model")
    if not done:
        if not tool_calls:
            return content
        return ChatChunk(
            content, model=model if isinstance(model, str) else None, tool_calls=tool_calls
        )
    reason = data.get("done_reason")
    return ChatChunk(
        content=content,
        done=True,
        model=model if isinstance(model, str) else None,
        done_reason=reason if isinstance(reason, str) else None,
        prompt_eval_count=_opt_int(data.get("prompt_eval_count")),
        eval_count=_opt_int(data.get("eval_count")),
        total_duration=_opt_int(data.get("total_duration")),
        load_duration=_opt_int(data.get("load_duration")),
        prompt_eval_duration=_opt_int(data.get("prompt_eval_duration")),
        eval_duration=_opt_int(data.get("eval_duration")),
        tool_calls=tool_calls,
    )


# --- the service -----------------------------------------------------------------------------


class OllamaService:
    """An Ollama client with one ``aiohttp.ClientSession``, request deduplication and metrics."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        first_byte_timeout: float | None = None,
        deduplicator: RequestDeduplicator | None = None,
        dedup: bool = True,
        dedup_window: float = 5.0,
        metrics: MetricsService | None = None,
        session: aiohttp.ClientSession | None = None,
        max_retries: int = 3,
        keep_alive: str | None = None,
    ) -> None:
        if not timeout > 0 or not connect_timeout > 0:
            raise ValueError("timeout and connect_timeout must be > 0 seconds")
        if first_byte_timeout is not None and not first_byte_timeout > 0:
            raise ValueError("first_byte_timeout must be > 0 seconds")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url, auth = _normalize_base(base_url)
        self._post_headers = dict(_HEADERS)
        self._get_headers: dict[str, str] | None = None
        if auth is not None:
            self._post_headers["Authorization"] = auth
            self._get_headers = {"Authorization": auth}
        self.model = model
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.first_byte_timeout = float(
            first_byte_timeout if first_byte_timeout is not None else timeout
        )
        self.dedup = dedup
        self.max_retries = max_retries
        self.keep_alive = keep_alive
        self._metrics = metrics
        self._dedup = (
            deduplicator if deduplicator is not None else RequestDeduplicator(dedup_window)
        )
        self._session = session
        self._owns_session = session is None
        self._chat_url = f"{self.base_url}/api/chat"
        # total=None: the deadlines are ours (per phase); aiohttp only bounds the TCP connect.
        self._client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout)

    # lifecycle

    @property
    def deduplicator(self) -> RequestDeduplicator:
        return self._dedup

    async def start(self) -> None:
        """Open the HTTP session (done lazily on the first call otherwise)."""
        self._ensure_session()

    def _ensure_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or (self._owns_session and session.closed):
            session = aiohttp.ClientSession(
                # Ollama queues up to 512 requests (OLLAMA_MAX_QUEUE); aiohttp's default of 100
                # connections would queue the rest in the client, hiding them from the server.
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                raise_for_status=False,
            )
            self._session = session
        return session

    async def close(self) -> None:
        """Close the session this service opened (never an injected one); idempotent."""
        session = self._session
        if self._owns_session and session is not None:
            self._session = None
            if not session.closed:
                await session.close()

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

    # chat

    @overload
    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = ...,
        options: Mapping[str, Any] | None = ...,
        format: str | Mapping[str, Any] | None = ...,
        tools: Sequence[Any] | None = ...,
        stream: Literal[False] = ...,
    ) -> ChatResult: ...

    @overload
    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = ...,
        options: Mapping[str, Any] | None = ...,
        format: str | Mapping[str, Any] | None = ...,
        tools: Sequence[Any] | None = ...,
        stream: Literal[True],
    ) -> ChatStream: ...

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
        stream: bool = False,
    ) -> ChatResult | ChatStream:
        """Ask the model. ``stream=False``: the whole :class:`ChatResult`; ``stream=True``: a
        :class:`ChatStream` (as :meth:`chat_stream`)."""
        chat_stream = self._open(messages, model, options, format, tools, stream=stream)
        if stream:
            return chat_stream
        return await chat_stream.collect()

    def chat_stream(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        tools: Sequence[Any] | None = None,
    ) -> ChatStream:
        """Ask the model and read the answer as it comes. Needs a running event loop."""
        return self._open(messages, model, options, format, tools, stream=True)

    def _open(
        self,
        messages: Sequence[Mapping[str, Any]],
        model: str | None,
        options: Mapping[str, Any] | None,
        format: str | Mapping[str, Any] | None,
        tools: Sequence[Any] | None,
        *,
        stream: bool,
    ) -> ChatStream:
        request = KeyRequest(
            model=model or self.model,
            messages=messages if isinstance(messages, list) else list(messages),
            options=options,
            format=format,
            tools=tools,
        )
        # Serialised now, so a caller changing its lists afterwards changes nothing (no copies).
        payload = self._payload(request)

        def source() -> AsyncIterator[ChatChunk]:
            return self._source(payload)

        inner: AsyncIterator[ChatChunk]
        role: DedupRole
        if self.dedup:
            dedup_stream = self._dedup.stream(RequestDeduplicator.make_key(request), source)
            inner, role = dedup_stream, dedup_stream.role
        else:
            inner, role = source(), "off"
        return ChatStream(inner, role, model=request["model"], stream=stream, on_end=self._log_call)

    def _log_call(self, chat_stream: ChatStream, error: BaseException | None) -> None:
        if self._metrics is None:
            return
        result = chat_stream.result
        self._metrics.log_event(
            "llm_call",
            {
                "model": chat_stream.model,
                "latency_ms": round(chat_stream.latency_ms, 3),
                "ttft_ms": None if chat_stream.ttft_ms is None else round(chat_stream.ttft_ms, 3),
                "tokens_in": result.prompt_eval_count if result is not None else None,
                "tokens_out": result.eval_count if result is not None else None,
                "dedup": chat_stream.role,
                "status": "ok" if error is None else "error",
                "error": None if error is None else type(error).__name__,
                "stream": chat_stream.stream,
            },
        )

    def _payload(self, request: Mapping[str, Any]) -> bytes:
        payload: dict[str, Any] = {
            "model": request["model"],
            "messages": request["messages"],
            "stream": True,
        }
        for name in ("options", "format", "tools"):
            if request[name] is not None:
                payload[name] = request[name]
        if self.keep_alive is not None:
            payload["keep_alive"] = self.keep_alive
        return orjson.dumps(payload)

    async def _source(self, payload: bytes) -> AsyncIterator[ChatChunk]:
        """The one upstream iteration of a request: open (with retries), then parse NDJSON."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        response, first_deadline = await self._post_chat(payload, deadline)
        url = self.base_url
        try:
            reader = response.content
            buffer = bytearray()  # an incomplete last line, carried to the next read
            got_first = False
            while True:
                phase: TimeoutPhase = "total"
                limit, seconds = deadline, self.timeout
                if not got_first and first_deadline < deadline:
                    phase, limit, seconds = "first_byte", first_deadline, self.first_byte_timeout
                try:
                    async with asyncio.timeout_at(limit):
                        data = await reader.readany()
                except TimeoutError:
                    raise LLMTimeoutError(phase, seconds, url=url) from None
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    raise LLMResponseError("the answer was cut off", url=url) from None
                if not data:
                    break
                got_first = True
                buffer += data
                if b"\n" not in data:
                    if len(buffer) > _MAX_LINE:
                        raise LLMResponseError("a line of the stream is too long", url=url)
                    continue
                lines = buffer.split(b"\n")
                buffer = lines.pop()
                # The lines of one read become one chunk: every chunk costs a trip through the
                # dedup fan-out, the answer and the delivery, and is kept for the reuse window.
                pending: list[str | ChatChunk] = []
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        chunk = _parse_line(line, url)
                    except LLMError:
                        if pending:  # the text before a mid-stream error still reaches the user
                            yield _merge(pending)
                        raise
                    if isinstance(chunk, ChatChunk) and chunk.done:
                        if pending:
                            yield _merge(pending)
                        yield chunk
                        await self._drain(reader, deadline)
                        return
                    pending.append(chunk)
                if pending:
                    yield _merge(pending)
            if buffer.strip():  # a last line without its newline
                last = _parse_line(buffer, url)
                yield _merge([last])
                if isinstance(last, ChatChunk) and last.done:
                    return
            raise LLMResponseError("the stream ended before its final chunk", url=url)
        finally:
            response.release()

    @staticmethod
    async def _drain(reader: aiohttp.StreamReader, deadline: float) -> None:
        """Read the (empty) rest of the body so the connection can go back to the pool."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(min(deadline, loop.time() + _DRAIN_S)):
                while not reader.at_eof():
                    if not await reader.readany():
                        break

    async def _post_chat(
        self, payload: bytes, deadline: float
    ) -> tuple[aiohttp.ClientResponse, float]:
        """POST /api/chat until a 200 (retrying 429/503); returns it and its first-byte deadline."""
        loop = asyncio.get_running_loop()
        url = self.base_url
        attempt = 0
        while True:
            first_deadline = loop.time() + self.first_byte_timeout
            response = await self._send("POST", self._chat_url, payload, deadline, first_deadline)
            if response.status == 200:
                return response, first_deadline
            body = bytearray()
            try:
                async with asyncio.timeout_at(deadline):
                    # read(n) returns what has arrived; the message may come in several pieces.
                    while len(body) < _MAX_ERROR_BODY:
                        piece = await response.content.read(_MAX_ERROR_BODY - len(body))
                        if not piece:
                            break
                        body += piece
            except (TimeoutError, aiohttp.ClientError):
                pass  # the status alone still says what happened
            finally:
                response.release()
            error = LLMHTTPError(response.status, _error_text(body, response.reason), url=url)
            if response.status not in _RETRY_STATUSES or attempt >= self.max_retries:
                raise error
            delay = _retry_after(response.headers.get("Retry-After"))
            if delay is None:
                delay = _backoff(attempt)
            if loop.time() + delay >= deadline:
                raise error  # waiting would outlast the call's own deadline
            attempt += 1
            await asyncio.sleep(delay)

    async def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        deadline: float,
        first_deadline: float | None = None,
    ) -> aiohttp.ClientResponse:
        """One request up to its response headers, its failures as :class:`LLMError`."""
        session = self._ensure_session()
        limit = deadline if first_deadline is None else min(deadline, first_deadline)
        try:
            async with asyncio.timeout_at(limit):
                return await session.request(
                    method,
                    url,
                    data=data,
                    headers=self._post_headers if data is not None else self._get_headers,
                    timeout=self._client_timeout,
                )
        except aiohttp.ConnectionTimeoutError:
            raise LLMTimeoutError("connect", self.connect_timeout, url=url) from None
        except TimeoutError:
            if first_deadline is not None and first_deadline < deadline:
                raise LLMTimeoutError("first_byte", self.first_byte_timeout, url=url) from None
            raise LLMTimeoutError("total", self.timeout, url=url) from None
        except aiohttp.ClientConnectorError:
            raise LLMUnreachableError(url=url) from None
        except (aiohttp.ClientError, OSError):
            raise LLMUnreachableError(
                "the connection to the model server failed", url=url
            ) from None

    # other endpoints

    async def _get_json(self, path: str) -> Any:
        loop = asyncio.get_running_loop()
        seconds = self.timeout
        deadline = loop.time() + seconds
        url = f"{self.base_url}{path}"
        response = await self._send("GET", url, None, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                body = await response.read()
        except TimeoutError:
            raise LLMTimeoutError("total", seconds, url=url) from None
        except aiohttp.ClientError:
            raise LLMResponseError("the answer was cut off", url=url) from None
        finally:
            response.release()
        if response.status != 200:
            raise LLMHTTPError(response.status, _error_text(body, response.reason), url=url)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise LLMResponseError("the answer is not JSON", url=url) from None

    async def list_models(self) -> list[dict[str, Any]]:
        """``GET /api/tags``: the models the server has (each with ``name`` and ``model``)."""
        data = await self._get_json("/api/tags")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise LLMResponseError("/api/tags has no 'models' list", url=self.base_url)
        return [model for model in models if isinstance(model, dict)]

    async def version(self) -> str:
        """``GET /api/version``."""
        data = await self._get_json("/api/version")
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            raise LLMResponseError("/api/version has no 'version'", url=self.base_url)
        return version

    async def ping(self, timeout: float = 1.0) -> bool:
        """True if the server answers ``GET /`` with 200 within ``timeout``; never raises."""
        loop = asyncio.get_running_loop()
        try:
            response = await self._send("GET", f"{self.base_url}/", None, loop.time() + timeout)
        except LLMError:
            return False
        response.release()
        return response.status == 200

    def get_cache_stats(self) -> dict[str, Any]:
        return {"deduplication": self._dedup.get_stats(), "dedup_enabled": self.dedup}
