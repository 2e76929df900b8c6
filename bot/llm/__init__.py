"""LLM protocols behind one transport interface: errors, request/answer types, Ollama, OpenAI.

::

    HTTPTransport            bot.llm.http: session, deadlines, retries, error bodies, lines
    ├── OllamaTransport      bot.llm.ollama: /api/chat NDJSON, /api/version, /api/tags, /api/embed
    └── OpenAITransport      bot.llm.openai: /v1/chat/completions SSE, /v1/models, /v1/embeddings
"""

from __future__ import annotations

from typing import Any

from bot.llm.http import HTTPTransport
from bot.llm.ollama import OllamaTransport
from bot.llm.openai import OpenAITransport

__all__ = ["HTTPTransport", "OllamaTransport", "OpenAITransport", "transport_for"]


def transport_for(api: str, url: str, **options: Any) -> HTTPTransport:
    """The transport of protocol ``api`` ("ollama" or "openai") for ``url``."""
    if api == "openai":
        return OpenAITransport(url, **options)
    if api == "ollama":
        return OllamaTransport(url, **options)
    raise ValueError(f"unknown LLM protocol {api!r} (expected ollama or openai)")
