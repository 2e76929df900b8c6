"""Shared fixtures. Everything binds 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def botctl_cmd() -> list[str]:
    """The CLI as a real subprocess command."""
    return [sys.executable, "-m", "botctl"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment without the bot's variables, so tests do not read the developer's."""
    for name in list(os.environ):
        if name.startswith(("DISCORD_", "OLLAMA_", "BOT_")):
            monkeypatch.delenv(name, raising=False)
    return dict(os.environ)
