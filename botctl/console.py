"""The CLI's two consoles: results go to stdout, errors and progress to stderr."""

from __future__ import annotations

from typing import Any

import orjson
import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def error(message: str) -> None:
    """Print a one-line user error on stderr (markup off: messages may hold brackets)."""
    err_console.print(
        f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True
    )


def print_json(data: Any) -> None:
    """One JSON document on stdout, and nothing else (``--json`` of every command)."""
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def plural(count: float, singular: str, plural_form: str | None = None) -> str:
    """``"1 flush"``, ``"3 flushes"``: a count with its noun agreed, thousands separated."""
    word = singular if count == 1 else (plural_form or singular + "s")
    shown = f"{count:,}" if isinstance(count, int) else f"{count:,.1f}"
    return f"{shown} {word}"
