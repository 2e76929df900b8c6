"""Command modules, one per command or group; ``register_all`` wires them onto the app."""

from __future__ import annotations

import importlib

import typer

# (module, kind, name): "command" modules expose a function named like the command,
# "group" modules expose ``app``, a Typer sub-app.
_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("run", "command", "run"),
    ("profile", "command", "profile"),
    ("metrics", "group", "metrics"),
    ("analyze", "command", "analyze"),
    ("bench", "command", "bench"),
    ("sandbox", "group", "sandbox"),
    ("kb", "group", "kb"),
)


def register_all(app: typer.Typer) -> None:
    for module_name, kind, name in _COMMANDS:
        try:
            module = importlib.import_module(f"botctl.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"botctl.commands.{module_name}":
                raise
            continue  # a command group not built yet
        if kind == "group":
            app.add_typer(module.app, name=name)
        else:
            app.command(name)(getattr(module, name))
