"""The engine's parts built from :class:`~bot.settings.Settings`, started and closed as one.

The Discord front end and the sandbox both drive a :class:`Components`; nothing here imports discord.
Close order: the LLM client first (no new calls), then the metrics service, whose stop writes every
buffered event; a failure in one step never skips the next.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.dedup import RequestDeduplicator
from bot.engine import ChatEngine
from bot.history import ChatHistoryManager
from bot.metrics import MetricsService
from bot.ollama import OllamaService
from bot.settings import Settings

log = logging.getLogger("bot.components")


class Components:
    """Metrics, history, dedup, the LLM client and the engine over them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.history = ChatHistoryManager(
            max_channels=settings.history_channels, max_messages=settings.history_limit
        )
        self.deduplicator = RequestDeduplicator(window=settings.dedup_window)
        self.metrics = MetricsService(
            settings.metrics_file,
            settings.batch_size,
            settings.batch_interval,
            stats_interval=settings.stats_interval,
            deduplicator=self.deduplicator,
            history=self.history,
        )
        self.llm = OllamaService(
            settings.llm_url,
            settings.model,
            timeout=settings.llm_timeout,
            deduplicator=self.deduplicator,
            dedup=settings.dedup,
            dedup_window=settings.dedup_window,
            metrics=self.metrics,
        )
        self.engine = ChatEngine(
            self.llm,
            self.history,
            self.metrics,
            system_prompt=settings.system_prompt,
            model=settings.model,
        )
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.metrics.start_batch_flush_task()
        await self.llm.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.llm.close()
        except Exception:
            log.exception("closing the LLM client failed; flushing metrics anyway")
        if self._started:
            await self.metrics.stop_batch_flush_task()
        else:
            await self.metrics.flush()

    def summary(self) -> dict[str, Any]:
        return self.engine.summary()
