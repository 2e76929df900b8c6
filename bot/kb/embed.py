"""A minimal async embeddings client: Ollama ``POST /api/embed`` or OpenAI ``POST /v1/embeddings``.

``await Embedder(url, model, api).embed(texts)`` returns one vector per text, asking the server in
batches of :attr:`Embedder.batch_size`, each under an explicit timeout. The API key comes only from
the environment (``BOT_LLM_API_KEY``, else ``OPENAI_API_KEY``) and never appears in an error, a
``repr`` or a log; URL credentials are cut from every message.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiohttp

from bot.settings import strip_credentials

__all__ = ["EmbedError", "Embedder", "api_for"]

Api = Literal["ollama", "openai"]
DEFAULT_BATCH = 32
DEFAULT_TIMEOUT_S = 60.0


class EmbedError(Exception):
    """The embedding server could not give vectors: a one-line, human-readable reason."""


def api_for(url: str, api: str = "auto") -> Api:
    """The protocol for ``url``: as given, or with ``auto`` OpenAI when the path ends in ``/v1``
    (as ``--llm-api auto`` decides without a probe), else Ollama."""
    if api in ("ollama", "openai"):
        return api  # type: ignore[return-value]
    if api != "auto":
        raise ValueError(f"llm api must be auto, ollama or openai, got {api!r}")
    return "openai" if urlsplit(url).path.rstrip("/").endswith("/v1") else "ollama"


class Embedder:
    """Vectors for texts from one model on one server. Use ``async with`` or :meth:`close`."""

    def __init__(
        self,
        url: str,
        model: str,
        api: str = "auto",
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.url, basic = _split_credentials(url.rstrip("/"))
        self.model = model
        self.api: Api = api_for(self.url, api)
        key = api_key if api_key is not None else _env_key()
        # One Authorization header: the API key, else the URL's user:password (a proxy's).
        self._authorization = f"Bearer {key}" if key else basic
        self.timeout = timeout
        self.batch_size = max(1, batch_size)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the key
        return f"Embedder({strip_credentials(self.url)!r}, {self.model!r}, api={self.api!r})"

    @property
    def endpoint(self) -> str:
        if self.api == "ollama":
            return f"{self.url}/api/embed"
        base = self.url if self.url.endswith("/v1") else f"{self.url}/v1"
        return f"{base}/embeddings"

    async def __aenter__(self) -> Embedder:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (several requests of ``batch_size`` texts)."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._batch(list(texts[start : start + self.batch_size])))
        return vectors

    async def _batch(self, texts: list[str]) -> list[list[float]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(self.timeout))
        headers = {"Authorization": self._authorization} if self._authorization else {}
        where = self.endpoint
        try:
            async with self._session.post(
                self.endpoint, json={"model": self.model, "input": texts}, headers=headers
            ) as response:
                try:
                    body: Any = await response.json(content_type=None)
                except ValueError:
                    body = None
                if response.status >= 400:
                    raise EmbedError(f"{where} answered {response.status}: {_message(body)}")
        except TimeoutError:
            raise EmbedError(f"{where} gave no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise EmbedError(f"cannot reach {where}: {type(exc).__name__}") from None
        vectors = _vectors(body, self.api)
        if vectors is None or len(vectors) != len(texts):
            raise EmbedError(f"{where} did not answer with {len(texts)} embeddings")
        return vectors


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without ``user:password@``, and the Basic ``Authorization`` value they make."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    # By hand, as bot.ollama does: aiohttp.BasicAuth is deprecated in the aiohttp we support.
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return strip_credentials(url), "Basic " + base64.b64encode(pair).decode("ascii")


def _env_key() -> str | None:
    return os.environ.get("BOT_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def _message(body: Any) -> str:
    """The server's own words: Ollama ``{"error": "..."}``, OpenAI ``{"error": {"message"}}``."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return "no error message"


def _vectors(body: Any, api: Api) -> list[list[float]] | None:
    if not isinstance(body, dict):
        return None
    if api == "ollama":
        raw = body.get("embeddings")
    else:
        data = body.get("data")
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            return None
        raw = [d.get("embedding") for d in sorted(data, key=lambda d: d.get("index", 0))]
    if not isinstance(raw, list):
        return None
    vectors: list[list[float]] = []
    for vector in raw:
        if not isinstance(vector, list) or not vector:
            return None
        if not all(isinstance(x, int | float) for x in vector):
            return None
        vectors.append([float(x) for x in vector])
    return vectors
