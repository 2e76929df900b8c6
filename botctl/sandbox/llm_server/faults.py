"""Injectable faults: what they are, which request each applies to and the error text it gives.

A fault is taken by the oldest-first rule: the first fault in the list that matches a request (its
``target`` — ``chat`` or ``embed`` — and, when set, its ``api`` and ``model``) and has requests
left applies to it. Each protocol module turns a taken fault into its own wire shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, cast, get_args

FaultKind = Literal["status", "stream_error", "hang", "garbage"]
FaultTarget = Literal["chat", "embed"]
_FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_TARGETS: tuple[str, ...] = get_args(FaultTarget)
_APIS = ("ollama", "openai")

# A hung request is released by stop(); this only bounds a server nobody stops.
HANG_LIMIT_S = 3600.0

STATUS_MESSAGES = {
    400: "invalid request",
    429: "too many requests, please try again later",
    500: "llama runner process has terminated: exit status 2",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
STREAM_ERROR_MESSAGE = "an error was encountered while running the model"
GARBAGE_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>\nthis is not JSON\n"


@dataclass
class Fault:
    """One injected fault. ``count`` is how many requests it still applies to (``-1``: until
    cleared); ``api`` and ``model`` narrow it to one protocol or one model."""

    kind: FaultKind
    count: int = 1
    status: int = 500
    retry_after: float | None = None
    after_chunks: int = 0
    message: str | None = None
    target: FaultTarget = "chat"
    api: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(_FAULT_KINDS)}")
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise ValueError("fault count must be an integer")
        if self.count == 0 or self.count < -1:
            raise ValueError("fault count must be >= 1, or -1 for every request until cleared")
        if not isinstance(self.status, int) or not 400 <= self.status <= 599:
            raise ValueError("fault status must be an HTTP error status (400-599)")
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError("retry_after must be >= 0 seconds")
        if not isinstance(self.after_chunks, int) or self.after_chunks < 0:
            raise ValueError("after_chunks must be an integer >= 0")
        if self.target not in _TARGETS:
            raise ValueError(f"fault target must be one of {', '.join(_TARGETS)}")
        if self.api is not None and self.api not in _APIS:
            raise ValueError(f"fault api must be one of {', '.join(_APIS)}")
        if self.model is not None and not isinstance(self.model, str):
            raise ValueError("fault model must be a model name")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**cast(dict[str, Any], dict(data)))
        except TypeError as exc:
            raise ValueError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, target: FaultTarget, api: str, model: str) -> bool:
        return (
            self.target == target
            and (self.api is None or self.api == api)
            and (self.model is None or self.model == model)
        )

    def error_message(self, model: str) -> str:
        if self.message is not None:
            return self.message
        if self.kind == "stream_error":
            return STREAM_ERROR_MESSAGE
        if self.status == 404:
            return f'model "{model}" not found, try pulling it first'
        return STATUS_MESSAGES.get(self.status, f"sandbox fault: HTTP {self.status}")

    def retry_headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": f"{self.retry_after:g}"}


def take_fault(faults: list[Fault], target: FaultTarget, api: str, model: str) -> Fault | None:
    """The fault that applies to this request, its count spent (and dropped when used up)."""
    for fault in faults:
        if not fault.matches(target, api, model):
            continue
        if fault.count > 0:
            fault.count -= 1
            if fault.count == 0:
                faults.remove(fault)
        return fault
    return None
