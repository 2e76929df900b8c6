"""Which protocol answers at a URL: Ollama's (``/api/version``) or OpenAI's (``/v1/models``).

A web page answering ``GET /`` proves nothing (llama.cpp's server serves one), so only the
protocols' own endpoints count. With ``auto``, a URL whose path ends in ``/v1`` is OpenAI-compatible
without asking; otherwise Ollama is asked first, then ``/v1/models``. Where the protocol is given
(``/v1``, or ``--llm-api openai``), a server that answers ``/v1/models`` with an error (a refused
key, a model still loading) is still that protocol: the probe says what it answered, as a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from bot.llm.errors import LLMError, LLMTimeoutError, LLMUnreachableError
from bot.llm.http import split_base_url
from bot.llm.ollama import OllamaTransport
from bot.llm.openai import OpenAITransport
from bot.llm.types import Api

__all__ = ["Probe", "openai_base", "probe"]

_SHOWN_MODELS = 5


@dataclass(frozen=True, slots=True)
class Probe:
    """What answered at a URL. ``api`` is None when nothing usable did; ``base_url`` is the URL a
    transport of that protocol is given (``…/v1`` for OpenAI; with its credentials, if any: never
    print it), ``description`` what may be printed."""

    api: Api | None
    base_url: str
    description: str
    reachable: bool = True
    models: tuple[str, ...] = field(default=())
    warning: str | None = None  # what a server of the given protocol answered instead of models


def openai_base(url: str) -> str:
    """The OpenAI-compatible base (ending in ``/v1``) for a server URL."""
    base = url.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


async def _openai_models(
    url: str, session: aiohttp.ClientSession, api_key: str | None, timeout: float
) -> list[str] | LLMError:
    """The models ``/v1/models`` lists, else the error it gave."""
    return await OpenAITransport(url, api_key=api_key, session=session).list_models(timeout)


async def _reachable(url: str, session: aiohttp.ClientSession, timeout: float) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)):
            return True
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def probe(
    url: str, api: str = "auto", *, api_key: str | None = None, timeout: float = 2.0
) -> Probe:
    """Ask ``url`` what it speaks (never raises; credentials never in the description)."""
    shown, _auth = split_base_url(url)  # without a trailing slash
    # Said by the user: --llm-api openai, or (auto) a path ending in /v1.
    openai_given = api == "openai" or (api == "auto" and shown.endswith("/v1"))
    async with aiohttp.ClientSession() as session:
        if api in ("auto", "ollama") and not openai_given:
            ollama = OllamaTransport(url, session=session, api_key=api_key)
            version = await ollama.probe(timeout)
            if version is not None:
                return Probe("ollama", url.rstrip("/"), f"{version} at {shown}")
            if api == "ollama":
                return await _nothing(url, shown, session, timeout, "Ollama's API")
        base = openai_base(url)
        models = await _openai_models(base, session, api_key, timeout)
        base_shown = openai_base(shown)
        if not isinstance(models, LLMError):
            listed = ", ".join(models[:_SHOWN_MODELS]) + (
                " …" if len(models) > _SHOWN_MODELS else ""
            )
            return Probe(
                "openai",
                base,
                f"OpenAI-compatible server at {base_shown} (models: {listed or 'none listed'})",
                models=tuple(models),
            )
        gone = isinstance(models, LLMUnreachableError | LLMTimeoutError)
        if openai_given and not gone:
            return Probe(
                "openai",
                base,
                f"OpenAI-compatible server at {base_shown}",
                warning=f"{base_shown}/models did not list models: {models.message}",
            )
        expected = "OpenAI's API" if api == "openai" else "Ollama's API or OpenAI's"
        return await _nothing(url, shown, session, timeout, expected)


async def _nothing(
    url: str, shown: str, session: aiohttp.ClientSession, timeout: float, expected: str
) -> Probe:
    if await _reachable(url, session, timeout):
        return Probe(None, url, f"{shown} answers, but not with {expected}")
    return Probe(None, url, f"nothing answers at {shown}", reachable=False)
