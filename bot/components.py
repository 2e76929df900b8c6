"""The engine's parts built from :class:`~bot.settings.Settings`, started and closed as one.

History, deduplicator, metrics (which reads the first two for its ``stats`` events), the LLM
transport and the engine over them. Nothing here imports discord. Close order: the transport (no
new calls), then the metrics, whose stop writes every buffered event and a last ``stats``; a
failure in one step never skips the next.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.dedup import RequestDeduplicator
from bot.engine import ChatEngine
from bot.history import ChatHistoryManager
from bot.llm.http import HTTPTransport
from bot.llm.ollama import OllamaTransport
from bot.metrics import MetricsService
from bot.settings import Settings

log = logging.getLogger("bot.components")


class Components:
    """Everything the bot's engine owns, from one :class:`Settings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: HTTPTransport | None = None,
        run_id: str | None = None,
        metrics_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.history = ChatHistoryManager(
            max_channels=settings.history_channels, max_messages=settings.history_limit
        )
        self.flights = RequestDeduplicator(window=settings.dedup_window)
        self.metrics = MetricsService(
            settings.metrics_file,
            settings.batch_size,
            settings.batch_interval,
            stats_interval=settings.stats_interval,
            deduplicator=self.flights,
            history=self.history,
            run_id=run_id,
            fields=metrics_fields,
        )
        self.transport = transport or OllamaTransport(
            settings.effective_llm_url, timeout=settings.llm_timeout
        )
        self.engine = ChatEngine(
            self.transport,
            self.history,
            self.metrics,
            self.flights,
            model=settings.model,
            system_prompt=settings.system_prompt,
            dedup=settings.dedup,
        )
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            self.metrics.start_batch_flush_task()
            await self.transport.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.transport.close()
        except Exception:
            log.exception("closing the LLM transport failed; flushing metrics anyway")
        await self.metrics.stop_batch_flush_task()
