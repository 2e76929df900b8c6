"""The engine's parts built from :class:`~bot.settings.Settings`, started and closed as one.

History, deduplicator, metrics (which reads the first two for its ``stats`` events), the models
(each with its transport) and the engine over them. Nothing here imports discord. Close order: the
transports (no new calls), then the metrics, whose stop writes every buffered event and a last
``stats``; a failure in one step never skips the next.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.chains import Chains
from bot.choices import ChannelChoices
from bot.context import Summaries
from bot.cooldown import Cooldown
from bot.dedup import RequestDeduplicator
from bot.engine import ChatEngine
from bot.history import ChatHistoryManager
from bot.knowledge import Knowledge
from bot.llm import transport_for
from bot.llm.http import MAX_CONNECTIONS, HTTPTransport
from bot.metrics import MetricsService
from bot.models import ModelSet
from bot.personas import PersonaSet
from bot.prometheus import PrometheusExporter
from bot.routing import ModelSpec
from bot.settings import Settings
from bot.shared import (
    SharedChoices,
    SharedCooldown,
    SharedFlights,
    SharedHistory,
    SharedState,
    SharedSummaries,
)

log = logging.getLogger("bot.components")

__all__ = ["Components", "LLMTarget"]


@dataclass(frozen=True, slots=True)
class LLMTarget:
    """Where the model given by ``--llm-url``/``--model`` answers, as found at start-up."""

    api: str
    url: str


def default_target(settings: Settings) -> LLMTarget:
    """Without a probe: the protocol named, else OpenAI for a URL ending in ``/v1``, else Ollama."""
    url = settings.effective_llm_url
    api = settings.llm_api
    if api == "auto":
        api = "openai" if url.rstrip("/").endswith("/v1") else "ollama"
    return LLMTarget(api, url)


def api_key(spec: ModelSpec, environ: Mapping[str, str], *, implicit: bool) -> str | None:
    """A model's key, from the environment only: its ``api_key_env``, else (for the model given on
    the command line) ``BOT_LLM_API_KEY``, else ``OPENAI_API_KEY`` for an OpenAI-compatible one."""
    if spec.api_key_env:
        return environ.get(spec.api_key_env) or None
    if not implicit:
        return None
    key = environ.get("BOT_LLM_API_KEY")
    if not key and spec.api == "openai":
        key = environ.get("OPENAI_API_KEY")
    return key or None


class Components:
    """Everything the bot's engine owns, from one :class:`Settings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        target: LLMTarget | None = None,
        run_id: str | None = None,
        metrics_fields: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.settings = settings
        self.shared = shared
        env = os.environ if environ is None else environ
        self.summaries: Summaries
        self.history: ChatHistoryManager
        self.flights: RequestDeduplicator
        self.cooldown: Cooldown
        self.choices: ChannelChoices
        if shared is None:
            self.summaries = Summaries(settings.history_channels)
            self.history = ChatHistoryManager(
                max_channels=settings.history_channels, max_messages=settings.history_limit
            )
            self.flights = RequestDeduplicator(window=settings.dedup_window)
            self.cooldown = Cooldown(settings.effective_cooldown)
            self.choices = ChannelChoices()
        else:  # the same interfaces, kept in Redis for every process of the bot
            self.summaries = SharedSummaries(shared, settings.history_channels)
            self.history = SharedHistory(
                shared,
                max_channels=settings.history_channels,
                max_messages=settings.history_limit,
                summaries=self.summaries,
            )
            self.flights = SharedFlights(shared, window=settings.dedup_window)
            self.cooldown = SharedCooldown(shared, settings.effective_cooldown)
            self.choices = SharedChoices(shared)
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
        specs = dict(settings.models)
        implicit: str | None = None
        if settings.routing.default is None and settings.model not in specs:
            where = target or default_target(settings)
            implicit = settings.model
            specs[implicit] = ModelSpec(implicit, where.api, where.url, settings.model)

        def make(spec: ModelSpec) -> HTTPTransport:
            key = api_key(spec, env, implicit=spec.name == implicit)
            return transport_for(spec.api, spec.url, timeout=settings.llm_timeout, api_key=key)

        self.models = ModelSet(
            specs, settings.routing, make, default=settings.model, choices=self.choices
        )
        self.personas = PersonaSet(settings.personas, settings.persona_rules, self.choices)
        self.engine = ChatEngine(
            self.models,
            self.history,
            self.metrics,
            self.flights,
            system_prompt=settings.system_prompt,
            dedup=settings.dedup,
            context_tokens=settings.context_tokens,
            personas=self.personas,
            kb=settings.kb,
            summaries=self.summaries,
        )
        kb_paths = {p for p in (settings.kb, *(x.kb for x in settings.personas.values())) if p}
        self.knowledge: Knowledge | None = None
        if kb_paths:
            # Opened now: a missing or corrupt knowledge base stops the start-up in one line.
            self.knowledge = Knowledge(self.engine, window=settings.dedup_window)
            self.knowledge.open_all(sorted(kb_paths))
            self.engine.knowledge = self.knowledge
        self.exporter: PrometheusExporter | None = None
        if settings.metrics_port is not None:
            self.exporter = PrometheusExporter(settings.metrics_port, gauges=self._gauges)
            self.metrics.add_observer(self.exporter.observe)
        self.chains = Chains()
        # Replies being answered now; the front end that runs them says how many (a gauge).
        self.in_flight: Callable[[], int] = lambda: 0
        self._session: aiohttp.ClientSession | None = None
        self._started = False
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        """The bot's one HTTP session (LLM calls, attachments), open from :meth:`start` on."""
        if self._session is None:
            raise RuntimeError("the components are not started")
        return self._session

    def _gauges(self) -> dict[str, float]:
        return {
            "answers_in_flight": self.in_flight(),
            "history_hit_rate": self.history.get_stats()["hit_rate"],
            "metrics_pending_events": self.metrics.get_batch_stats()["pending_events"],
            "dedup_pending_requests": self.flights.get_stats()["pending_requests"],
        }

    async def start(self) -> None:
        if not self._started:
            self._started = True
            if self.exporter is not None:
                await self.exporter.start()  # first: a port in use stops the start-up
            self.metrics.start_batch_flush_task()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS), raise_for_status=False
            )
            await self.models.start(self._session)
            if isinstance(self.choices, SharedChoices):
                await self.choices.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.models.close()
        except Exception:
            log.exception("closing the LLM transports failed; flushing metrics anyway")
        if self.knowledge is not None:
            try:
                await self.knowledge.close()
            except Exception:
                log.exception("closing the knowledge bases failed; flushing metrics anyway")
        if self.exporter is not None:
            try:
                await self.exporter.stop()
            except Exception:
                log.exception("stopping the Prometheus exporter failed; flushing metrics anyway")
        if self._session is not None:
            try:
                await self._session.close()
            except Exception:
                log.exception("closing the HTTP session failed; flushing metrics anyway")
        for name, closing in self._shared_closers():
            try:
                await closing()
            except Exception:
                log.exception("closing the shared %s failed; flushing metrics anyway", name)
        await self.metrics.stop_batch_flush_task()
        if self.shared is not None:
            try:
                await self.shared.close()
            except Exception:
                log.exception("closing the Redis connection failed")

    def _shared_closers(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """What writes to Redis behind the callers, in order: answers, conversations, choices."""
        closers: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        if isinstance(self.flights, SharedFlights):
            closers.append(("flights", self.flights.close))
        if isinstance(self.history, SharedHistory):
            closers.append(("history", self.history.close))
        if isinstance(self.choices, SharedChoices):
            closers.append(("choices", self.choices.close))
        return closers
