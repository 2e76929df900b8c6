"""The CLI's two consoles: results go to stdout, errors and progress to stderr."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def error(message: str) -> None:
    """Print a one-line user error on stderr (markup off: messages may hold brackets)."""
    err_console.print(
        f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True
    )
