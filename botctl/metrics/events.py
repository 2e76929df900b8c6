"""Reading the bot's JSON Lines metrics files: where they are, their events, and which run is which.

The file is appended in batches by ``bot.metrics.MetricsService`` while we read it, so a reader can
always meet a last line whose newline has not landed yet. Nothing here is fatal on bad input:
lines that are not JSON objects with a string ``type`` are skipped and counted.

Runs append to one file; each event carries ``run``, the short id of the ``botctl run`` that wrote
it (lines without one, as older files have, read as one run). :func:`select_runs` picks the latest
run of each file by default, one run by id, or everything. Several files (one per process of a
sharded bot) are merged by ``ts``.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from botctl.errors import BotctlError

Event = dict[str, Any]

DEFAULT_METRICS_FILE = "profiles/metrics.jsonl"
METRICS_FILE_ENV = "BOT_METRICS_FILE"

# The types the bot writes; `--type` accepts these only, so that a typo is not an empty answer.
KNOWN_TYPES = ("message", "llm_call", "reply", "command", "error", "stats", "retrieval")

_GLOB_CHARS = frozenset("*?[")


def default_metrics_path() -> Path:
    """The bot's default metrics file: ``$BOT_METRICS_FILE`` or ``profiles/metrics.jsonl``."""
    return Path(os.environ.get(METRICS_FILE_ENV) or DEFAULT_METRICS_FILE)


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """The files named, with quoted glob patterns expanded (sorted; no match is an error).

    A path that exists is taken as it is, even when its name holds glob characters.
    """
    if not paths:
        return [default_metrics_path()]
    expanded: list[Path] = []
    for path in paths:
        text = os.fspath(path)
        if path.exists() or not _GLOB_CHARS & set(text):
            expanded.append(path)
            continue
        matches = sorted(glob.glob(text))
        if not matches:
            raise BotctlError(f"no metrics file matches {text}; run `botctl run` first")
        expanded.extend(Path(match) for match in matches)
    return list(dict.fromkeys(expanded))  # a file named twice is read once


def check_readable(path: Path) -> None:
    """:class:`BotctlError` in one line unless ``path`` is a file we may read."""
    if not path.exists():
        raise BotctlError(f"no metrics file at {path}; run `botctl run` first or pass a FILE")
    if path.is_dir():
        raise BotctlError(f"{path} is a directory; pass the metrics .jsonl FILE inside it")
    if not os.access(path, os.R_OK):
        raise BotctlError(f"cannot read {path}: permission denied; check the file's permissions")


def parse_line(line: bytes) -> Event | None:
    """One metrics line as an event; ``None`` unless it is a JSON object with a string ``type``.

    A line cut short by a writer that has not finished is never valid JSON (an object ends with its
    closing brace), so this also tells a torn line from a complete one.
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    return value


def iter_lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The non-blank lines of a file, without their line ending; the last one may lack a newline."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line


def number(value: Any) -> float | None:
    """A finite JSON number as a float; ``None`` for anything else (a bool is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def run_of(event: Event) -> str | None:
    """The id of the run that wrote ``event``; ``None`` for lines written before runs had ids."""
    run = event.get("run")
    return run if isinstance(run, str) and run else None


@dataclass(frozen=True, slots=True)
class Record:
    """One event with the bytes it was read from and the index of its file."""

    event: Event
    raw: bytes
    file: int

    @property
    def ts(self) -> float | None:
        return number(self.event.get("ts"))

    @property
    def run(self) -> str | None:
        return run_of(self.event)


@dataclass(slots=True)
class Reading:
    """The events of one or several files; :attr:`skipped` counts lines that were not events."""

    files: list[Path]
    records: list[Record]
    skipped: int


def read_records(path: Path, index: int = 0) -> tuple[list[Record], int]:
    """The events of one file in file order, and the number of lines skipped."""
    records: list[Record] = []
    skipped = 0
    for line in iter_lines(path):
        event = parse_line(line)
        if event is None:
            skipped += 1
        else:
            records.append(Record(event, line, index))
    return records, skipped


def read_files(paths: Sequence[Path]) -> Reading:
    """Read every file, merged by time (:func:`merge`)."""
    files = list(paths)
    per_file: list[list[Record]] = []
    skipped = 0
    for index, path in enumerate(files):
        records, bad = read_records(path, index)
        per_file.append(records)
        skipped += bad
    return Reading(files, merge(per_file), skipped)


def merge(per_file: Sequence[list[Record]]) -> list[Record]:
    """The records of several files by ``ts`` (stable, so one file keeps its own order); an event
    without a usable ``ts`` sorts with the event before it in its file. One file stays as it is."""
    if len(per_file) == 1:
        return per_file[0]
    keyed: list[tuple[float, Record]] = []
    for records in per_file:
        last = -math.inf
        for record in records:
            ts = record.ts
            last = last if ts is None else ts
            keyed.append((last, record))
    keyed.sort(key=lambda pair: pair[0])
    return [record for _, record in keyed]


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run of one file: its id (``None`` for lines without one) and its span."""

    id: str | None
    file: Path
    index: int  # of the file in the reading
    events: int
    first_ts: float | None
    last_ts: float | None

    @property
    def label(self) -> str:
        return self.id if self.id is not None else "(no run id)"


@dataclass(slots=True)
class Selection:
    """The records of the runs chosen, in reading order, and what was chosen among what."""

    records: list[Record]
    runs: list[RunInfo]
    runs_in_files: int
    everything: bool

    @property
    def run_ids(self) -> list[str | None]:
        return list(dict.fromkeys(run.id for run in self.runs))


def runs_of(reading: Reading) -> list[RunInfo]:
    """Every (file, run) of a reading, in the order each first appears in its file."""
    found: dict[tuple[int, str | None], list[Record]] = {}
    for record in reading.records:
        found.setdefault((record.file, record.run), []).append(record)
    infos = []
    for (index, run), records in found.items():
        stamps = [ts for ts in (r.ts for r in records) if ts is not None]
        infos.append(
            RunInfo(
                id=run,
                file=reading.files[index],
                index=index,
                events=len(records),
                first_ts=min(stamps) if stamps else None,
                last_ts=max(stamps) if stamps else None,
            )
        )
    return infos


def select_runs(reading: Reading, run: str | None = None, everything: bool = False) -> Selection:
    """The latest run of each file (the run of its last event) by default; ``run`` picks one id in
    every file that has it; ``everything`` keeps all. An unknown ``run`` is a :class:`BotctlError`
    that lists the runs there are."""
    runs = runs_of(reading)
    wanted: set[tuple[int, str | None]]
    if everything:
        return Selection(list(reading.records), runs, len(runs), True)
    if run is not None:
        wanted = {(info.index, info.id) for info in runs if info.id == run}
        if not wanted:
            known = ", ".join(dict.fromkeys(info.label for info in runs)) or "none"
            raise BotctlError(f"no run {run} in the metrics file(s); runs there: {known}")
    else:
        latest: dict[int, str | None] = {}
        for record in reading.records:
            latest[record.file] = record.run  # the last one seen in each file wins
        wanted = set(latest.items())
    records = [r for r in reading.records if (r.file, r.run) in wanted]
    chosen = [info for info in runs if (info.index, info.id) in wanted]
    return Selection(records, chosen, len(runs), False)
