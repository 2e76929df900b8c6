"""What ``botctl profile`` is asked (:class:`ProfileRequest`) and what it hands to the reporter
(:class:`ProfileResult`), and where its files go by default."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from botctl.errors import BotctlError
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


def files_written(request: ProfileRequest) -> list[Path]:
    """The files a request will write, to check before anything starts."""
    if request.mode == "memory":
        prefix = memory_prefix(request.output)
        suffixes = (".bin", ".txt", ".json") if request.backend == "memray" else (".txt", ".json")
        return [prefix.with_name(prefix.name + suffix) for suffix in suffixes]
    return [request.output]


def check_output(path: Path) -> None:
    """:class:`BotctlError` unless ``path`` can be written: its folder is made if missing, and a
    temporary file is opened (and removed) beside it, which is the one check that holds for root
    and for special file systems such as ``/proc`` alike."""
    if path.is_dir():
        raise BotctlError(f"--output {path} is a directory; give a file path")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".check"):
            pass
    except (FileExistsError, NotADirectoryError):
        raise BotctlError(
            f"cannot write {path}: a part of {folder} is a file, not a folder; pick another --output"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BotctlError(f"cannot write {path} ({reason}); pick another --output") from None
