"""A tiny embeddings server for the knowledge-base tests: Ollama ``/api/embed`` and OpenAI
``/v1/embeddings`` on 127.0.0.1, in a thread of its own (so subprocesses can use it too).

Vectors are deterministic "concepts": a text scores on a dimension for each word of that
concept it holds, so a question can match a chunk by meaning with no word in common
("throttle" finds the cooldown). The server records each request and can be told to fail.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CONCEPTS: list[frozenset[str]] = [
    frozenset({"cooldown", "wait", "waits", "throttle", "throttling", "pause", "soon", "slow"}),
    frozenset({"install", "installing", "setup", "make", "pip", "venv"}),
    frozenset({"reset", "clear", "clears", "forget", "wipe", "fresh"}),
    frozenset({"persona", "pirate", "character", "roleplay"}),
    frozenset({"rules", "kind", "harassment", "ban", "promotion", "etiquette"}),
    frozenset({"stats", "metrics", "counters", "health", "healthz", "dashboard", "dashboards"}),
    frozenset({"café", "cafe", "thé", "coffee", "tea", "crème"}),
    frozenset({"temperature", "steadier", "randomness", "creative"}),
]
DIM = len(CONCEPTS) + 1
_WORD = re.compile(r"\w+")


def concept_vector(text: str) -> list[float]:
    words = _WORD.findall(text.casefold())
    vector = [float(sum(w in concept for w in words)) for concept in CONCEPTS]
    return [*vector, 0.05]  # never the zero vector: cosine needs a direction


@dataclass
class EmbedServer:
    """Settings the tests change while it runs, and what it saw."""

    models: set[str] = field(default_factory=lambda: {"concepts"})
    api_key: str | None = None
    fail_status: int | None = None
    delay: float = 0.0
    batches: list[int] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    def _refusal(self, request: web.Request, model: Any, openai: bool) -> web.Response | None:
        self.authorizations.append(request.headers.get("Authorization"))
        if (
            self.api_key is not None
            and request.headers.get("Authorization") != f"Bearer {self.api_key}"
        ):
            return _error(401, "invalid api key", openai)
        if self.fail_status is not None:
            return _error(self.fail_status, "the embedding model crashed", openai)
        if model not in self.models:
            return _error(404, f'model "{model}" not found, try pulling it first', openai)
        return None

    async def ollama(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.delay)
        refused = self._refusal(request, body.get("model"), openai=False)
        if refused is not None:
            return refused
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.batches.append(len(texts))
        return web.json_response(
            {"model": body["model"], "embeddings": [concept_vector(t) for t in texts]}
        )

    async def openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.delay)
        refused = self._refusal(request, body.get("model"), openai=True)
        if refused is not None:
            return refused
        texts = body["input"]
        self.batches.append(len(texts))
        data = [
            {"object": "embedding", "index": i, "embedding": concept_vector(t)}
            for i, t in enumerate(texts)
        ]
        # Out of order on purpose: clients must sort by index.
        return web.json_response({"object": "list", "data": data[::-1], "model": body["model"]})

    def start(self) -> None:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/api/embed", self.ollama)
            app.router.add_post("/v1/embeddings", self.openai)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}"
            self._runner = runner
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="embed-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the embeddings server did not start within 10 s")

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def _error(status: int, message: str, openai: bool) -> web.Response:
    body: dict[str, Any] = (
        {"error": {"message": message, "type": "invalid_request_error", "code": status}}
        if openai
        else {"error": message}
    )
    return web.json_response(body, status=status)
