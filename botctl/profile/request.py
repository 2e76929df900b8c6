"""What ``botctl profile`` is asked (:class:`ProfileRequest`) and what it hands to the reporter
(:class:`ProfileResult`), and where its files go by default."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from botctl.profile.launcher import BotExit
from botctl.profile.pyspy import EXTENSIONS, PySpyOptions, PySpyResult
from botctl.profile.throughput import Throughput

Mode = Literal["cprofile", "pyspy", "memory", "guide"]


Backend = Literal["tracemalloc", "memray"]


@dataclass(slots=True)
class ProfileRequest:
    mode: Mode
    duration: float
    output: Path
    pid: int | None = None
    run_args: list[str] = field(default_factory=list)
    pyspy: PySpyOptions = field(default_factory=PySpyOptions)
    backend: Backend = "tracemalloc"
    top: int = 15


@dataclass(slots=True)
class OutputFile:
    path: Path
    kind: str


@dataclass(slots=True)
class ProfileResult:
    """Everything the reporter shows; ``None`` where a mode has nothing to say."""

    mode: Mode
    target: str
    pid: int
    outputs: list[OutputFile]
    profiled_s: float
    top: int
    backend: Backend | None = None
    format: str | None = None
    bot: BotExit | None = None
    pyspy: PySpyResult | None = None
    memory: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Path:
        return self.outputs[0].path

    @property
    def throughput(self) -> Throughput | None:
        return self.bot.throughput() if self.bot is not None else None

    @property
    def peak_rss_kib(self) -> int | None:
        if self.memory is not None and self.memory.get("peak_rss_kib"):
            return int(self.memory["peak_rss_kib"])
        return self.bot.peak_rss_kib if self.bot is not None else None


def extension(mode: Mode, fmt: str = "flamegraph") -> str:
    """The output's extension; memory outputs are a prefix (``.txt``/``.json`` are added)."""
    if mode == "cprofile":
        return ".prof"
    if mode == "pyspy":
        return EXTENSIONS[fmt]
    return ""


def default_output(mode: Mode, fmt: str = "flamegraph", now: datetime | None = None) -> Path:
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("profiles") / f"{mode}-{stamp}{extension(mode, fmt)}"


def memory_prefix(path: Path) -> Path:
    """A memory report's prefix: ``x.txt``, ``x.json`` and ``x.bin`` all name prefix ``x``."""
    if path.suffix in (".txt", ".json", ".bin"):
        return path.with_suffix("")
    return path


def fresh(path: Path, since: float) -> bool:
    """Written by this run (an older file at the same path does not count)."""
    try:
        return path.stat().st_mtime >= since - 1.0
    except OSError:
        return False
