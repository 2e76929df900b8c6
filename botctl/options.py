"""Typer options made from settings declared once (:mod:`bot.options`), and reading them back.

:func:`typer_signature` turns the declared fields of settings classes into the parameters of a
Typer command (flag, help with the default the code holds, env vars, help panel); a command built
with :func:`declared_command` receives every value as given (``None`` when not given) and
:func:`split_values` sorts a TOML file's keys and the command line's values back to the classes
they belong to.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bot.options import Option, SettingsError, declared, default_of

__all__ = ["declared_command", "split_values", "typer_signature"]

_CLI_TYPES: tuple[type, ...] = (bool, int, float, str, Path)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Evaluated once per settings class: every flag of `botctl run` asks for its field's type.
    return typing.get_type_hints(cls)


def _cli_type(cls: type, f: Field[Any]) -> type:
    """The scalar type a flag parses (``int`` for ``int | None``)."""
    hint = _hints(cls)[f.name]
    if _is_list(cls, f):
        return str  # "0,1": the field's own parser splits it, as from the environment
    if hint in _CLI_TYPES:
        return typing.cast(type, hint)
    for arg in typing.get_args(hint):
        if arg in _CLI_TYPES:
            return typing.cast(type, arg)
    raise TypeError(f"{cls.__name__}.{f.name}: no command-line type for {hint!r}")


def _is_list(cls: type, f: Field[Any]) -> bool:
    """A field of several values (ids): its flag takes ``0,1`` or repeats (``--x 0 --x 1``)."""
    return typing.get_origin(_hints(cls)[f.name]) in (tuple, list)


def _shown_default(f: Field[Any], meta: Option) -> str:
    if meta.default_text is not None:
        return meta.default_text
    value = default_of(f)
    if value is None or value == () or isinstance(value, bool):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parameter(cls: type, f: Field[Any], meta: Option) -> inspect.Parameter:
    flag = meta.flag or "--" + f.name.replace("_", "-")
    kind = _cli_type(cls, f)
    # One name as a string: click shows a list as its repr in errors ("env var: '['BOT_X']'").
    envvar: str | list[str] | None = meta.env[0] if len(meta.env) == 1 else list(meta.env) or None
    if kind is bool:
        # metavar "": a flag takes no value, so none is shown (Typer would print <bool>).
        info = typer.Option(
            flag,
            help=meta.help,
            envvar=envvar,
            rich_help_panel=meta.panel,
            show_default=False,
            metavar="",
        )
        annotation: Any = Annotated[bool, info]
        return inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=annotation
        )
    # The parameter's own default is None ("not given", so a file or env value can apply); the
    # default the code holds is shown in the help instead, in Typer's style.
    shown = _shown_default(f, meta)
    text = meta.help + (f" [dim]\\[default: {escape(shown)}][/dim]" if shown else "")
    info = typer.Option(
        flag,
        help=text,
        envvar=envvar,
        rich_help_panel=meta.panel,
        show_default=False,
        metavar="<ids>" if _is_list(cls, f) else None,
    )
    annotation = (
        Annotated[list[str] | None, info] if _is_list(cls, f) else Annotated[kind | None, info]
    )
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
    )


def typer_signature(*classes: type, extra: Sequence[inspect.Parameter] = ()) -> inspect.Signature:
    """The command-line parameters of every declared field of ``classes`` (``flag=""`` skipped)."""
    params = list(extra)
    for cls in classes:
        for f, meta in declared(cls):
            if meta.flag != "":
                params.append(_parameter(cls, f, meta))
    return inspect.Signature(params)


def cli_values(classes: Sequence[type], given: Mapping[str, Any]) -> dict[str, Any]:
    """The values the command line gave, as field values (a bool flag absent is ``None``)."""
    out: dict[str, Any] = {}
    for cls in classes:
        for f, meta in declared(cls):
            if f.name not in given:
                continue
            value = given[f.name]
            if _cli_type(cls, f) is bool:
                value = (not value if meta.negate else value) if value else None
            elif _is_list(cls, f):  # repeated and comma forms alike; none given: not given
                value = ",".join(value) if value else None
            out[f.name] = value
    return out


def split_values(
    classes: Sequence[type], values: Mapping[str, Any], *, where: str
) -> list[dict[str, Any]]:
    """``values`` sorted to ``classes`` by field name; a name no class declares is refused."""
    owners = {f.name: i for i, cls in enumerate(classes) for f, _meta in declared(cls)}
    out: list[dict[str, Any]] = [{} for _ in classes]
    for name, value in values.items():
        index = owners.get(name)
        if index is None:
            raise SettingsError(
                f"config: unknown setting {name!r} in {where}; known: {', '.join(sorted(owners))}"
            )
        out[index][name] = value
    return out


def declared_command(
    impl: Callable[[dict[str, Any]], None],
    *classes: type,
    extra: Sequence[inspect.Parameter] = (),
    doc: str | None = None,
) -> Callable[..., None]:
    """A Typer command whose options are the declared fields of ``classes`` (and ``extra``);
    ``impl`` receives ``{name: value}`` for every parameter."""

    def command(**given: Any) -> None:
        impl(given)

    command.__signature__ = typer_signature(*classes, extra=extra)  # type: ignore[attr-defined]
    command.__doc__ = doc or impl.__doc__
    command.__name__ = impl.__name__
    return command
