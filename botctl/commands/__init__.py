"""The list of ``botctl`` commands and the lazy group that imports each one only when it is used.

``botctl --help`` lists every command from :data:`COMMANDS` (name and one-line summary) without
importing any command module; a command's module is imported when the command runs, when its
``--help`` is shown, or when the shell completes its options. This is the one place that keeps
start-up cheap: command modules import what they need at the top.

A command module either exposes a function named like the command (``kind="command"``) or a Typer
sub-app ``app`` (``kind="group"``). A module that is listed but missing is an error that says so,
never a command silently left out.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup

from botctl.errors import BotctlError

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    kind: Literal["command", "group"]
    summary: str  # the line shown by `botctl --help`

    @property
    def module(self) -> str:
        return f"botctl.commands.{self.name}"


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("run", "command", "Start the bot: on Discord with a token, else in the sandbox."),
    CommandSpec("profile", "command", "Profile the bot with cProfile, py-spy or a memory tracer."),
    CommandSpec("metrics", "group", "Read the bot's metrics files: tail, top, summary, tune."),
    CommandSpec("analyze", "command", "Show the top functions of a cProfile profile, or a diff."),
    CommandSpec("bench", "command", "Measure the bot's performance claims on this machine."),
    CommandSpec("sandbox", "group", "Run the sandbox's loopback servers on their own."),
    CommandSpec("kb", "group", "Index documents and search them: the bot's knowledge base."),
)


def load_command(spec: CommandSpec) -> Any:
    """Import ``spec``'s module and build its Typer command (a click command object)."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name != spec.module:
            raise  # a dependency of the module is missing: a bug or a broken install, say it loud
        raise BotctlError(
            f"the `{spec.name}` command is not in this installation (no module {spec.module}); "
            "reinstall botctl"
        ) from None
    # A throwaway app with a callback always builds a group, whatever the module holds, so both
    # kinds come out of the same public call (typer.main.get_command).
    holder = typer.Typer(add_completion=False, rich_markup_mode="rich")
    holder.callback()(_nothing)
    if spec.kind == "group":
        holder.add_typer(module.app, name=spec.name, context_settings=CONTEXT_SETTINGS)
    else:
        holder.command(spec.name, context_settings=CONTEXT_SETTINGS)(getattr(module, spec.name))
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return show_flags_as_flags(group.commands[spec.name])


def show_flags_as_flags(command: Any) -> Any:
    """``command`` (and its subcommands) with no value shown beside a flag: Typer would print
    ``<bool>`` there, as if ``--json true`` were how to write it."""
    _no_flag_types(command.params)
    context = typer.Context(command, help_option_names=CONTEXT_SETTINGS["help_option_names"])
    help_option = command.get_help_option(context)  # built once per command, then cached
    if help_option is not None:
        help_option.metavar = ""
    for subcommand in getattr(command, "commands", {}).values():
        show_flags_as_flags(subcommand)
    return command


def _no_flag_types(params: list[Any]) -> None:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def _nothing() -> None:
    """Callback of the throwaway app in :func:`load_command`."""


class LazyGroup(TyperGroup):
    """The root group: lists :data:`COMMANDS` by their summaries, imports one when it is resolved.

    Listing (help, completion of command names, "did you mean") sees light stand-ins that carry
    the summary; :meth:`resolve_command` (running a command, its ``--help``, completing its
    options) swaps in the real command.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for spec in COMMANDS:
            self.commands.setdefault(spec.name, TyperCommand(spec.name, short_help=spec.summary))

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        _no_flag_types(params)  # --help, and Typer's --install-completion added after __init__
        return params

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        spec = next((s for s in COMMANDS if args and s.name == args[0]), None)
        if spec is None:
            return super().resolve_command(ctx, args)
        return spec.name, load_command(spec), args[1:]
