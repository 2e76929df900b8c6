"""The botctl bot: a Discord chat bot that answers through an LLM (Ollama or OpenAI-compatible).

The engine (this package but ``bot.frontend``) imports no discord; the Discord front end is
``bot.frontend``. Public names: :class:`OllamaService`, :class:`RequestDeduplicator`,
:class:`ChatHistoryManager`, :class:`MetricsService`, :class:`ChatEngine`, :class:`Settings` and the
LLM error tree rooted in :class:`LLMError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.config import load_settings
    from bot.dedup import RequestDeduplicator
    from bot.engine import ChatEngine
    from bot.history import ChatHistoryManager
    from bot.llm.errors import (
        LLMError,
        LLMHTTPError,
        LLMResponseError,
        LLMStreamError,
        LLMTimeoutError,
        LLMUnreachableError,
    )
    from bot.llm.service import OllamaService
    from bot.metrics import MetricsService
    from bot.settings import Settings, SettingsError

# Imported on first use: `import bot.settings` (what `botctl run --help` needs) must not pull in
# the engine, aiohttp and the knowledge base with it.
_HOMES = {
    "ChatEngine": "bot.engine",
    "ChatHistoryManager": "bot.history",
    "LLMError": "bot.llm.errors",
    "LLMHTTPError": "bot.llm.errors",
    "LLMResponseError": "bot.llm.errors",
    "LLMStreamError": "bot.llm.errors",
    "LLMTimeoutError": "bot.llm.errors",
    "LLMUnreachableError": "bot.llm.errors",
    "MetricsService": "bot.metrics",
    "OllamaService": "bot.llm.service",
    "RequestDeduplicator": "bot.dedup",
    "Settings": "bot.settings",
    "SettingsError": "bot.settings",
    "load_settings": "bot.config",
}

__all__ = [
    "ChatEngine",
    "ChatHistoryManager",
    "LLMError",
    "LLMHTTPError",
    "LLMResponseError",
    "LLMStreamError",
    "LLMTimeoutError",
    "LLMUnreachableError",
    "MetricsService",
    "OllamaService",
    "RequestDeduplicator",
    "Settings",
    "SettingsError",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bot' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
