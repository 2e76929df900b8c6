"""Reading cProfile/pstats files: load one safely, list its top functions, diff two of them.

pstats keys its entries by ``(file, line, function)``. Lines move between two versions of the code,
so :func:`diff_profiles` keys by ``(file, function)`` and sums the entries that collide there.
Nothing here prints: the rows are plain dataclasses that ``botctl.reporters.analyze`` renders.
"""

from __future__ import annotations

import marshal
import os
import pstats
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

from botctl.errors import BotctlError

SortKey = Literal["cumulative", "tottime", "ncalls"]
SORT_KEYS: tuple[SortKey, ...] = ("cumulative", "tottime", "ncalls")
DiffStatus = Literal["new", "vanished", "changed", "unchanged"]

# pstats' raw table: (file, line, function) -> (primitive calls, calls, tottime, cumtime, callers)
_Key = tuple[str, int, str]
_Entry = tuple[int, int, float, float, dict[Any, Any]]


# Where `botctl profile --mode cprofile` writes by default, as cprofile-YYYYmmdd-HHMMSS.prof.
DEFAULT_FOLDER = Path("profiles")


class ProfileError(Exception):
    """A file that cannot be read as a pstats profile; the message names it and says why."""


def load_profile(path: str | os.PathLike[str]) -> pstats.Stats:
    """Load a pstats profile; :class:`ProfileError` for a missing, unreadable or corrupt file.

    pstats itself fails on bad input with whatever the unmarshalled garbage provokes (EOFError,
    ValueError, TypeError, AttributeError…), so the file is unmarshalled and shape-checked first.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = marshal.load(f)
    except FileNotFoundError:
        raise ProfileError(f"{name} is not a pstats profile (no such file)") from None
    except IsADirectoryError:
        raise ProfileError(f"{name} is not a pstats profile (it is a directory)") from None
    except PermissionError:
        raise ProfileError(f"{name} is not a pstats profile (permission denied)") from None
    except (EOFError, ValueError, TypeError) as exc:
        reason = "empty file" if os.path.getsize(name) == 0 else f"unreadable data: {exc}"
        raise ProfileError(f"{name} is not a pstats profile ({reason})") from None
    if not _looks_like_stats(raw):
        raise ProfileError(f"{name} is not a pstats profile (unexpected content)")
    try:
        return pstats.Stats(name)
    except Exception as exc:  # a shape we did not foresee; still the file's fault, not ours
        raise ProfileError(f"{name} is not a pstats profile ({type(exc).__name__})") from None


def _looks_like_stats(raw: object) -> bool:
    if not isinstance(raw, dict):
        return False
    for key, value in raw.items():
        if not (isinstance(key, tuple) and len(key) == 3 and isinstance(key[2], str)):
            return False
        if not (isinstance(value, tuple) and len(value) == 5 and isinstance(value[4], dict)):
            return False
    return True


def _entries(stats: pstats.Stats) -> dict[_Key, _Entry]:
    # typeshed does not declare Stats.stats, but it is the documented-by-use raw table.
    return cast("dict[_Key, _Entry]", stats.stats)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ProfileTotals:
    """Whole-profile figures for a header line."""

    functions: int
    total_calls: int
    primitive_calls: int
    total_time: float


def profile_totals(stats: pstats.Stats) -> ProfileTotals:
    entries = _entries(stats)
    return ProfileTotals(
        functions=len(entries),
        total_calls=sum(e[1] for e in entries.values()),
        primitive_calls=sum(e[0] for e in entries.values()),
        total_time=sum(e[2] for e in entries.values()),
    )


@dataclass(frozen=True)
class FunctionRow:
    """One function of a profile, with pstats' per-call conventions.

    ``tottime_per_call`` divides by all calls; ``cumtime_per_call`` by primitive (non-recursive)
    calls, as ``pstats.print_stats`` does.
    """

    file: str
    line: int
    function: str
    ncalls: int
    primitive_calls: int
    tottime: float
    cumtime: float
    tottime_per_call: float
    cumtime_per_call: float

    @property
    def location(self) -> str:
        """``file:line(function)`` like pstats, or just the name for built-ins (file ``~``)."""
        if self.file == "~" and self.line == 0:
            return self.function
        return f"{self.file}:{self.line}({self.function})"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _row(key: _Key, entry: _Entry) -> FunctionRow:
    file, line, function = key
    primitive, calls, tottime, cumtime, _callers = entry
    return FunctionRow(
        file=file,
        line=line,
        function=function,
        ncalls=calls,
        primitive_calls=primitive,
        tottime=tottime,
        cumtime=cumtime,
        tottime_per_call=tottime / calls if calls else 0.0,
        cumtime_per_call=cumtime / primitive if primitive else 0.0,
    )


def compile_filter(pattern: str | re.Pattern[str] | None) -> re.Pattern[str] | None:
    """A filter as a compiled regex; ``re.error`` propagates for the caller to report."""
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(pattern)


def _matches(regex: re.Pattern[str] | None, file: str, function: str) -> bool:
    return regex is None or bool(regex.search(file) or regex.search(function))


def as_sort_key(value: str) -> SortKey:
    """``value`` as a :data:`SortKey`; ``ValueError`` when it is not one of :data:`SORT_KEYS`."""
    for key in SORT_KEYS:
        if value == key:
            return key
    raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, not {value!r}")


def _check_sort(sort: str) -> None:
    as_sort_key(sort)


def top_functions(
    stats: pstats.Stats,
    sort: SortKey = "cumulative",
    limit: int | None = 25,
    filter_regex: str | re.Pattern[str] | None = None,
) -> list[FunctionRow]:
    """The profile's functions, largest first by ``sort``, keeping those whose file or function
    name matches ``filter_regex`` (``re.search``), at most ``limit`` of them (``None``/0: all).

    Ties break by the other two measures, then by location, so the order is stable.
    """
    _check_sort(sort)
    regex = compile_filter(filter_regex)
    rows = [
        _row(key, entry)
        for key, entry in _entries(stats).items()
        if _matches(regex, key[0], key[2])
    ]
    measures = {
        "cumulative": lambda r: (r.cumtime, r.tottime, r.ncalls),
        "tottime": lambda r: (r.tottime, r.cumtime, r.ncalls),
        "ncalls": lambda r: (r.ncalls, r.cumtime, r.tottime),
    }[sort]
    rows.sort(key=lambda r: (r.file, r.line, r.function))
    rows.sort(key=measures, reverse=True)
    return rows[:limit] if limit else rows


@dataclass(frozen=True)
class DiffRow:
    """One ``(file, function)`` across two profiles; ``*_old``/``*_new`` are 0 where absent.

    ``lines`` lists the line numbers that were summed (both profiles), as lines move.
    """

    file: str
    function: str
    status: DiffStatus
    lines: tuple[int, ...]
    ncalls_old: int
    ncalls_new: int
    tottime_old: float
    tottime_new: float
    cumtime_old: float
    cumtime_new: float

    @property
    def ncalls_delta(self) -> int:
        return self.ncalls_new - self.ncalls_old

    @property
    def tottime_delta(self) -> float:
        return self.tottime_new - self.tottime_old

    @property
    def cumtime_delta(self) -> float:
        return self.cumtime_new - self.cumtime_old

    @property
    def location(self) -> str:
        return self.function if self.file == "~" else f"{self.file}({self.function})"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["lines"] = list(self.lines)
        data.update(
            ncalls_delta=self.ncalls_delta,
            tottime_delta=self.tottime_delta,
            cumtime_delta=self.cumtime_delta,
        )
        return data


@dataclass
class _Sum:
    ncalls: int = 0
    tottime: float = 0.0
    cumtime: float = 0.0


def _by_function(stats: pstats.Stats) -> tuple[dict[tuple[str, str], _Sum], dict[Any, set[int]]]:
    sums: dict[tuple[str, str], _Sum] = {}
    lines: dict[Any, set[int]] = {}
    for (file, line, function), (_prim, calls, tottime, cumtime, _callers) in _entries(
        stats
    ).items():
        key = (file, function)
        total = sums.setdefault(key, _Sum())
        # Summing cumtime of colliding entries can count time twice when one calls the other
        # (two lambdas in one file); rare, and the alternative (dropping one) is worse.
        total.ncalls += calls
        total.tottime += tottime
        total.cumtime += cumtime
        lines.setdefault(key, set()).add(line)
    return sums, lines


def diff_profiles(
    new: pstats.Stats,
    old: pstats.Stats,
    sort: SortKey = "cumulative",
    limit: int | None = None,
    filter_regex: str | re.Pattern[str] | None = None,
) -> list[DiffRow]:
    """Per-function difference of ``new`` against ``old``, keyed by ``(file, function)``.

    Status: ``new`` (only in ``new``), ``vanished`` (only in ``old``), ``changed`` or
    ``unchanged`` (identical calls and times). Largest absolute change first, measured by
    ``sort``: cumtime delta for ``cumulative``, tottime delta for ``tottime``, calls delta for
    ``ncalls``; the other deltas break ties. ``filter_regex`` and ``limit`` as in
    :func:`top_functions`.
    """
    _check_sort(sort)
    regex = compile_filter(filter_regex)
    new_sums, new_lines = _by_function(new)
    old_sums, old_lines = _by_function(old)
    rows: list[DiffRow] = []
    for key in new_sums.keys() | old_sums.keys():
        file, function = key
        if not _matches(regex, file, function):
            continue
        n = new_sums.get(key)
        o = old_sums.get(key)
        status: DiffStatus
        if o is None:
            status = "new"
        elif n is None:
            status = "vanished"
        elif (n.ncalls, n.tottime, n.cumtime) == (o.ncalls, o.tottime, o.cumtime):
            status = "unchanged"
        else:
            status = "changed"
        n = n or _Sum()
        o = o or _Sum()
        rows.append(
            DiffRow(
                file=file,
                function=function,
                status=status,
                lines=tuple(sorted(new_lines.get(key, set()) | old_lines.get(key, set()))),
                ncalls_old=o.ncalls,
                ncalls_new=n.ncalls,
                tottime_old=o.tottime,
                tottime_new=n.tottime,
                cumtime_old=o.cumtime,
                cumtime_new=n.cumtime,
            )
        )
    measures = {
        "cumulative": lambda r: (abs(r.cumtime_delta), abs(r.tottime_delta), abs(r.ncalls_delta)),
        "tottime": lambda r: (abs(r.tottime_delta), abs(r.cumtime_delta), abs(r.ncalls_delta)),
        "ncalls": lambda r: (abs(r.ncalls_delta), abs(r.cumtime_delta), abs(r.tottime_delta)),
    }[sort]
    rows.sort(key=lambda r: (r.file, r.function))
    rows.sort(key=measures, reverse=True)
    return rows[:limit] if limit else rows


def latest_profile(folder: Path = DEFAULT_FOLDER) -> Path:
    """The newest ``cprofile-*.prof`` in ``folder`` (by modification time, then name)."""
    found = [path for path in folder.glob("cprofile-*.prof") if path.is_file()]
    if not found:
        raise BotctlError(
            f"no {folder / 'cprofile-*.prof'} here; run `botctl profile --mode cprofile` first "
            "or pass FILE.prof"
        )
    return max(found, key=lambda path: (path.stat().st_mtime, path.name))
