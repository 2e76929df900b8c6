"""Reading the settings: a TOML file's keys, then the environment's and the flags' values over them.

:func:`read_config_file` flattens a file (``[bot]`` and ``[sandbox]`` tables merge in; tables such
as ``[models.NAME]`` stay tables) and refuses a token in it; :func:`load_settings` builds the bot's
:class:`~bot.settings.Settings` (``botctl`` also sorts a file's sandbox and run keys to theirs).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.options import SettingsError, boolean, build
from bot.settings import Settings

__all__ = ["load_settings", "read_config_file"]


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML file, flattened (``[bot]`` and ``[sandbox]`` tables merge in)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"config: no file at {p}") from None
    except OSError as exc:
        raise SettingsError(f"config: cannot read {p} ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config: {p} is not valid TOML ({exc})") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("bot", "sandbox") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    flat = {k.replace("-", "_"): v for k, v in flat.items()}
    if "no_dedup" in flat:
        flat["dedup"] = not boolean("no_dedup", flat.pop("no_dedup"))
    if "token" in flat:
        # A token in a file that may be committed is a leak waiting to happen: env or flag only.
        raise SettingsError(f"config: put the Discord token in DISCORD_TOKEN, not in {p}")
    return flat


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    file_values: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < the TOML ``config_file`` (or ``file_values`` already read) < ``overrides``
    (flags and environment; ``None`` = not given)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    if file_values is not None:
        values.update(file_values)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    where = str(config_file) if config_file is not None else ""
    return build(Settings, values, where=where).check()
