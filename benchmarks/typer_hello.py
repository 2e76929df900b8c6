"""The floor for ``botctl --help``: a bare Typer app with the same settings and one command.

``python benchmarks/typer_hello.py --help`` pays the interpreter, Typer, Click and rich's help
rendering, and nothing of botctl; ``benchmarks.startup`` times it against ``botctl --help``.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="hello",
    help="Say hello.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
    """Greet someone."""
    typer.echo(f"hello {name}")


@app.command()
def bye(name: str = typer.Option("world", help="Who to see off.")) -> None:
    """Say goodbye (a second command, so the help lists commands as botctl's does)."""
    typer.echo(f"bye {name}")


if __name__ == "__main__":
    app()
