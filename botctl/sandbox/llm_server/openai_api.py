"""The OpenAI-compatible API: ``POST /v1/chat/completions`` (one JSON object, or with ``"stream":
true`` Server-Sent Events up to ``data: [DONE]``), ``GET /v1/models[/{id}]`` and ``POST
/v1/embeddings``, in OpenAI's shapes.

Streamed: a ``chat.completion.chunk`` per write whose ``delta`` holds the content (the first also
``role``), a last chunk with an empty ``delta`` and ``finish_reason``, a ``usage`` chunk (``choices:
[]``) only with ``stream_options: {"include_usage": true}``, then ``data: [DONE]``. Errors are
``{"error": {"message", "type", "param", "code"}}`` with the status; an error mid-stream is a
``data: {"error": {...}}`` event that ends the stream (no ``[DONE]``). With ``api_key`` set on the
server, requests need ``Authorization: Bearer KEY`` (else 401, as OpenAI answers).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from botctl.sandbox.llm_server.embeddings import embed_texts, to_base64
from botctl.sandbox.llm_server.faults import Fault
from botctl.sandbox.llm_server.messages import RecordedRequest
from botctl.sandbox.llm_server.wire import (
    TOKEN_SLOT,
    has_authorization,
    json_response,
    paced_write,
    read_json,
    token_limit,
    token_template,
)

if TYPE_CHECKING:
    from botctl.sandbox.llm_server.server import LLMServer, Reply

SSE = "text/event-stream"
MODEL_CREATED = 1_735_689_600  # 2025-01-01, like the models' modified_at on the Ollama side

# (type, code) by status, as OpenAI and llama.cpp spell them.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("unavailable_error", None),
}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(error_body(status, message), status, headers)


def _not_found(model: str) -> web.Response:
    return _error(404, f"The model `{model}` does not exist or you do not have access to it.")


def _event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


class OpenAIApi:
    """The OpenAI-compatible routes of one :class:`LLMServer`."""

    def __init__(self, server: LLMServer) -> None:
        self.server = server

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self._chat)
        router.add_post("/v1/embeddings", self._embeddings)
        router.add_get("/v1/models", self._models)
        router.add_get("/v1/models/{model:.+}", self._model)

    def _refused(self, request: web.Request) -> web.Response | None:
        key = self.server.api_key
        if key is None:
            return None
        given = request.headers.get("Authorization")
        if given is None:
            return _error(
                401,
                "You didn't provide an API key. Provide it in an Authorization header "
                "(Authorization: Bearer YOUR_KEY).",
            )
        if given != f"Bearer {key}":
            return _error(401, "Incorrect API key provided.")
        return None

    # models

    @staticmethod
    def _entry(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "library"}

    async def _models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        data = [self._entry(name) for name in self.server.all_models()]
        return json_response({"object": "list", "data": data})

    async def _model(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        model = request.match_info["model"]
        if not self.server.known(model, "embed"):
            return _not_found(model)
        return json_response(self._entry(model))

    # embeddings

    async def _embeddings(self, request: web.Request) -> web.Response:
        server = self.server
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await read_json(request)
        if body is None:
            return _error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter")
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "'input' must be a string or a non-empty list of strings")
        if not all(isinstance(text, str) for text in inputs):
            return _error(400, "'input' must hold strings (token arrays are not supported here)")
        server.count_embed("openai", len(inputs))
        server.record(
            RecordedRequest(
                "openai", "embed", model, body, inputs=inputs, authorized=has_authorization(request)
            )
        )
        fault = server.take_fault("embed", "openai", model)
        early = await server.fault_response(fault, model, _error, "application/json")
        if early is not None:
            return early
        if fault is not None:  # an error mid-answer: an embedding has no middle
            return _error(500, fault.error_message(model))
        if not server.known(model, "embed"):
            return _not_found(model)
        await asyncio.sleep(server.embed_latency)
        dims = body.get("dimensions")
        size = dims if isinstance(dims, int) and 0 < dims <= 4096 else server.embed_dims
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": to_base64(vector) if as_base64 else vector,
            }
            for i, vector in enumerate(embed_texts(inputs, size))
        ]
        used = sum(max(1, len(text) // 4) for text in inputs)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": used, "total_tokens": used},
            }
        )

    # chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        refused = self._refused(request)
        if refused is not None:
            return refused
        with server.chat_call("openai"):
            body = await read_json(request)
            if body is None:
                return _error(400, "We could not parse the JSON body of your request.")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                return _error(400, "you must provide a model parameter")
            server.calls_by_model[model] += 1
            messages = body.get("messages")
            if (
                not isinstance(messages, list)
                or not messages
                or not all(isinstance(m, dict) for m in messages)
            ):
                return _error(400, "'messages' must be a non-empty list of message objects")
            stream = body.get("stream") is True
            server.record(
                RecordedRequest(
                    "openai",
                    "chat",
                    model,
                    body,
                    messages=messages,
                    stream=stream,
                    authorized=has_authorization(request),
                )
            )
            fault = server.take_fault("chat", "openai", model)
            garbage_type = SSE if stream else "application/json"
            early = await server.fault_response(fault, model, _error, garbage_type)
            if early is not None:
                return early
            if not server.known(model):
                return _not_found(model)
            limit = token_limit(body.get("max_completion_tokens", body.get("max_tokens")))
            reply = server.reply(messages, limit)
            if stream:
                options = body.get("stream_options")
                usage = isinstance(options, dict) and options.get("include_usage") is True
                return await self._stream(request, model, reply, fault, usage)
            return await self._whole(model, reply, fault)

    @staticmethod
    def _usage(reply: Reply) -> dict[str, int]:
        done = len(reply.tokens)
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": done,
            "total_tokens": reply.prompt_tokens + done,
        }

    async def _whole(self, model: str, reply: Reply, stream_error: Fault | None) -> web.Response:
        server = self.server
        if stream_error is not None:
            await asyncio.sleep(server.latency)
            return _error(500, stream_error.error_message(model))
        await asyncio.sleep(server.latency + len(reply.tokens) * server.token_interval)
        return json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(reply.tokens)},
                        "logprobs": None,
                        "finish_reason": reply.finish,
                    }
                ],
                "usage": self._usage(reply),
            }
        )

    async def _stream(
        self,
        request: web.Request,
        model: str,
        reply: Reply,
        stream_error: Fault | None,
        include_usage: bool,
    ) -> web.StreamResponse:
        server = self.server
        # Headers go with the first token, as with Ollama, so both show the same first-byte time.
        await asyncio.sleep(server.latency)
        response = web.StreamResponse(headers={"Content-Type": SSE, "Cache-Control": "no-cache"})
        await response.prepare(request)
        head: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        tail: dict[str, Any] = {"usage": None} if include_usage else {}
        tokens = reply.tokens
        count = len(tokens)
        if stream_error is not None:
            count = min(stream_error.after_chunks, count)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _event({**head, "choices": [choice], **tail})

        head_bytes, tail_bytes = token_template(chunk({"content": TOKEN_SLOT}))

        def encode(start: int, end: int) -> bytes:
            out = [head_bytes + orjson.dumps(tokens[i]) + tail_bytes for i in range(start, end)]
            if start == 0 and out:  # the first delta also carries the role
                out[0] = chunk({"role": "assistant", "content": tokens[0]})
            return b"".join(out)

        try:
            if count == 0 and stream_error is None:
                await response.write(chunk({"role": "assistant", "content": ""}))
            await paced_write(response, count, server.token_interval, encode)
            if stream_error is not None:
                await response.write(_event(error_body(500, stream_error.error_message(model))))
            else:
                end = chunk({}, reply.finish)
                if include_usage:
                    end += _event({**head, "choices": [], "usage": self._usage(reply)})
                await response.write(end + b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; nothing to finish
        return response
