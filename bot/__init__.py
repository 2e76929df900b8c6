"""The botctl bot: a Discord chat bot that answers through an LLM (Ollama or OpenAI-compatible).

The engine (this package but ``bot.frontend``) imports no discord; the Discord front end is
``bot.frontend``. Public names: :class:`OllamaService`, :class:`RequestDeduplicator`,
:class:`ChatHistoryManager`, :class:`MetricsService`, :class:`ChatEngine`, :class:`Settings` and the
LLM error tree rooted in :class:`LLMError`.
"""

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
