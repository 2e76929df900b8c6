"""The botctl bot: a Discord chat bot that answers through an Ollama LLM.

The engine (this package's top-level modules) imports no discord; the Discord front end is
``bot.frontend``. Public names: :class:`OllamaService`, :class:`RequestDeduplicator`,
:class:`ChatHistoryManager`, :class:`MetricsService`, :class:`ChatEngine`, :class:`Settings`.
"""

from bot.dedup import RequestDeduplicator
from bot.engine import ChatEngine
from bot.history import ChatHistoryManager
from bot.llm_errors import (
    LLMError,
    LLMHTTPError,
    LLMResponseError,
    LLMStreamError,
    LLMTimeoutError,
    LLMUnreachableError,
)
from bot.metrics import MetricsService
from bot.ollama import ChatResult, OllamaService
from bot.settings import Settings, SettingsError, load_settings

__all__ = [
    "ChatEngine",
    "ChatHistoryManager",
    "ChatResult",
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
