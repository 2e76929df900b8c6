"""Prometheus exposition of the bot's metrics events: ``GET /metrics`` on 127.0.0.1.

:class:`PrometheusExporter` is a :class:`~bot.metrics.MetricsService` observer: it sees every
event as it is logged (the same dicts that the metrics file gets) and adds it to running totals
(:mod:`bot.prometheus_tally`), then serves them in Prometheus' text format from the bot's own
event loop (aiohttp), never from a thread of its own.

Cheapness on the hot path is the design constraint: :meth:`PrometheusExporter.observe` runs inside
every ``log_event``, so it only adds to plain tallies, and the metric families are built when
scraped, by a custom collector on a registry of the exporter's own (never prometheus_client's
global one, so several exporters can live in one process).

Wiring: ``metrics.add_observer(exporter.observe)``, ``await exporter.start()`` once the loop runs
(:class:`MetricsPortError` when the port cannot be served), ``await exporter.stop()`` at the end.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from bot.prometheus_tally import LATENCY_BUCKETS, MAX_LABEL_VALUES, Tallies, TallyCollector

__all__ = ["LATENCY_BUCKETS", "MAX_LABEL_VALUES", "MetricsPortError", "PrometheusExporter"]

logger = logging.getLogger("bot.prometheus")


class MetricsPortError(OSError):
    """The metrics port cannot be served (in use, not permitted); ``str()`` is one line."""


def port_error(host: str, port: int, exc: OSError) -> MetricsPortError:
    reason = (
        "the port is in use"
        if exc.errno == errno.EADDRINUSE
        else (exc.strerror or str(exc)).lower()
    )
    error = MetricsPortError(
        f"cannot serve Prometheus metrics on {host}:{port}: {reason}; choose another metrics port"
    )
    error.errno = exc.errno
    return error


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """:class:`MetricsPortError` now if ``port`` cannot be served (before a run starts anything);
    bound as aiohttp binds it (SO_REUSEADDR), then freed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise port_error(host, port, exc) from None


class PrometheusExporter(Tallies):
    """Tallies metrics events and serves them at ``http://host:port/metrics``.

    :meth:`observe` (inherited from :class:`~bot.prometheus_tally.Tallies`) is the
    ``MetricsService`` observer: it counts one event and never raises. ``gauges`` is called at each
    scrape for ``answers_in_flight``, ``history_hit_rate`` (percent), ``metrics_pending_events``
    and ``dedup_pending_requests``; a key that is missing or not a number is left out of that
    scrape. ``port=0`` picks a free port (see :attr:`port`).
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        gauges: Callable[[], Mapping[str, float]] | None = None,
    ) -> None:
        super().__init__()
        self._host = host
        self._port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(TallyCollector(self, gauges))
        # The bot's own CPU, memory and open files, under the standard `process_` names.
        self.registry.register(ProcessCollector(registry=None))
        self._runner: web.AppRunner | None = None
        self._bound: int | None = None

    # -- serving -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port served (the one picked by the OS when ``port`` was 0 and it has started)."""
        return self._bound if self._bound is not None else self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/metrics"

    def exposition(self) -> bytes:
        """The text exposition a scrape gets now."""
        return generate_latest(self.registry)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="botctl: Prometheus metrics at /metrics\n")

    async def start(self) -> None:
        """Serve ``/metrics`` on the running loop; :class:`MetricsPortError` when it cannot."""
        if self._runner is not None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        # A bounded shutdown: a scraper's idle keep-alive connection must not hold up the bot's stop.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise port_error(self._host, self._port, exc) from None
        self._runner = runner
        addresses = runner.addresses
        self._bound = int(addresses[0][1]) if addresses else self._port

    async def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
