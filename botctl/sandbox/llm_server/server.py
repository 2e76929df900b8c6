"""The server: one aiohttp app serving both protocols on one port, its knobs, counters, recorded
requests and control routes (``/_sandbox/stats``, ``/_sandbox/fault``, ``/_sandbox/reset``,
``/_sandbox/requests``).

The protocol routes live in :mod:`.ollama_api` and :mod:`.openai_api`; they call back here for
what both share (counting, recording, faults, the answer), so a request gets the same answer and
the same timing whichever protocol carries it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from botctl.sandbox.llm_server.answers import answer_for
from botctl.sandbox.llm_server.embeddings import DEFAULT_DIMS
from botctl.sandbox.llm_server.faults import (
    GARBAGE_BODY,
    HANG_LIMIT_S,
    Fault,
    FaultKind,
    FaultTarget,
    take_fault,
)
from botctl.sandbox.llm_server.messages import (
    APIS,
    Api,
    RecordedRequest,
    parse_turns,
    prompt_tokens,
)
from botctl.sandbox.llm_server.ollama_api import OllamaApi
from botctl.sandbox.llm_server.openai_api import OpenAIApi
from botctl.sandbox.llm_server.wire import interval, json_response, read_json, split_tokens

DEFAULT_MODEL = "llama3.2"
DEFAULT_EMBED_MODEL = "nomic-embed-text"

ErrorResponse = Callable[[int, str, Mapping[str, str]], web.Response]

# What llama.cpp's server shows at "/" (a web UI): a 200 that proves nothing about the API.
_WEB_UI = b"<!doctype html><html><head><title>llama.cpp - chat</title></head><body></body></html>"


@dataclass(frozen=True)
class Reply:
    """The answer to a chat request as the model sends it."""

    tokens: list[str]
    prompt_tokens: int
    finish: Literal["stop", "length"]


class LLMServer:
    """The server and its knobs; every attribute may be changed while it runs (``apis`` and
    ``api_key`` take effect at :meth:`start`)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.2,
        tokens_per_second: float = 50.0,
        answer_chars: int = 300,
        *,
        models: Sequence[str] = (DEFAULT_MODEL,),
        embed_models: Sequence[str] = (),
        strict_models: bool = False,
        apis: Sequence[str] = APIS,
        api_key: str | None = None,
        embed_dims: int = DEFAULT_DIMS,
        embed_latency: float = 0.0,
        record_limit: int = 200,
    ) -> None:
        unknown = [api for api in apis if api not in APIS]
        if unknown or not apis:
            raise ValueError(f"apis must be one or both of {', '.join(APIS)}")
        self.host = host
        self.port = port
        self.latency = latency
        self.tokens_per_second = tokens_per_second
        self.answer_chars = answer_chars
        self.models = list(models)
        # Listed after the chat models; none by default so the listing stays what clients of
        # the first sandbox expect (any name embeds anyway unless strict_models).
        self.embed_models = list(embed_models)
        # Off by default: the bot may be started with any --model against the sandbox.
        self.strict_models = strict_models
        self.apis: tuple[Api, ...] = tuple(api for api in APIS if api in apis)
        # Asked of OpenAI clients only (Ollama has no keys); never recorded nor shown.
        self.api_key = api_key
        self.embed_dims = embed_dims
        self.embed_latency = embed_latency
        self.faults: list[Fault] = []
        self.calls_total = 0
        self.calls_by_model: Counter[str] = Counter()
        self.calls_by_api: Counter[str] = Counter()
        self.embed_calls_total = 0
        self.embed_calls_by_api: Counter[str] = Counter()
        self.embed_inputs_total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        # What clients sent, newest last (bounded): every request, and the chat message lists
        # alone as the first tests read them.
        self.requests: collections.deque[RecordedRequest] = collections.deque(maxlen=record_limit)
        self.recent_requests: collections.deque[list[dict[str, Any]]] = collections.deque(
            maxlen=record_limit
        )
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    # lifecycle

    def make_app(self) -> web.Application:
        app = web.Application()
        if "ollama" in self.apis:
            OllamaApi(self).add_routes(app.router)
        else:
            app.router.add_get("/", self._web_ui)
            app.router.add_route("*", "/api/{tail:.*}", self._llama_cpp_404)
        if "openai" in self.apis:
            OpenAIApi(self).add_routes(app.router)
        else:
            app.router.add_route("*", "/v1/{tail:.*}", self._ollama_404)
        app.router.add_get("/_sandbox/stats", self._stats)
        app.router.add_post("/_sandbox/fault", self._fault)
        app.router.add_post("/_sandbox/reset", self._reset)
        app.router.add_get("/_sandbox/requests", self._requests)
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
        self.calls_by_api.clear()
        self.embed_calls_total = 0
        self.embed_calls_by_api.clear()
        self.embed_inputs_total = 0
        self.max_in_flight = self.in_flight

    def clear_requests(self) -> None:
        self.requests.clear()
        self.recent_requests.clear()

    def last_request(self, api: Api | None = None, kind: str = "chat") -> RecordedRequest | None:
        """The newest recorded request of that kind (and protocol), if any."""
        for recorded in reversed(self.requests):
            if recorded.kind == kind and (api is None or recorded.api == api):
                return recorded
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "calls_total": self.calls_total,
            "calls_by_model": dict(self.calls_by_model),
            "calls_by_api": {api: self.calls_by_api[api] for api in self.apis},
            "embed_calls_total": self.embed_calls_total,
            "embed_calls_by_api": {api: self.embed_calls_by_api[api] for api in self.apis},
            "embed_inputs_total": self.embed_inputs_total,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "faults": [fault.to_dict() for fault in self.faults],
            "latency": self.latency,
            "tokens_per_second": self.tokens_per_second,
            "answer_chars": self.answer_chars,
            "apis": list(self.apis),
            # This process's CPU time, so a load test can charge the server its own cost.
            "process_cpu_s": time.process_time(),
        }

    # what the protocol modules share

    @contextlib.contextmanager
    def chat_call(self, api: Api) -> Iterator[None]:
        """Count one chat call (whatever becomes of it) and hold it in flight while it runs."""
        self.calls_total += 1
        self.calls_by_api[api] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    def count_embed(self, api: Api, inputs: int) -> None:
        self.embed_calls_total += 1
        self.embed_calls_by_api[api] += 1
        self.embed_inputs_total += inputs

    def record(self, recorded: RecordedRequest) -> None:
        self.requests.append(recorded)
        if recorded.kind == "chat":
            self.recent_requests.append(recorded.messages)

    def known(self, model: str, kind: FaultTarget = "chat") -> bool:
        if not self.strict_models:
            return True
        names = self.models if kind == "chat" else [*self.embed_models, *self.models]
        return model in names or f"{model}:latest" in names

    def all_models(self) -> list[str]:
        return [*self.models, *(name for name in self.embed_models if name not in self.models)]

    def take_fault(self, target: FaultTarget, api: Api, model: str) -> Fault | None:
        return take_fault(self.faults, target, api, model)

    async def fault_response(
        self, fault: Fault | None, model: str, error: ErrorResponse, garbage_type: str
    ) -> web.Response | None:
        """The response a fault gives instead of an answer; ``None`` for no fault or a fault that
        strikes mid-answer (``stream_error``)."""
        if fault is None or fault.kind == "stream_error":
            return None
        if fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HANG_LIMIT_S)
            return error(503, "server stopping", {})
        if fault.kind == "garbage":
            return web.Response(body=GARBAGE_BODY, headers={"Content-Type": garbage_type})
        return error(fault.status, fault.error_message(model), fault.retry_headers())

    def reply(self, messages: Sequence[Mapping[str, Any]], limit: int | None) -> Reply:
        tokens = split_tokens(answer_for(messages, self.answer_chars))
        finish: Literal["stop", "length"] = "stop"
        if limit is not None and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        return Reply(tokens, prompt_tokens(parse_turns(messages)), finish)

    @property
    def token_interval(self) -> float:
        return interval(self.tokens_per_second)

    # control and fallback routes

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats())

    async def _fault(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if body is None:
            return json_response({"error": "invalid request body"}, 400)
        if body.get("kind") == "clear":
            self.clear_faults()
            return json_response({"faults": []})
        try:
            fault = Fault.from_dict(body)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        self.faults.append(fault)
        return json_response({"faults": [f.to_dict() for f in self.faults]})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset_counters()
        self.clear_faults()
        self.clear_requests()
        return json_response(self.stats())

    async def _requests(self, request: web.Request) -> web.Response:
        """``?limit=N`` (newest N, default all), ``?api=ollama|openai``, ``?kind=chat|embed``."""
        api, kind = request.query.get("api"), request.query.get("kind")
        try:
            limit = int(request.query.get("limit", "0"))
        except ValueError:
            return json_response({"error": "limit must be an integer"}, 400)
        chosen = [
            recorded.to_dict()
            for recorded in self.requests
            if (api is None or recorded.api == api) and (kind is None or recorded.kind == kind)
        ]
        return json_response({"requests": chosen[-limit:] if limit > 0 else chosen})

    async def _web_ui(self, request: web.Request) -> web.Response:
        return web.Response(body=_WEB_UI, headers={"Content-Type": "text/html; charset=utf-8"})

    async def _llama_cpp_404(self, request: web.Request) -> web.Response:
        error = {"code": 404, "message": "File Not Found", "type": "not_found_error"}
        return json_response({"error": error}, 404)

    async def _ollama_404(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="404 page not found")
