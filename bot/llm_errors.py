"""Errors of the LLM client, one class per thing a caller may want to handle differently.

::

    LLMError                  base: ``url`` (credentials stripped), ``user_message``, ``detail``
    ├── LLMUnreachableError   connection refused, DNS failure, connection lost before an answer
    ├── LLMTimeoutError       ``phase`` "connect" | "first_byte" | "total", ``seconds``
    ├── LLMHTTPError          non-200 status: ``status`` and Ollama's own ``{"error": ...}`` text
    ├── LLMStreamError        an ``{"error": ...}`` line in the middle of a 200 stream
    └── LLMResponseError      malformed answer: not NDJSON/JSON, missing fields, cut short

``user_message`` is a short sentence fit to show a chat user; ``detail`` is a short description fit
for a metrics file (no model output, no upstream text, no secret). Neither ever holds credentials:
every URL goes through :func:`redact_url` first.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

TimeoutPhase = Literal["connect", "first_byte", "total"]

__all__ = [
    "LLMError",
    "LLMHTTPError",
    "LLMResponseError",
    "LLMStreamError",
    "LLMTimeoutError",
    "LLMUnreachableError",
    "TimeoutPhase",
    "redact_url",
]


def redact_url(url: str | None) -> str:
    """``url`` without any ``user:password@`` part (and without a query, which may hold keys)."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal lost its brackets in .hostname
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _seconds(value: float) -> str:
    return f"{value:g}"


class LLMError(Exception):
    """Base of every LLM client error; ``str()`` is a technical one-liner, without secrets."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = redact_url(url)
        self.message = message
        super().__init__(f"{message} ({self.url})" if self.url else message)

    @property
    def user_message(self) -> str:
        return "The language model failed to answer. Please try again later."

    @property
    def detail(self) -> str:
        return type(self).__name__


class LLMUnreachableError(LLMError):
    """The server could not be reached at all (refused, DNS, reset before any answer)."""

    def __init__(self, message: str | None = None, *, url: str | None = None) -> None:
        super().__init__(message or "the model server is unreachable", url=url)

    @property
    def user_message(self) -> str:
        where = f" at {self.url}" if self.url else ""
        return f"The model server{where} is unreachable right now. Please try again later."

    @property
    def detail(self) -> str:
        return "model server unreachable"


class LLMTimeoutError(LLMError):
    """No answer within a deadline; ``phase`` says which one."""

    def __init__(self, phase: TimeoutPhase, seconds: float, *, url: str | None = None) -> None:
        self.phase: TimeoutPhase = phase
        self.seconds = seconds
        what = {
            "connect": "could not connect",
            "first_byte": "no answer",
            "total": "answer not finished",
        }[phase]
        super().__init__(f"{what} after {_seconds(seconds)} s ({phase} timeout)", url=url)

    @property
    def user_message(self) -> str:
        if self.phase == "connect":
            return (
                f"Could not connect to the model server after {_seconds(self.seconds)} s. "
                "Please try again later."
            )
        if self.phase == "first_byte":
            return f"The model gave no answer after {_seconds(self.seconds)} s. Please try again."
        return f"The model did not finish its answer within {_seconds(self.seconds)} s."

    @property
    def detail(self) -> str:
        return f"{self.phase} timeout after {_seconds(self.seconds)} s"


class LLMHTTPError(LLMError):
    """A non-200 status; ``error`` is Ollama's own message (its ``{"error": ...}`` or the body)."""

    def __init__(self, status: int, error: str, *, url: str | None = None) -> None:
        self.status = status
        self.error = error
        super().__init__(f"HTTP {status}: {error}" if error else f"HTTP {status}", url=url)

    @property
    def user_message(self) -> str:
        if self.error:
            return f"The model server refused the request: {self.error}"
        return f"The model server answered with an error (HTTP {self.status})."

    @property
    def detail(self) -> str:
        return f"HTTP {self.status}"


class LLMStreamError(LLMError):
    """An ``{"error": ...}`` line in a stream whose HTTP status was 200."""

    def __init__(self, error: str, *, url: str | None = None) -> None:
        self.error = error
        super().__init__(f"error in stream: {error}", url=url)

    @property
    def user_message(self) -> str:
        return f"The model stopped in the middle of its answer: {self.error}"

    @property
    def detail(self) -> str:
        return "error line in stream"


class LLMResponseError(LLMError):
    """An answer that is not what Ollama sends: not NDJSON/JSON, fields missing, cut short."""

    @property
    def user_message(self) -> str:
        return "The model server sent an answer that could not be understood."

    @property
    def detail(self) -> str:
        return f"malformed response: {self.message}"
