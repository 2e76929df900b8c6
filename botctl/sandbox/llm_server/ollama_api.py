"""Ollama's native API: ``POST /api/chat`` (NDJSON stream, or one JSON object with ``"stream":
false``), ``POST /api/embed``, ``GET /api/tags``, ``GET /api/version``, ``POST /api/show`` and
``GET /``, in Ollama's shapes (errors ``{"error": "..."}``; an error mid-stream is an
``{"error": ...}`` line under status 200)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from botctl.sandbox.llm_server.embeddings import embed_texts
from botctl.sandbox.llm_server.faults import Fault
from botctl.sandbox.llm_server.messages import RecordedRequest
from botctl.sandbox.llm_server.wire import (
    TOKEN_SLOT,
    has_authorization,
    json_response,
    now_iso,
    paced_write,
    read_json,
    token_limit,
    token_template,
)

if TYPE_CHECKING:
    from botctl.sandbox.llm_server.server import LLMServer, Reply

OLLAMA_VERSION = "0.9.0"
NDJSON = "application/x-ndjson"
TIME_SLOT = "\x00time\x00"

_DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "3.2B",
    "quantization_level": "Q4_K_M",
}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response({"error": message}, status, headers)


def _not_found(model: str) -> web.Response:
    return _error(404, f'model "{model}" not found, try pulling it first')


class OllamaApi:
    """The Ollama routes of one :class:`LLMServer`."""

    def __init__(self, server: LLMServer) -> None:
        self.server = server

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._root)
        router.add_post("/api/chat", self._chat)
        router.add_post("/api/embed", self._embed)
        router.add_get("/api/tags", self._tags)
        router.add_get("/api/version", self._version)
        router.add_post("/api/show", self._show)

    # metadata

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return json_response({"version": OLLAMA_VERSION})

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 2_019_393_189,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": dict(_DETAILS),
        }

    async def _tags(self, request: web.Request) -> web.Response:
        return json_response(
            {"models": [self._model_entry(name) for name in self.server.all_models()]}
        )

    async def _show(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if body is None:
            return _error(400, "invalid request body")
        model = body.get("model") or body.get("name")
        if not isinstance(model, str) or not model:
            return _error(400, "model is required")
        if not self.server.known(model, "embed"):
            return _not_found(model)
        embedding = model in self.server.embed_models and model not in self.server.models
        return json_response(
            {
                "modelfile": f"FROM {model}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": dict(_DETAILS),
                "model_info": {"general.architecture": "llama"},
                "capabilities": ["embedding"] if embedding else ["completion"],
                "modified_at": "2025-01-01T00:00:00Z",
            }
        )

    # embeddings

    async def _embed(self, request: web.Request) -> web.Response:
        server = self.server
        body = await read_json(request)
        if body is None:
            return _error(400, "invalid request body")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "model is required")
        raw = body.get("input", [])
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(text, str) for text in inputs):
            return _error(400, "input must be a string or a list of strings")
        server.count_embed("ollama", len(inputs))
        server.record(
            RecordedRequest(
                "ollama", "embed", model, body, inputs=inputs, authorized=has_authorization(request)
            )
        )
        fault = server.take_fault("embed", "ollama", model)
        early = await server.fault_response(fault, model, _error, NDJSON)
        if early is not None:
            return early
        if fault is not None:  # an error mid-answer: an embedding has no middle
            return _error(500, fault.error_message(model))
        if not server.known(model, "embed"):
            return _not_found(model)
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(server.embed_latency)
        dims = body.get("dimensions")
        size = dims if isinstance(dims, int) and 0 < dims <= 4096 else server.embed_dims
        return json_response(
            {
                "model": model,
                "embeddings": embed_texts(inputs, size),
                "total_duration": int((asyncio.get_running_loop().time() - started) * 1e9),
                "load_duration": 1_000_000,
                "prompt_eval_count": sum(max(1, len(text) // 4) for text in inputs),
            }
        )

    # chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        with server.chat_call("ollama"):
            body = await read_json(request)
            if body is None:
                return _error(400, "invalid request body")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                return _error(400, "model is required")
            server.calls_by_model[model] += 1
            messages = body.get("messages") or []
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                return _error(400, "messages must be a list of objects")
            stream = body.get("stream", True) is not False
            server.record(
                RecordedRequest(
                    "ollama",
                    "chat",
                    model,
                    body,
                    messages=messages,
                    stream=stream,
                    authorized=has_authorization(request),
                )
            )
            fault = server.take_fault("chat", "ollama", model)
            early = await server.fault_response(fault, model, _error, NDJSON)
            if early is not None:
                return early
            if not server.known(model):
                return _not_found(model)
            options = body.get("options")
            limit = token_limit(options.get("num_predict")) if isinstance(options, dict) else None
            reply = server.reply(messages, limit)
            if stream:
                return await self._stream(request, model, reply, fault)
            return await self._whole(model, reply, fault)

    def _final(self, model: str, content: str, reply: Reply, started: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        eval_count = len(reply.tokens)
        return {
            "model": model,
            "created_at": now_iso(),
            "message": {"role": "assistant", "content": content},
            "done": True,
            "done_reason": reply.finish,
            "total_duration": int((loop.time() - started) * 1e9),
            "load_duration": 1_000_000,
            "prompt_eval_count": reply.prompt_tokens,
            "prompt_eval_duration": int(self.server.latency * 1e9),
            "eval_count": eval_count,
            "eval_duration": int(eval_count * self.server.token_interval * 1e9),
        }

    async def _whole(self, model: str, reply: Reply, stream_error: Fault | None) -> web.Response:
        server = self.server
        started = asyncio.get_running_loop().time()
        if stream_error is not None:
            await asyncio.sleep(server.latency)
            return _error(500, stream_error.error_message(model))
        await asyncio.sleep(server.latency + len(reply.tokens) * server.token_interval)
        return json_response(self._final(model, "".join(reply.tokens), reply, started))

    async def _stream(
        self, request: web.Request, model: str, reply: Reply, stream_error: Fault | None
    ) -> web.StreamResponse:
        server = self.server
        started = asyncio.get_running_loop().time()
        # Ollama sends its headers with the first chunk, so the wait comes before them.
        await asyncio.sleep(server.latency)
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        tokens = reply.tokens
        count = len(tokens)
        if stream_error is not None:
            count = min(stream_error.after_chunks, count)

        chunk = {
            "model": model,
            "created_at": TIME_SLOT,
            "message": {"role": "assistant", "content": TOKEN_SLOT},
            "done": False,
        }
        before_time, _, after_time = (orjson.dumps(chunk) + b"\n").partition(
            orjson.dumps(TIME_SLOT)
        )
        head, tail = token_template(after_time)

        def encode(start: int, end: int) -> bytes:
            prefix = before_time + orjson.dumps(now_iso()) + head
            return b"".join(prefix + orjson.dumps(tokens[i]) + tail for i in range(start, end))

        try:
            await paced_write(response, count, server.token_interval, encode)
            if stream_error is not None:
                line = {"error": stream_error.error_message(model)}
            else:
                line = self._final(model, "", reply, started)
            await response.write(orjson.dumps(line) + b"\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing to finish
        return response
