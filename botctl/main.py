"""The ``botctl`` command line: builds the Typer app and catches user errors once, in :func:`main`.

Command modules live in ``botctl.commands`` (a file per command or group). They import only Typer
at module level so that ``botctl --help`` stays fast and imports neither discord nor aiohttp.
"""

from __future__ import annotations

import sys

import typer

from botctl import __version__
from botctl.commands import register_all
from botctl.console import error
from botctl.errors import BotctlError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="botctl",
    help="Run, measure and profile a Discord chat bot that answers through an Ollama LLM.",
    context_settings=CONTEXT_SETTINGS,
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"botctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run, measure and profile a Discord chat bot that answers through an Ollama LLM."""


register_all(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: user errors become one line on stderr and exit 1.

    Typer runs in standalone mode, so bad usage exits 2 with its usage message; a
    :class:`BotctlError` passes through it and is caught here, once.
    """
    try:
        app(args=argv, prog_name="botctl")
    except BotctlError as exc:
        error(exc.message)
        sys.exit(exc.exit_code)
