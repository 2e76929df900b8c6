"""What never reaches the metrics file: message text, model output and secrets (SPEC "Metrics
file"), by key name, in any case (``Authorization``, ``API-Key``) and at any depth.

A safety net for callers of ``MetricsService.log_event``: the bot's own events carry lengths and
counts, never these. Top-level keys are checked as an event is logged; nested ones as its batch is
written (:func:`redacted`), which keeps the caller's side of ``log_event`` one set lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FORBIDDEN_KEYS", "forbidden", "redacted"]

FORBIDDEN_KEYS = frozenset(
    {
        "content", "text", "prompt", "token", "api_key", "apikey", "authorization", "password",
        "secret", "message", "messages", "question", "answer", "reply_text", "preview",
        "access_token", "refresh_token", "cookie",
    }
)  # fmt: skip
_CONTAINERS = frozenset({dict, list, tuple})


def forbidden(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in FORBIDDEN_KEYS


def _scrubbed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _scrubbed(v) for k, v in value.items() if not forbidden(k)}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def redacted(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` itself when no value nests, else a copy without forbidden keys at any depth
    (the caller's dicts are left alone)."""
    if _CONTAINERS.isdisjoint(map(type, event.values())):
        return event
    return {k: _scrubbed(v) if type(v) in _CONTAINERS else v for k, v in event.items()}
