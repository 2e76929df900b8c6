"""Embeddings for the knowledge base: Ollama ``POST /api/embed`` or OpenAI ``POST /v1/embeddings``.

``await Embedder(url, model, api).embed(texts)`` returns one vector per text, asking the server in
batches of :attr:`Embedder.batch_size`, each under an explicit timeout. The API key comes only from
the environment (``BOT_LLM_API_KEY``, else ``OPENAI_API_KEY``) and never appears in an error, a
``repr`` or a log; URL credentials are cut from every message.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

from bot.llm import transport_for
from bot.llm.errors import LLMError, LLMHTTPError, LLMTimeoutError, LLMUnreachableError
from bot.llm.probe import openai_base

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
    """Vectors for texts from one model on one server, through the bot's LLM transports (their
    deadlines, credentials and error reading). Use ``async with`` or :meth:`close`."""

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
        self.api: Api = api_for(url, api)
        base = openai_base(url) if self.api == "openai" else url.rstrip("/")
        # One Authorization header: the API key, else the URL's user:password (a proxy's).
        key = api_key if api_key is not None else _env_key()
        self._transport = transport_for(self.api, base, api_key=key, timeout=timeout)
        self.url = self._transport.base_url  # without credentials
        self.model = model
        self.timeout = timeout
        self.batch_size = max(1, batch_size)

    def __repr__(self) -> str:  # never the key
        return f"Embedder({self.url!r}, {self.model!r}, api={self.api!r})"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/embed" if self.api == "ollama" else f"{self.url}/embeddings"

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
        await self._transport.close()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (several requests of ``batch_size`` texts)."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._batch(list(texts[start : start + self.batch_size])))
        return vectors

    async def _batch(self, texts: list[str]) -> list[list[float]]:
        where = self.endpoint
        try:
            raw = await self._transport.embed(self.model, texts, self.timeout)
        except LLMHTTPError as exc:
            raise EmbedError(f"{where} answered {exc.status}: {exc.error}") from None
        except LLMTimeoutError:
            raise EmbedError(f"{where} gave no answer within {self.timeout:g} s") from None
        except LLMUnreachableError:
            raise EmbedError(f"cannot reach {where}") from None
        except LLMError as exc:
            raise EmbedError(f"{where}: {exc.detail}") from None
        vectors = _numbers(raw)
        if vectors is None or len(vectors) != len(texts):
            raise EmbedError(f"{where} did not answer with {len(texts)} embeddings")
        return vectors


def _env_key() -> str | None:
    return os.environ.get("BOT_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def _numbers(raw: Any) -> list[list[float]] | None:
    if not isinstance(raw, list):
        return None
    vectors: list[list[float]] = []
    for vector in raw:
        if not isinstance(vector, list) or not vector:
            return None
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector):
            return None
        vectors.append([float(x) for x in vector])
    return vectors
