"""Rendering of ``botctl kb``: add reports, search hits, the file list, and a progress bar."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bot.kb import AddReport, Hit, KBStats
from bot.kb.vectors import EmbedReport

__all__ = [
    "human_bytes",
    "print_add",
    "print_embed",
    "print_hits",
    "print_removed",
    "print_stats",
    "progress",
    "stats_json",
    "warn",
]

# A bar for an add that ends sooner than this would only flicker.
_BAR_AFTER_S = 0.5


def human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} GB"  # pragma: no cover - the loop returns


def warn(console: Console, message: str) -> None:
    console.print(Text.assemble(("warning: ", "bold yellow"), message), soft_wrap=True)


@contextmanager
def progress(console: Console, label: str) -> Iterator[Callable[[int, int, str], None] | None]:
    """A callback that drives a bar on ``console`` when it is a terminal (else ``None``); the
    bar appears only once the work has lasted :data:`_BAR_AFTER_S` and vanishes at the end."""
    if not console.is_terminal:
        yield None
        return
    columns = [
        TextColumn(f"{label} [dim]{{task.fields[name]}}"),
        BarColumn(),
        DownloadColumn() if label == "indexing" else MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    bar = Progress(*columns, console=console, transient=True)
    task = bar.add_task(label, total=None, name="")
    started = time.monotonic()
    shown = False

    def update(done: int, total: int, name: str) -> None:
        nonlocal shown
        if not shown and time.monotonic() - started >= _BAR_AFTER_S:
            bar.start()
            shown = True
        bar.update(task, completed=done, total=total, name=name[-60:])

    try:
        yield update
    finally:
        if shown:
            bar.stop()


def print_add(console: Console, kb: Path, report: AddReport) -> None:
    rate = report.bytes_read / report.seconds / 1e6 if report.seconds > 0 else 0.0
    parts = [
        f"{len(report.added)} added",
        f"{len(report.updated)} updated",
        f"{report.unchanged} unchanged",
        f"{len(report.skipped)} skipped",
    ]
    if report.dropped:
        parts.append(f"{len(report.dropped)} dropped")
    console.print(
        Text.assemble(
            (f"{kb}", "bold"),
            ": " + ", ".join(parts),
            (
                f" · {report.chunks_written:,} chunks written · "
                f"{human_bytes(report.bytes_read)} in {report.seconds:.2f} s ({rate:.1f} MB/s)",
                "dim",
            ),
        ),
        soft_wrap=True,
    )
    for name, why in report.skipped:
        console.print(Text.assemble("  skipped ", (name, "bold"), f": {why}"), soft_wrap=True)
    for name in report.dropped:
        console.print(
            Text.assemble("  dropped ", (name, "bold"), ": now empty or binary"), soft_wrap=True
        )
    for note in report.notes:
        console.print(Text(f"  {note}", style="yellow"), soft_wrap=True)
    if report.gone:
        shown = ", ".join(report.gone[:5]) + (" …" if len(report.gone) > 5 else "")
        console.print(
            Text(
                f"  {len(report.gone)} file(s) in the KB are no longer on disk ({shown}); "
                "drop them with `botctl kb remove PATH`",
                style="yellow",
            ),
            soft_wrap=True,
        )


def print_embed(console: Console, model: str, url: str, report: EmbedReport) -> None:
    if report.reset_from:
        console.print(
            Text(f"  vectors of {report.reset_from} dropped: the model changed", style="yellow")
        )
    console.print(
        Text.assemble(
            "  embeddings: ",
            (model, "bold"),
            f" at {url}: {report.embedded:,} chunk(s) embedded",
            (" (the others already had one)" if report.embedded == 0 else "", "dim"),
        ),
        soft_wrap=True,
    )


def print_hits(console: Console, hits: list[Hit], mode: str) -> None:
    if not hits:
        console.print(Text("no matching chunk", style="dim"))
        return
    for rank, hit in enumerate(hits, start=1):
        console.print(
            Text.assemble(
                (f"{rank}. ", "bold"),
                (hit.location, "bold cyan"),
                (f"  score {hit.score:.4g} ({mode})", "dim"),
            ),
            soft_wrap=True,
        )
        # Indented by hand: a rich Padding would pad every line to the width with spaces.
        console.print(Text(textwrap.indent(hit.text, "   ") + "\n"), soft_wrap=True)


def stats_json(stats: KBStats) -> dict[str, Any]:
    return {
        "kb": stats.path,
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "chunks": f.chunks,
                "added": f.added,
                "sha256": f.sha256,
            }
            for f in stats.files
        ],
        "chunks": stats.chunks,
        "bytes": stats.bytes,
        "db_bytes": stats.db_bytes,
        "embed_model": stats.embed_model,
        "embed_dim": stats.embed_dim,
        "embedded_chunks": stats.embedded,
    }


def print_stats(console: Console, stats: KBStats) -> None:
    table = Table(box=box.SIMPLE_HEAD, title=stats.path, title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("chunks", justify="right")
    table.add_column("size", justify="right")
    table.add_column("added")
    for f in stats.files:
        added = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.added))
        table.add_row(f.path, f"{f.chunks:,}", human_bytes(f.size), added)
    console.print(table)
    model = (
        f"{stats.embed_model} ({stats.embed_dim} dimensions, {stats.embedded:,}/{stats.chunks:,} "
        "chunks)"
        if stats.embed_model
        else "none (lexical search)"
    )
    console.print(
        f"{len(stats.files):,} files, {stats.chunks:,} chunks, {human_bytes(stats.bytes)} of text; "
        f"file {human_bytes(stats.db_bytes)}; embeddings: {model}",
        highlight=False,
        soft_wrap=True,
    )


def print_removed(console: Console, removed: list[str], chunks: int) -> None:
    console.print(f"removed {len(removed):,} file(s) ({chunks:,} chunks)", highlight=False)
    for name in removed[:20]:
        console.print(Text(f"  {name}", style="dim"), soft_wrap=True)
    if len(removed) > 20:
        console.print(Text(f"  … and {len(removed) - 20:,} more", style="dim"))
