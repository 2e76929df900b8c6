"""The ``botctl`` command line: the root app over the lazy command list, and :func:`main`, the one
place where user errors (:class:`BotctlError`) become one line on stderr and an exit code.

The commands and how they load are in :mod:`botctl.commands`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from botctl import __version__
from botctl.commands import CONTEXT_SETTINGS, LazyGroup
from botctl.console import error
from botctl.errors import BotctlError

app = typer.Typer(
    name="botctl",
    cls=LazyGroup,
    help="Run, measure and profile a Discord chat bot that answers through an LLM.",
    context_settings=CONTEXT_SETTINGS,
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"botctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run, measure and profile a Discord chat bot that answers through an LLM."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m botctl``.

    Typer runs in standalone mode, so bad usage exits 2 with its usage message; a
    :class:`BotctlError` passes through it and is caught here, once.
    """
    try:
        app(args=argv, prog_name="botctl")
    except BotctlError as exc:
        error(exc.message)
        sys.exit(exc.exit_code)
