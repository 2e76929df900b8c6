"""The sandbox's LLM server on loopback, for tests, the sandbox and ``botctl sandbox llm``: one
port speaking both Ollama's native API and the OpenAI-compatible API.

- Ollama (:mod:`.ollama_api`): ``POST /api/chat`` (NDJSON stream, or one object with ``"stream":
  false``), ``POST /api/embed``, ``GET /api/tags``, ``GET /api/version``, ``POST /api/show``, ``GET /``.
- OpenAI (:mod:`.openai_api`): ``POST /v1/chat/completions`` (JSON, or SSE to ``data: [DONE]``),
  ``GET /v1/models``, ``POST /v1/embeddings``.
- ``LLMServer(apis=("openai",))`` serves one protocol only: every ``/api/*`` is then a 404 (and
  ``GET /`` a web page) as with llama.cpp's server; with ``("ollama",)`` every ``/v1/*`` is a 404.

Answers are deterministic (:mod:`.answers`): the same messages get the same text on either
protocol, with directives for tests (``!echo``, ``!long N``, citations, images, summaries).
Embeddings are a hashed bag of words (:mod:`.embeddings`). Timing looks like a small local model:
``latency`` seconds to the first token, then ``tokens_per_second`` tokens of four characters
(``0`` or ``inf``: all at once), the same on both protocols.

For tests (:mod:`.server`) it counts calls (``calls_total``, ``calls_by_model``, ``calls_by_api``,
``embed_calls_total``, ``in_flight``; also ``GET /_sandbox/stats``), records the last requests
(``requests``, ``last_request()``, ``GET /_sandbox/requests``) and takes injectable faults
(:mod:`.faults`: :meth:`LLMServer.add_fault` or ``POST /_sandbox/fault``): an error status
(``Retry-After`` optional), an error mid-stream, a hang and a garbage body.

Imports nothing but aiohttp and orjson (and the standard library).
"""

from __future__ import annotations

from botctl.sandbox.llm_server.answers import (
    MAX_LONG_ANSWER,
    answer_for,
    long_answer,
    make_answer,
)
from botctl.sandbox.llm_server.embeddings import DEFAULT_DIMS, cosine, embed_text
from botctl.sandbox.llm_server.faults import HANG_LIMIT_S, Fault, FaultKind
from botctl.sandbox.llm_server.messages import (
    APIS,
    CHARS_PER_TOKEN,
    Api,
    RecordedRequest,
    Turn,
    last_user_text,
    parse_turns,
)
from botctl.sandbox.llm_server.ollama_api import OLLAMA_VERSION
from botctl.sandbox.llm_server.server import DEFAULT_EMBED_MODEL, DEFAULT_MODEL, LLMServer

__all__ = [
    "APIS",
    "CHARS_PER_TOKEN",
    "DEFAULT_DIMS",
    "DEFAULT_EMBED_MODEL",
    "DEFAULT_MODEL",
    "HANG_LIMIT_S",
    "MAX_LONG_ANSWER",
    "OLLAMA_VERSION",
    "Api",
    "Fault",
    "FaultKind",
    "LLMServer",
    "RecordedRequest",
    "Turn",
    "answer_for",
    "cosine",
    "embed_text",
    "last_user_text",
    "long_answer",
    "make_answer",
    "parse_turns",
]
