"""Rendering of ``botctl bench``: the seed's claims beside the figures measured here, and budgets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from botctl.bench.budgets import Budget, summary_line
from botctl.bench.suite import BenchReport, Row

__all__ = ["budget_text", "print_report", "progress", "report_json", "rows_table"]

_VERDICT_STYLES = {"pass": "bold green", "fail": "bold red", "not measured": "yellow"}


def budget_text(budget: Budget) -> Text:
    """A budget line with its verdict coloured (PASS green, FAIL red, N/A yellow)."""
    line = budget.line()
    tag, _, rest = line.partition(" ")
    return Text.assemble((tag, _VERDICT_STYLES[budget.verdict]), " ", rest)


def _verdicts(row: Row) -> Text:
    if row.error:
        return Text("not measured", style="yellow")
    if not row.budgets:
        return Text("-", style="dim")
    text = Text()
    for i, budget in enumerate(row.budgets):
        if i:
            text.append("\n")
        word = {"pass": "pass", "fail": "FAIL", "not measured": "n/a"}[budget.verdict]
        text.append(word, style=_VERDICT_STYLES[budget.verdict])
        if budget.verdict != "not measured":
            text.append(f" {budget.op} {budget.limit:g}{budget.unit if budget.unit == 'x' else ''}")
    return text


def rows_table(report: BenchReport) -> Table:
    info = report.machine
    title = (
        f"botctl bench{' --quick' if report.quick else ''}: measured on this machine "
        f"({info.get('cpus')} CPUs, Python {info.get('python')}) in {report.elapsed_s:.0f} s"
    )
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_lines=True,
        expand=False,
    )
    table.add_column("Row", style="bold", max_width=28)
    table.add_column("Seed's claim", style="italic", max_width=24)
    table.add_column("Measured here", max_width=70)
    table.add_column("Budget", no_wrap=True)
    for row in report.rows:
        measured = Text(row.measured)
        if row.error:
            measured = Text(f"not measured: {row.error}", style="yellow")
        elif row.note:
            measured.append(f"\n{row.note}", style="dim")
        table.add_row(
            row.title, row.claim or Text("(no claim)", style="dim"), measured, _verdicts(row)
        )
    return table


def print_report(console: Console, report: BenchReport) -> None:
    console.print(rows_table(report))
    lines = [budget_text(budget) for budget in report.budgets]
    lines.append(Text(summary_line(report.budgets), style="bold"))
    console.print(Group(*lines))
    for note in report.notes:
        console.print(Text(note, style="dim"))


def report_json(report: BenchReport) -> dict[str, Any]:
    return report.to_json()


@contextmanager
def progress(console: Console) -> Iterator[Callable[[str], None]]:
    """A spinner on ``console`` (stderr) saying what is being measured; silent when it is not a
    terminal, so logs and pipes get the result only."""
    if not console.is_terminal:
        yield lambda _message: None
        return
    with console.status("starting") as status:

        def update(message: str) -> None:
            status.update(message)

        yield update
