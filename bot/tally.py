"""The engine's events and counts: every metrics event but ``llm_call`` and ``retrieval``, and the
figures of a run's summary. Events never carry message text or model output (lengths and counts)."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from bot.llm.errors import LLMError
from bot.metrics import MetricsService
from bot.percentile import percentile

__all__ = ["Tally"]

# Reply latencies kept for the end-of-run percentiles: the most recent ones, bounded.
_LATENCY_SAMPLES = 100_000
_QUANTILES = (("p50", 50), ("p95", 95), ("p99", 99))


class Tally:
    """Logs the conversation's events to ``metrics`` and keeps the run's own counts."""

    def __init__(self, metrics: MetricsService) -> None:
        self.metrics = metrics
        self._messages = 0
        self._commands = 0
        self._replies: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._llm_roles: Counter[str] = Counter()
        self._llm_errors = 0
        self._reply_latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    def take_message(self, channel: str, user: str, text: str, *, source: str = "mention") -> None:
        """A user message was taken: logs its length, never its text."""
        self._messages += 1
        self.metrics.log_event(
            "message", {"channel": channel, "user": user, "length": len(text), "source": source}
        )

    def log_reply(
        self, channel: str, *, latency_ms: float, parts: int, chars: int, edits: int, status: str
    ) -> None:
        self._replies[status] += 1
        if status != "cancelled":  # cut short at a stop: not how long a reply takes
            self._reply_latencies.append(latency_ms)
        self.metrics.log_event(
            "reply",
            {
                "channel": channel,
                "latency_ms": round(latency_ms, 3),
                "parts": parts,
                "chars": chars,
                "edits": edits,
                "status": status,
            },
        )

    def log_command(self, name: str, channel: str, user: str) -> None:
        self._commands += 1
        self.metrics.log_event("command", {"name": name, "channel": channel, "user": user})

    def log_error(self, where: str, exc: BaseException, *, detail: str | None = None) -> None:
        """An ``error`` event. Without ``detail``, only a safe description (never ``str(exc)``,
        which may quote the user's text or the model's output); an LLM error adds its URL."""
        data: dict[str, Any] = {"where": where, "error": type(exc).__name__}
        if isinstance(exc, LLMError):
            data["detail"] = detail or exc.detail
            data["url"] = exc.url
        else:
            data["detail"] = detail or "unexpected error"
        self._errors[where] += 1
        self.metrics.log_event("error", data)

    def count_llm(self, role: str | None, *, failed: bool = False) -> None:
        if failed:
            self._llm_errors += 1
        elif role is not None:
            self._llm_roles[role] += 1

    def counters(self) -> dict[str, Any]:
        """The counts since start, and reply latency percentiles (ms)."""
        latencies = sorted(self._reply_latencies)
        roles = self._llm_roles
        return {
            "messages": self._messages,
            "replies": sum(self._replies.values()),
            "replies_by_status": dict(self._replies),
            "commands": self._commands,
            "errors": sum(self._errors.values()),
            "errors_by_where": dict(self._errors),
            "llm_answers_by_role": dict(roles),
            "llm_upstream_answers": roles["leader"] + roles["off"],
            "llm_saved_answers": roles["follower"] + roles["window"],
            "llm_errors": self._llm_errors,
            "reply_latency_ms": {q: percentile(latencies, n) for q, n in _QUANTILES},
        }
