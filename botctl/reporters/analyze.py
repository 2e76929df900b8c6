"""Rendering of ``botctl analyze``: top functions and profile differences, as tables or JSON."""

from __future__ import annotations

import functools
import importlib.util
import os
import sysconfig
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from botctl.analyze.stats import DiffRow, FunctionRow, ProfileTotals, SortKey
from botctl.console import plural

_STATUS_STYLES = {"new": "bold yellow", "vanished": "dim", "changed": "", "unchanged": "dim"}


@functools.cache
def _project_root() -> str | None:
    """The folder that holds the ``bot`` package (found without importing it)."""
    spec = importlib.util.find_spec("bot")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(os.path.abspath(next(iter(spec.submodule_search_locations))))


def short_path(file: str) -> str:
    """A path short enough for a table: from ``site-packages/`` on, relative to the standard
    library, to the cwd, or to the project (``bot/delivery.py`` wherever botctl is run from)."""
    if file in ("~", "") or file.startswith("<"):
        return file
    marker = f"site-packages{os.sep}"
    if marker in file:
        return file.split(marker, 1)[1]
    stdlib = sysconfig.get_paths()["stdlib"] + os.sep
    if file.startswith(stdlib):
        return file[len(stdlib) :]
    try:
        relative = os.path.relpath(file)
    except ValueError:
        return file
    if not relative.startswith(".."):
        return relative
    root = _project_root()
    if root is not None and file.startswith(root + os.sep):
        return file[len(root) + 1 :]
    return file


def fit_path(path: str, width: int) -> str:
    """``path`` in ``width`` characters by dropping leading folders (``…/bot/delivery.py``); the
    file name is kept whole even when it alone is longer."""
    if len(path) <= width:
        return path
    parts = path.split(os.sep)
    while len(parts) > 1:
        parts = parts[1:]
        shorter = "…" + os.sep + os.sep.join(parts)
        if len(shorter) <= width or len(parts) == 1:
            return shorter
    return path


def location(file: str, line: int | None, function: str, width: int = 1000) -> Text:
    """``file:line(function)`` as pstats writes it, in ``width`` characters when it can be: the
    path loses folders from the left (``…/bot/delivery.py:12(deliver)``); when even the file
    name and the function do not fit on one line, the function goes to a line of its own."""
    if file == "~":
        return Text(function, style="italic")
    path = short_path(file)
    where = f":{line}" if line else ""
    one_line = len(where) + len(function) + 2
    shortest = len(os.path.basename(path)) + 2  # "…/name"
    if shortest + one_line <= width or len(path) + one_line <= width:
        path, gap = fit_path(path, width - one_line), ""
    else:
        path, gap = fit_path(path, width), "\n"
    return Text.assemble((path + where, "dim"), gap, "(", (function, "bold"), ")")


def remaining_width(total: int, columns: Sequence[Sequence[str]]) -> int:
    """What a SIMPLE_HEAD table ``total`` characters wide leaves to its last column after
    ``columns`` (each a header and its cells): 2 of padding a column, a divider after each, and
    an edge and padding on either side of the whole."""
    used = sum(max(map(len, column)) + 3 for column in columns) + 4
    return max(16, total - used)


def format_seconds(value: float) -> str:
    """A duration with a unit that keeps 3 significant digits: s, ms or µs."""
    magnitude = abs(value)
    if magnitude >= 1:
        return f"{value:.3f} s"
    if magnitude >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    if magnitude == 0:
        return "0"
    return f"{value * 1e6:.1f} µs"


def _signed_seconds(value: float) -> Text:
    if value == 0:
        return Text("0", style="dim")
    text = ("+" if value > 0 else "−") + format_seconds(abs(value))
    # Slower is worse: red up, green down, like a benchmark comparison.
    return Text(text, style="red" if value > 0 else "green")


def _calls(row: FunctionRow) -> str:
    # pstats writes recursive functions as total/primitive.
    if row.ncalls == row.primitive_calls:
        return f"{row.ncalls:,}"
    return f"{row.ncalls:,}/{row.primitive_calls:,}"


# Below this many characters for the location, the least needed figures make room for it.
_NARROW = 30


def _fit(
    headers: Sequence[str], cells: Sequence[Sequence[str]], optional: set[str], width: int
) -> tuple[list[int], int]:
    """The indexes of the figure columns to show and the width left for the location."""
    shown = list(range(len(headers)))
    while True:
        columns = [[headers[i], *(row[i] for row in cells)] for i in shown]
        room = remaining_width(width, columns)
        droppable = [i for i in shown if headers[i] in optional]
        if room >= _NARROW or not droppable:
            return shown, room
        shown.remove(droppable[-1])


def top_table(
    rows: Sequence[FunctionRow],
    *,
    path: str,
    totals: ProfileTotals,
    sort: SortKey,
    width: int = 120,
) -> Table:
    """The top functions in a table ``width`` characters wide: the location column takes what the
    figures leave, its folders shortened so that a file name is never cut; on a narrow terminal
    the per-call columns make room (``--json`` has them all)."""
    sort_column = {"cumulative": "cumtime", "tottime": "tottime", "ncalls": "calls"}[sort]
    table = Table(
        title=f"{path}: {plural(totals.total_calls, 'call')} "
        f"({totals.primitive_calls:,} primitive) in {format_seconds(totals.total_time)}, "
        f"{plural(totals.functions, 'function')}; by {sort_column}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    headers = ("calls", "tottime", "per call", "cumtime", "per call ")
    cells = [
        (
            _calls(row),
            format_seconds(row.tottime),
            format_seconds(row.tottime_per_call),
            format_seconds(row.cumtime),
            format_seconds(row.cumtime_per_call),
        )
        for row in rows
    ]
    shown, room = _fit(headers, cells, {"per call", "per call "}, width)
    for i in shown:
        name = headers[i].strip()
        header = Text(name, style="bold underline" if name == sort_column else "bold")
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("file:line(function)", overflow="fold", ratio=1)
    for row, figures in zip(rows, cells, strict=True):
        table.add_row(
            *(figures[i] for i in shown), location(row.file, row.line, row.function, room)
        )
    if not rows:
        table.caption = "no function matches"
    return table


def diff_table(
    rows: Sequence[DiffRow], *, path: str, baseline: str, sort: SortKey, width: int = 120
) -> Table:
    """The change per function in a table ``width`` characters wide (see :func:`top_table`; here
    the new cumulative time makes room)."""
    table = Table(
        title=f"{path} against {baseline}: change per file and function, largest first (by {sort})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    headers = ("status", "calls", "Δ tottime", "Δ cumtime", "cumtime")
    cells = [
        (
            Text(row.status, style=_STATUS_STYLES[row.status]),
            Text(f"{row.ncalls_old:,}→{row.ncalls_new:,}"),
            _signed_seconds(row.tottime_delta),
            _signed_seconds(row.cumtime_delta),
            Text(format_seconds(row.cumtime_new)),
        )
        for row in rows
    ]
    plain = [[cell.plain for cell in row] for row in cells]
    shown, room = _fit(headers, plain, {"cumtime"}, width)
    for i in shown:
        table.add_column(headers[i], justify="left" if i == 0 else "right", no_wrap=True)
    table.add_column("file(function)", overflow="fold", ratio=1)
    for row, figures in zip(rows, cells, strict=True):
        table.add_row(*(figures[i] for i in shown), location(row.file, None, row.function, room))
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("new", "vanished", "changed")}
    table.caption = ", ".join(f"{n} {s}" for s, n in counts.items()) + " (of the rows shown)"
    return table


def print_top(
    console: Console,
    rows: Sequence[FunctionRow],
    *,
    path: str,
    totals: ProfileTotals,
    sort: SortKey,
) -> None:
    console.print(top_table(rows, path=path, totals=totals, sort=sort, width=console.width))


def print_diff(
    console: Console, rows: Sequence[DiffRow], *, path: str, baseline: str, sort: SortKey
) -> None:
    console.print(diff_table(rows, path=path, baseline=baseline, sort=sort, width=console.width))


def top_json(
    rows: Sequence[FunctionRow], *, path: str, totals: ProfileTotals, sort: SortKey
) -> dict[str, Any]:
    return {
        "profile": path,
        "sort": sort,
        "functions_total": totals.functions,
        "total_calls": totals.total_calls,
        "primitive_calls": totals.primitive_calls,
        "total_time": totals.total_time,
        "functions": [row.to_json() for row in rows],
    }


def diff_json(
    rows: Sequence[DiffRow], *, path: str, baseline: str, sort: SortKey
) -> dict[str, Any]:
    return {
        "profile": path,
        "baseline": baseline,
        "sort": sort,
        "diff": [row.to_json() for row in rows],
    }


def serving_message(console: Console, *, path: str, url: str) -> None:
    # soft_wrap: a URL broken over two lines cannot be copied or parsed.
    console.print(Text.assemble("snakeviz is serving ", (path, "cyan"), " at"), soft_wrap=True)
    console.print(url, soft_wrap=True, highlight=False, markup=False)
    console.print(Text("Ctrl-C stops it.", style="dim"), soft_wrap=True)
