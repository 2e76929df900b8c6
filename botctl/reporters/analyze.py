"""Rendering of ``botctl analyze``: top functions and profile differences, as tables or JSON."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from botctl.analyze.stats import DiffRow, FunctionRow, ProfileTotals, SortKey

_STATUS_STYLES = {"new": "bold yellow", "vanished": "dim", "changed": "", "unchanged": "dim"}


def short_path(file: str) -> str:
    """A path short enough for a table: from ``site-packages/`` on, relative to the standard
    library, or relative to the cwd."""
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
    return file if relative.startswith("..") else relative


def _location(file: str, line: int | None, function: str) -> Text:
    if file == "~":
        return Text(function, style="italic")
    where = short_path(file) + (f":{line}" if line else "")
    return Text.assemble((function, "bold"), " ", (where, "dim"))


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


def top_table(
    rows: Sequence[FunctionRow], *, path: str, totals: ProfileTotals, sort: SortKey
) -> Table:
    sort_column = {"cumulative": "cumtime", "tottime": "tottime", "ncalls": "calls"}[sort]
    table = Table(
        title=f"{path}: {totals.total_calls:,} calls ({totals.primitive_calls:,} primitive) "
        f"in {format_seconds(totals.total_time)}, {totals.functions:,} functions; "
        f"by {sort_column}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for name in ("calls", "tottime", "per call", "cumtime", "per call"):
        header = Text(name, style="bold underline" if name == sort_column else "bold")
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("function  file:line", overflow="fold", min_width=16, ratio=1)
    for row in rows:
        table.add_row(
            _calls(row),
            format_seconds(row.tottime),
            format_seconds(row.tottime_per_call),
            format_seconds(row.cumtime),
            format_seconds(row.cumtime_per_call),
            _location(row.file, row.line, row.function),
        )
    if not rows:
        table.caption = "no function matches"
    return table


def diff_table(rows: Sequence[DiffRow], *, path: str, baseline: str, sort: SortKey) -> Table:
    table = Table(
        title=f"{path} against {baseline}: change per file and function, largest first (by {sort})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("status", no_wrap=True)
    table.add_column("calls", justify="right")
    table.add_column("Δ tottime", justify="right", no_wrap=True)
    table.add_column("Δ cumtime", justify="right", no_wrap=True)
    table.add_column("cumtime", justify="right", no_wrap=True)
    table.add_column("function  file", overflow="fold", min_width=16, ratio=1)
    for row in rows:
        table.add_row(
            Text(row.status, style=_STATUS_STYLES[row.status]),
            f"{row.ncalls_old:,}→{row.ncalls_new:,}",
            _signed_seconds(row.tottime_delta),
            _signed_seconds(row.cumtime_delta),
            format_seconds(row.cumtime_new),
            _location(row.file, None, row.function),
        )
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
    console.print(top_table(rows, path=path, totals=totals, sort=sort))


def print_diff(
    console: Console, rows: Sequence[DiffRow], *, path: str, baseline: str, sort: SortKey
) -> None:
    console.print(diff_table(rows, path=path, baseline=baseline, sort=sort))


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
