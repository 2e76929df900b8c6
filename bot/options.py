"""One declaration per setting: a dataclass field that carries its help, checks and env names.

A settings class is a frozen dataclass whose fields are made with :func:`option`. From that one
declaration come the TOML key (the field name), the environment variables (``env``), the CLI flag
(``--field-name`` unless ``flag`` says otherwise; ``flag=""`` keeps it out of the command line), its
help text, the default shown in that help (the field's own default) and the validation
(``check``). :func:`build` turns raw values (from a file, env or flags) into an instance, raising
:class:`SettingsError` with one line that names the setting and the form expected.

``botctl`` builds its Typer options from the same fields (``botctl/options.py``), so adding a
setting is one field here and one use of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, TypeVar

__all__ = [
    "Option",
    "SettingsError",
    "boolean",
    "build",
    "declared",
    "id_list",
    "number",
    "option",
    "ratio",
    "text",
]


class SettingsError(ValueError):
    """A setting has a bad value; the message is one line naming the setting and the form expected."""


@dataclass(frozen=True, slots=True)
class Option:
    """What a settings field declares beside its type and default."""

    help: str
    check: Callable[[str, Any], Any]
    env: tuple[str, ...] = ()
    flag: str | None = None  # None: --field-name; "": not on the command line
    panel: str | None = None
    # A bool shown as `--flag` that stores `not given` when the field's name is its opposite
    # (`--no-dedup` for `dedup`).
    negate: bool = False
    default_text: str | None = None  # how the default reads in help, when the value is not it


def option(
    default: Any,
    help: str,
    check: Callable[[str, Any], Any],
    *,
    env: str | Iterable[str] = (),
    flag: str | None = None,
    panel: str | None = None,
    negate: bool = False,
    default_text: str | None = None,
    repr: bool = True,
) -> Any:
    """A dataclass field declared once: default, help, check, env names, flag, help panel.

    A callable ``default`` is a factory (for a table such as ``{}``: each instance its own).
    """
    names = (env,) if isinstance(env, str) else tuple(env)
    meta = Option(help, check, names, flag, panel, negate, default_text)
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple, a frozen value or a factory as a default")
    if callable(default):
        return field(default_factory=default, repr=repr, metadata={"option": meta})
    return field(default=default, repr=repr, metadata={"option": meta})


def declared(cls: type) -> list[tuple[Field[Any], Option]]:
    """The fields of ``cls`` made with :func:`option`, in declaration order."""
    out: list[tuple[Field[Any], Option]] = []
    for f in fields(cls):
        meta = f.metadata.get("option")
        if isinstance(meta, Option):
            out.append((f, meta))
    return out


T = TypeVar("T")


def build(cls: type[T], values: Mapping[str, Any], *, where: str = "") -> T:
    """An instance of ``cls`` from raw ``values``, each checked by its declaration.

    Unknown names are refused (with the list of known ones); ``None`` means "not given".
    """
    known = {f.name: meta for f, meta in declared(cls)}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        meta = known.get(name)
        if meta is None:
            suffix = f" in {where}" if where else ""
            raise SettingsError(
                f"unknown setting {name!r}{suffix}; known: {', '.join(sorted(known))}"
            )
        checked[name] = meta.check(name, value)
    return cls(**checked)


def default_of(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


# --- checks: (name, raw value) -> value -----------------------------------------------------


def number(
    kind: type, *, minimum: float | None = None, strict: bool = False, maximum: float | None = None
) -> Callable[[str, Any], Any]:
    """A whole number (``kind=int``) or a number, optionally bounded."""
    form = "a whole number" if kind is int else "a number"
    if minimum is not None and maximum is not None:
        form += f" from {minimum:g} to {maximum:g}"
    elif minimum is not None:
        form += f" {'>' if strict else '>='} {minimum:g}"

    def check(name: str, value: Any) -> Any:
        bad = SettingsError(f"{name}: expected {form}, got {value!r}")
        if isinstance(value, bool):
            raise bad
        try:
            if kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                result: float = int(value.strip()) if isinstance(value, str) else int(value)
            else:
                result = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if math.isnan(result) or math.isinf(result):
            raise bad
        if minimum is not None and (result <= minimum if strict else result < minimum):
            raise bad
        if maximum is not None and result > maximum:
            raise bad
        return result

    return check


def optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def wrapped(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return wrapped


def ratio(name: str, value: Any) -> float:
    result: float = number(float, minimum=0, maximum=1)(name, value)
    return result


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {value!r}")


def text(*, allow_empty: bool = False) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise SettingsError(f"{name}: expected a non-empty string")
        return value

    return check


def id_list(name: str, value: Any) -> tuple[int, ...]:
    """Discord ids: a TOML list of integers, or a comma-separated string (env, flag)."""
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, int) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, list | tuple):
        raise SettingsError(f"{name}: expected ids such as 123,456 (in a config file: [123, 456])")
    try:
        return tuple(int(str(item).strip()) for item in items if str(item).strip())
    except ValueError:
        raise SettingsError(
            f"{name}: expected ids such as 123,456 (in a config file: [123, 456])"
        ) from None
