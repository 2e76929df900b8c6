"""Errors of the LLM transports (both protocols), one class per thing a caller may handle differently.

::

    LLMError                  base: ``url`` (credentials stripped), ``user_message``, ``detail``
    ├── LLMUnreachableError   connection refused, DNS failure, connection lost before an answer
    ├── LLMTimeoutError       ``phase`` "connect" | "first_byte" | "total", ``seconds``
    ├── LLMHTTPError          non-200 status: ``status`` and the server's own error message
    ├── LLMStreamError        an error event in the middle of a 200 stream
    └── LLMResponseError      malformed answer: not NDJSON/SSE/JSON, missing fields, cut short

``user_message`` is a short sentence fit to show a chat user: the kind of failure and the server's
own words, never its address (the bot's users need not know where the model runs). ``detail`` is a
short description fit for a metrics file (no model output, no upstream text, no secret); the
operator's log and the ``error`` event also get ``url``, always without credentials
(:func:`redact_url`).
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
        return "The model server is unreachable right now. Please try again later."

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
    """A non-200 status; ``error`` is the server's own message in words (see ``bot.llm.http``)."""

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
    """An error event (Ollama's ``{"error"}`` line, an SSE error) in a stream whose status was 200."""

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
    """An answer that is not what the protocol sends: not NDJSON/SSE/JSON, fields missing, cut short."""

    @property
    def user_message(self) -> str:
        return "The model server sent an answer that could not be understood."

    @property
    def detail(self) -> str:
        return f"malformed response: {self.message}"
