"""What both LLM protocols share over HTTP: one session, deadlines, retries, error bodies, lines.

:class:`HTTPTransport` is the base of :class:`~bot.llm.ollama.OllamaTransport` and
:class:`~bot.llm.openai.OpenAITransport`. A subclass builds the request body and parses the stream's
lines; everything else is here:

- one ``aiohttp.ClientSession`` (injectable), opened lazily or by :meth:`start`, closed by
  :meth:`close` only if this transport opened it;
- deadlines: ``connect_timeout`` for the TCP connect, ``first_byte_timeout`` (default ``timeout``) from
  sending to the first body byte, ``timeout`` for the whole call including retries. The stream bounds
  each await with the deadline rather than wrapping its ``yield`` in a timeout context, because it runs
  in a flight task shared by several callers;
- 429 and 503 retried with full-jitter backoff or ``Retry-After`` while the deadline allows; a
  connection the server closed behind our back (llama.cpp closes after every stream although it
  says keep-alive) retried once on a fresh one;
- error bodies read as the server's own words: Ollama's ``{"error": "..."}``, OpenAI's
  ``{"error": {"message": ...}}``, else the text, else the reason phrase — never a repr.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson

from bot.llm.errors import (
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMTimeoutError,
    LLMUnreachableError,
    TimeoutPhase,
    redact_url,
)
from bot.llm.types import Api, ChatRequest, Chunk

__all__ = ["MAX_CONNECTIONS", "HTTPTransport", "error_text", "split_base_url"]

# Ollama queues up to 512 requests (OLLAMA_MAX_QUEUE); aiohttp's default of 100 connections would
# queue the rest in the client, hiding them from the server.
MAX_CONNECTIONS = 512
_RETRY_STATUSES = frozenset({429, 503})
_BACKOFF_BASE = 0.25
_BACKOFF_CAP = 8.0
# A line longer than this is not something a server sends; refusing it bounds memory.
MAX_LINE = 16 * 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024
_ERROR_TEXT_CHARS = 300
# After the final event only the end of the body is expected; don't wait long for it.
_DRAIN_S = 1.0


def split_base_url(base_url: str) -> tuple[str, str | None]:
    """The base URL without credentials or trailing slash, and the Basic auth header they make.

    ``host`` or ``host:port`` alone reads as the ollama CLI reads ``OLLAMA_HOST``: http, and port
    11434 when none is given.
    """
    url = base_url.strip()
    if "://" not in url:
        url = f"http://{url}"
        host_only = urlsplit(url)
        if host_only.port is None and host_only.hostname:
            url = url.replace(host_only.netloc, f"{host_only.netloc}:11434", 1)
    parts = urlsplit(url)
    auth = None
    if parts.username is not None:
        # By hand: aiohttp.BasicAuth is deprecated and its replacement only exists in new aiohttp.
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(creds).decode("ascii")
    return redact_url(url).rstrip("/"), auth


def error_text(body: bytes | bytearray, reason: str | None = None) -> str:
    """The server's message in words, from either protocol's error body (bounded, one line)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    text: str | None = None
    if isinstance(data, dict):
        error = data.get("error", data.get("detail"))
        if isinstance(error, dict):  # OpenAI: {"error": {"message", "type", "code"}}
            message = error.get("message")
            text = message if isinstance(message, str) else None
        elif isinstance(error, str):  # Ollama: {"error": "..."}
            text = error
        elif isinstance(data.get("message"), str):
            text = data["message"]
    if text is None:
        text = "" if isinstance(data, dict | list) else body.decode("utf-8", "replace")
    text = " ".join(text.split())
    if text.startswith("<"):  # an HTML error page: its markup is no message
        text = ""
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


class HTTPTransport:
    """An LLM server over HTTP; subclasses speak one protocol (:attr:`api`)."""

    api: Api

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        first_byte_timeout: float | None = None,
        max_retries: int = 3,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not timeout > 0 or not connect_timeout > 0:
            raise ValueError("timeout and connect_timeout must be > 0 seconds")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url, auth = split_base_url(base_url)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.first_byte_timeout = float(first_byte_timeout or timeout)
        self.max_retries = max_retries
        self._get_headers: dict[str, str] = {}
        if api_key:
            self._get_headers["Authorization"] = f"Bearer {api_key}"
        elif auth is not None:
            self._get_headers["Authorization"] = auth
        self._post_headers = {**self._get_headers, "Content-Type": "application/json"}
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    # -- what a protocol defines ---------------------------------------------------------------

    def payload(self, request: ChatRequest) -> bytes:
        """The request's body as this protocol spells it (serialised once: a caller changing its
        lists afterwards changes nothing)."""
        raise NotImplementedError

    def send(self, payload: bytes) -> AsyncIterator[Chunk]:
        """The answer to ``payload`` as ``str`` deltas, then one :class:`~bot.llm.types.Done`."""
        raise NotImplementedError

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        return self.send(self.payload(request))

    def key(self, payload: bytes) -> str:
        """The dedup key of a request: SHA-256 of the protocol, the server and the body it sends
        (built in a fixed order, so identical requests are identical bytes): two models or two
        servers never share an answer, and nothing is serialised twice."""
        digest = hashlib.sha256(f"{self.api}\0{self.base_url}\0".encode())
        digest.update(payload)
        return digest.hexdigest()

    async def probe(self, timeout: float = 2.0) -> str | None:
        """A description of the server if it speaks this protocol (``None`` otherwise)."""
        raise NotImplementedError

    async def embed(self, model: str, texts: Sequence[str], timeout: float = 60.0) -> list[Any]:
        """One embedding per text, in order."""
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._ensure_session()

    def use_session(self, session: aiohttp.ClientSession) -> None:
        """Send through ``session`` (the bot's one session), which this transport never closes."""
        self._session = session
        self._owns_session = False

    def _ensure_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or (self._owns_session and session.closed):
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS), raise_for_status=False
            )
            self._session = session
        return session

    async def close(self) -> None:
        """Close the session this transport opened (never an injected one); idempotent."""
        if not self._owns_session:
            return
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # -- requests ------------------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, data: bytes | None, deadline: float, first: float | None
    ) -> aiohttp.ClientResponse:
        """One request up to its response headers, its failures as :class:`LLMError`."""
        session = self._ensure_session()
        headers = self._post_headers if data is not None else self._get_headers
        loop = asyncio.get_running_loop()
        early = first is not None and first < deadline  # a first-byte deadline before the total
        for attempt in (0, 1):
            # aiohttp keeps the whole call's deadline itself, for the headers and every read of
            # the body: cheaper than a timeout context of ours around each await.
            timeout = aiohttp.ClientTimeout(
                total=max(0.001, deadline - loop.time()), sock_connect=self.connect_timeout
            )
            try:
                if not early:
                    return await session.request(
                        method, url, data=data, headers=headers, timeout=timeout
                    )
                assert first is not None
                async with asyncio.timeout_at(first):
                    return await session.request(
                        method, url, data=data, headers=headers, timeout=timeout
                    )
            except aiohttp.ConnectionTimeoutError:
                raise LLMTimeoutError("connect", self.connect_timeout, url=url) from None
            except TimeoutError:
                phase: TimeoutPhase = "first_byte" if early else "total"
                seconds = self.first_byte_timeout if phase == "first_byte" else self.timeout
                raise LLMTimeoutError(phase, seconds, url=url) from None
            except aiohttp.ClientConnectorError:
                raise LLMUnreachableError(url=url) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                if attempt == 0:
                    continue  # a pooled connection the server had closed: once more, afresh
                raise LLMUnreachableError(
                    "the connection to the model server failed", url=url
                ) from None
            except (aiohttp.ClientError, OSError):
                raise LLMUnreachableError(
                    "the connection to the model server failed", url=url
                ) from None
        raise AssertionError("unreachable")

    async def _post(
        self, path: str, payload: bytes, deadline: float
    ) -> tuple[aiohttp.ClientResponse, float]:
        """POST until a 200 (retrying 429/503); returns it and its first-byte deadline."""
        loop = asyncio.get_running_loop()
        url = f"{self.base_url}{path}"
        attempt = 0
        while True:
            first = loop.time() + self.first_byte_timeout
            response = await self._send("POST", url, payload, deadline, first)
            if response.status == 200:
                return response, first
            error = LLMHTTPError(
                response.status,
                error_text(await self._read_error(response, deadline), response.reason),
                url=url,
            )
            if response.status not in _RETRY_STATUSES or attempt >= self.max_retries:
                raise error
            delay = _retry_after(response.headers.get("Retry-After"))
            if delay is None:
                delay = _backoff(attempt)
            if loop.time() + delay >= deadline:
                raise error  # waiting would outlast the call's own deadline
            attempt += 1
            await asyncio.sleep(delay)

    @staticmethod
    async def _read_error(response: aiohttp.ClientResponse, deadline: float) -> bytearray:
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
        return body

    async def _json(self, method: str, path: str, payload: Any, timeout: float) -> Any:
        """One JSON request and its JSON answer (listing models, embeddings, probes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        url = f"{self.base_url}{path}"
        data = None if payload is None else orjson.dumps(payload)
        response = await self._send(method, url, data, deadline, None)
        try:
            async with asyncio.timeout_at(deadline):
                body = await response.read()
        except TimeoutError:
            raise LLMTimeoutError("total", timeout, url=url) from None
        except aiohttp.ClientError:
            raise LLMResponseError("the answer was cut off", url=url) from None
        finally:
            response.release()
        if response.status != 200:
            raise LLMHTTPError(response.status, error_text(body, response.reason), url=url)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise LLMResponseError("the answer is not JSON", url=url) from None

    async def _try_json(self, path: str, timeout: float) -> Any:
        """``GET path`` as JSON, or ``None`` on any failure (for probes)."""
        with contextlib.suppress(LLMError):
            return await self._json("GET", path, None, timeout)
        return None

    # -- reading a stream ----------------------------------------------------------------------

    async def _lines(
        self, response: aiohttp.ClientResponse, deadline: float, first: float
    ) -> AsyncGenerator[list[bytearray], None]:
        """The body's complete lines, the lines of one network read together (then a last
        line without its newline, if any). Releases the response at the end."""
        url = self.base_url
        reader = response.content
        buffer = bytearray()  # an incomplete last line, carried to the next read
        early = first < deadline  # waiting for the first byte under its own, shorter deadline
        try:
            while True:
                try:
                    if early:
                        async with asyncio.timeout_at(first):
                            data = await reader.readany()
                    else:  # the total deadline is aiohttp's (the request's ClientTimeout)
                        data = await reader.readany()
                except TimeoutError:
                    if early:
                        raise LLMTimeoutError(
                            "first_byte", self.first_byte_timeout, url=url
                        ) from None
                    raise LLMTimeoutError("total", self.timeout, url=url) from None
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
                    raise LLMResponseError("the answer was cut off", url=url) from None
                if not data:
                    break
                early = False
                buffer += data
                if b"\n" not in data:
                    if len(buffer) > MAX_LINE:
                        raise LLMResponseError("a line of the stream is too long", url=url)
                    continue
                lines = buffer.split(b"\n")
                buffer = lines.pop()
                yield lines
            if buffer.strip():
                yield [buffer]
        finally:
            response.release()

    @staticmethod
    async def _drain(response: aiohttp.ClientResponse, deadline: float) -> None:
        """Read the (empty) rest of the body so the connection can go back to the pool."""
        reader = response.content
        if reader.at_eof():
            return  # the usual case: the end came with the last line
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(min(deadline, loop.time() + _DRAIN_S)):
                while not reader.at_eof():
                    if not await reader.readany():
                        break
