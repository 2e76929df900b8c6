"""An Ollama-compatible LLM server on loopback, for tests, the sandbox and ``botctl sandbox llm``.

It speaks the part of Ollama's API a chat client uses — ``POST /api/chat`` (NDJSON stream, or one
JSON object with ``"stream": false``), ``GET /api/tags``, ``GET /api/version``, ``POST /api/show``,
``GET /`` — and answers deterministically from the last user message, so identical questions get
identical answers:

- a plain question gets a few sentences (``answer_chars`` characters) derived from its hash;
- ``!long N`` gets exactly ``N`` characters, with line breaks and a fenced code block across the
  middle (to exercise message splitting);
- ``!echo TEXT`` gets ``TEXT`` verbatim (to exercise mention safety).

Timing looks like a small local model: ``latency`` seconds to the first token, then
``tokens_per_second`` tokens of about four characters (``0`` or ``inf``: all at once).

For tests it counts calls (``calls_total``, ``calls_by_model``, ``in_flight``; also
``GET /_sandbox/stats``) and takes injectable faults (the ``faults`` list,
:meth:`LLMServer.add_fault`, or ``POST /_sandbox/fault``): an error status (``Retry-After``
optional), an ``{"error": ...}`` line mid-stream, a hang (request accepted, nothing sent) and a
garbage body. The oldest fault that has requests left applies to each ``/api/chat`` request.

Imports nothing but aiohttp and orjson (and the standard library).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import orjson
from aiohttp import web

__all__ = [
    "DEFAULT_MODEL",
    "OLLAMA_VERSION",
    "Fault",
    "FaultKind",
    "LLMServer",
    "answer_for",
    "long_answer",
    "make_answer",
]

DEFAULT_MODEL = "llama3.2"
OLLAMA_VERSION = "0.9.0"
CHARS_PER_TOKEN = 4
MAX_LONG_ANSWER = 1_000_000
# A hung request is released by stop(); this only bounds a server nobody stops.
HANG_LIMIT_S = 3600.0

FaultKind = Literal["status", "stream_error", "hang", "garbage"]
_FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

_STATUS_MESSAGES = {
    400: "invalid request",
    429: "too many requests, please try again later",
    500: "llama runner process has terminated: exit status 2",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
_STREAM_ERROR_MESSAGE = "an error was encountered while running the model"
_GARBAGE_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>\nthis is not JSON\n"

_WORD_TEXT = (
    "answer bot channel cache chat code data dedup event fast history latency message metric "
    "model prompt queue reply request result sandbox server stream system test token user value "
    "window simple small clear short quick local steady every which while after before often "
    "usually always never sends reads keeps makes gives takes finds holds shows counts waits "
    "the a an this that one each some its our your their of to in on for with from by at as"
)
_WORDS = tuple(_WORD_TEXT.split())


@dataclass
class Fault:
    """One injected fault. ``count`` is how many requests it still applies to (``-1``: until
    cleared)."""

    kind: FaultKind
    count: int = 1
    status: int = 500
    retry_after: float | None = None
    after_chunks: int = 0
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(_FAULT_KINDS)}")
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ValueError("fault count must be an integer")
        if self.count == 0 or self.count < -1:
            raise ValueError("fault count must be >= 1, or -1 for every request until cleared")
        if not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError("fault status must be an HTTP error status (400-599)")
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError("retry_after must be >= 0 seconds")
        if not isinstance(self.after_chunks, int) or self.after_chunks < 0:
            raise ValueError("after_chunks must be an integer >= 0")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        known = {"kind", "count", "status", "retry_after", "after_chunks", "message"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**cast(dict[str, Any], dict(data)))
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def error_message(self, model: str) -> str:
        if self.message is not None:
            return self.message
        if self.kind == "stream_error":
            return _STREAM_ERROR_MESSAGE
        if self.status == 404:
            return f'model "{model}" not found, try pulling it first'
        return _STATUS_MESSAGES.get(self.status, f"sandbox fault: HTTP {self.status}")


# --- deterministic answers -------------------------------------------------------------------


def _rng(seed: str) -> random.Random:
    return random.Random(hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest())


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 13))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + "."


def _fit(text: str, n: int) -> str:
    """``text`` cut to exactly ``n`` characters, not ending on whitespace."""
    out = text[:n]
    if out and out[-1].isspace():
        out = out[:-1] + "."
    return out


def _prose(rng: random.Random, n: int, *, line_breaks: bool) -> str:
    parts: list[str] = []
    size = 0
    while size < n + 1:
        sentence = _sentence(rng)
        if parts:
            sep = " "
            if line_breaks:
                roll = rng.random()
                sep = "\n\n" if roll < 0.15 else "\n" if roll < 0.5 else " "
            parts.append(sep)
            size += len(sep)
        parts.append(sentence)
        size += len(sentence)
    return _fit("".join(parts), n)


def make_answer(prompt: str, chars: int = 300) -> str:
    """A few sentences of exactly ``chars`` characters, the same for the same ``prompt``."""
    return _prose(_rng(prompt), max(0, chars), line_breaks=False)


def _code_block(rng: random.Random, size: int) -> str:
    """A fenced Python block of at most ``size`` characters (at least its fences)."""
    head, tail = "```python\n", "```\n"
    lines: list[str] = []
    used = len(head) + len(tail)
    i = 0
    while True:
        name = rng.choice(_WORDS[:40])
        line = f"def {name}_{i}(x):\n    return x * {rng.randint(2, 99)} + {i}\n"
        if used + len(line) > size:
            break
        lines.append(line)
        used += len(line)
        i += 1
    return head + "".join(lines) + tail


def long_answer(n: int, seed: str = "") -> str:
    """Exactly ``n`` characters of prose with line breaks and, from 200 characters, a fenced code
    block starting at about 40 % (so a 4,500-character answer has one across the 2,000 mark)."""
    rng = _rng(f"!long {n} {seed}")
    if n < 200:
        return _prose(rng, n, line_breaks=True)
    head = _prose(rng, int(n * 0.4) - 1, line_breaks=True) + "\n"
    code = _code_block(rng, int(n * 0.3))
    tail = _prose(rng, n - len(head) - len(code), line_breaks=True)
    return head + code + tail


_LONG = re.compile(r"^!long\s+(\d+)")


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def answer_for(messages: Sequence[Mapping[str, Any]], answer_chars: int = 300) -> str:
    """The answer to a conversation: depends only on the last user message."""
    raw = last_user_text(messages).lstrip()
    if raw == "!echo" or raw.startswith(("!echo ", "!echo\n")):
        # Verbatim after one separator, so tests control every character of the answer.
        return raw[len("!echo ") :]
    prompt = raw.strip()
    match = _LONG.match(prompt)
    if match:
        return long_answer(min(int(match.group(1)), MAX_LONG_ANSWER), prompt)
    return make_answer(prompt, answer_chars)


def _tokens(text: str) -> list[str]:
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


_DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "3.2B",
    "quantization_level": "Q4_K_M",
}


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # Exactly "application/json", as Ollama sends it, without aiohttp's added charset.
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


# --- the server ------------------------------------------------------------------------------


class LLMServer:
    """The server and its knobs; every attribute may be changed while it runs."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.2,
        tokens_per_second: float = 50.0,
        answer_chars: int = 300,
        *,
        models: Sequence[str] = (DEFAULT_MODEL,),
        strict_models: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.tokens_per_second = tokens_per_second
        self.answer_chars = answer_chars
        self.models = list(models)
        # Off by default: the bot may be started with any --model against the sandbox.
        self.strict_models = strict_models
        self.faults: list[Fault] = []
        self.calls_total = 0
        # The last requests' message lists, so tests can see what the bot sent (bounded).
        self.recent_requests: collections.deque[list[dict[str, Any]]] = collections.deque(
            maxlen=200
        )
        self.calls_by_model: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # lifecycle

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/_sandbox/stats", self._stats)
        app.router.add_post("/_sandbox/fault", self._fault)
        app.router.add_post("/_sandbox/reset", self._reset)
        return app

    async def start(self) -> str:
        """Bind and serve; returns the base URL with the real port. Raises ``OSError`` when the
        port is taken."""
        if self._runner is not None:
            assert self.url is not None
            return self.url
        self._stopping = asyncio.Event()
        # handler_cancellation: a client that gives up on a hung request frees its handler.
        runner = web.AppRunner(
            self.make_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.port = port
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Release hung requests, stop serving and close connections; idempotent."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> LLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # knobs

    def add_fault(self, kind: FaultKind, count: int = 1, **fields: Any) -> Fault:
        fault = Fault(kind=kind, count=count, **fields)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def reset_counters(self) -> None:
        self.calls_total = 0
        self.calls_by_model.clear()
        self.max_in_flight = self.in_flight

    def stats(self) -> dict[str, Any]:
        return {
            "calls_total": self.calls_total,
            "calls_by_model": dict(self.calls_by_model),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults": [fault.to_dict() for fault in self.faults],
            "latency": self.latency,
            "tokens_per_second": self.tokens_per_second,
            "answer_chars": self.answer_chars,
        }

    def _take_fault(self) -> Fault | None:
        for fault in self.faults:
            if fault.count == -1:
                return fault
            if fault.count > 0:
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None

    # handlers

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return _json({"version": OLLAMA_VERSION})

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 2_019_393_189,
            "digest": _digest(name),
            "details": dict(_DETAILS),
        }

    async def _tags(self, request: web.Request) -> web.Response:
        return _json({"models": [self._model_entry(name) for name in self.models]})

    def _known(self, model: str) -> bool:
        if not self.strict_models:
            return True
        return model in self.models or f"{model}:latest" in self.models

    async def _show(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body is None:
            return _json({"error": "invalid request body"}, 400)
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model:
            return _json({"error": "model is required"}, 400)
        if not self._known(model):
            return _json({"error": f'model "{model}" not found, try pulling it first'}, 404)
        return _json(
            {
                "modelfile": f"FROM {model}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": dict(_DETAILS),
                "model_info": {"general.architecture": "llama"},
                "capabilities": ["completion"],
                "modified_at": "2025-01-01T00:00:00Z",
            }
        )

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    async def _fault(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body is None:
            return _json({"error": "invalid request body"}, 400)
        if body.get("kind") == "clear":
            self.clear_faults()
            return _json({"faults": []})
        try:
            fault = Fault.from_dict(body)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        self.faults.append(fault)
        return _json({"faults": [f.to_dict() for f in self.faults]})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset_counters()
        self.clear_faults()
        return _json(self.stats())

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any] | None:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.calls_total += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._chat_inner(request)
        finally:
            self.in_flight -= 1

    async def _chat_inner(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if body is not None and isinstance(body.get("messages"), list):
            self.recent_requests.append(body["messages"])
        if body is None:
            return _json({"error": "invalid request body"}, 400)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _json({"error": "model is required"}, 400)
        self.calls_by_model[model] += 1
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _json({"error": "messages must be a list of objects"}, 400)
        stream = body.get("stream", True) is not False

        fault = self._take_fault()
        if fault is not None and fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HANG_LIMIT_S)
            return _json({"error": "server stopping"}, 503)
        if fault is not None and fault.kind == "garbage":
            return web.Response(
                body=_GARBAGE_BODY, headers={"Content-Type": "application/x-ndjson"}
            )
        if fault is not None and fault.kind == "status":
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return _json({"error": fault.error_message(model)}, fault.status, headers)
        if not self._known(model):
            return _json({"error": f'model "{model}" not found, try pulling it first'}, 404)

        answer = answer_for(messages, self.answer_chars)
        tokens = _tokens(answer)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        prompt_tokens = max(1, prompt_chars // CHARS_PER_TOKEN) if messages else 0
        stream_error = fault if fault is not None and fault.kind == "stream_error" else None
        if stream:
            return await self._stream(request, model, tokens, prompt_tokens, stream_error)
        return await self._whole(model, answer, len(tokens), prompt_tokens, stream_error)

    def _interval(self) -> float:
        tps = self.tokens_per_second
        return 0.0 if tps <= 0 or math.isinf(tps) else 1.0 / tps

    def _final(
        self, model: str, content: str, eval_count: int, prompt_tokens: int, started: float
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        interval = self._interval()
        return {
            "model": model,
            "created_at": _now_iso(),
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": "stop",
            "total_duration": int((loop.time() - started) * 1e9),
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": int(self.latency * 1e9),
            "eval_count": eval_count,
            "eval_duration": int(eval_count * interval * 1e9),
        }

    async def _whole(
        self,
        model: str,
        answer: str,
        n_tokens: int,
        prompt_tokens: int,
        stream_error: Fault | None,
    ) -> web.Response:
        started = asyncio.get_running_loop().time()
        if stream_error is not None:
            await asyncio.sleep(self.latency)
            return _json({"error": stream_error.error_message(model)}, 500)
        await asyncio.sleep(self.latency + n_tokens * self._interval())
        return _json(self._final(model, answer, n_tokens, prompt_tokens, started))

    async def _stream(
        self,
        request: web.Request,
        model: str,
        tokens: list[str],
        prompt_tokens: int,
        stream_error: Fault | None,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Ollama sends its headers with the first chunk, so the wait comes before them.
        await asyncio.sleep(self.latency)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        n = len(tokens) if stream_error is None else min(stream_error.after_chunks, len(tokens))
        interval = self._interval()
        t0 = loop.time()
        sent = 0
        try:
            while sent < n:
                # Every token that is due goes out in one write: a slow loop never slows the model.
                due = n if not interval else min(n, int((loop.time() - t0) / interval) + 1)
                created = _now_iso()
                await response.write(
                    b"".join(
                        orjson.dumps(
                            {
                                "model": model,
                                "created_at": created,
                                "message": {"role": "assistant", "content": tokens[i]},
                                "done": False,
                            }
                        )
                        + b"\n"
                        for i in range(sent, due)
                    )
                )
                sent = due
                if sent < n:
                    await asyncio.sleep(max(0.0, t0 + sent * interval - loop.time()))
            if stream_error is not None:
                line = {"error": stream_error.error_message(model)}
            else:
                line = self._final(model, "", len(tokens), prompt_tokens, started)
            await response.write(orjson.dumps(line) + b"\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing to finish
        return response
