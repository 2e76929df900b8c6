"""What ``botctl run`` shows: the banner at start and the report the summary table is made of."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.settings import Settings
from botctl.run.llm import LLMChoice
from botctl.run.options import RunOptions

__all__ = ["Banner", "RunHooks", "RunReport", "make_banner"]


@dataclass(slots=True)
class Banner:
    discord: str
    llm: str
    llm_warning: str | None
    metrics_file: str
    run_id: str
    pid: int
    duration: float | None
    loop: str = "asyncio"
    extras: list[str] = field(default_factory=list)
    prometheus: str | None = None  # the /metrics URL with --metrics-port


@dataclass(slots=True)
class RunReport:
    """The figures of the summary table, and where they come from."""

    settings: dict[str, Any]
    elapsed_s: float
    counters: dict[str, Any]
    summary: dict[str, Any]
    run_id: str
    connected: bool = True
    sandbox: dict[str, Any] | None = None
    llm_server: dict[str, Any] | None = None
    error: str | None = None
    cancelled_replies: int = 0


class RunHooks(Protocol):
    """What the reporter does while the run goes on."""

    def banner(self, banner: Banner) -> None: ...

    def prompt(self) -> None: ...

    def chat_reply(self, text: str, done: bool, number: int | None) -> None: ...

    def note(self, text: str) -> None: ...


def make_banner(
    settings: Settings, options: RunOptions, discord_name: str, llm: LLMChoice, run_id: str
) -> Banner:
    model = f" (model {settings.model})" if llm.url is not None and llm.needed else ""
    return Banner(
        discord=discord_name,
        llm=llm.description + model,
        llm_warning=llm.warning,
        metrics_file=str(settings.metrics_file),
        run_id=run_id,
        pid=os.getpid(),
        duration=options.duration,
        extras=list(llm.models),
        prometheus=None
        if settings.metrics_port is None
        else f"http://127.0.0.1:{settings.metrics_port}/metrics",
        # The loop this runs on (uvloop where installed): says which the figures were taken on.
        loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
    )
