"""How much the profiled bot answered: the profiler's cost shows in its throughput."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_MESSAGES_ROW = re.compile(r"\bmessages\b\W+(?P<count>\d+)\s+\((?P<rate>[\d.]+)/s\)")


_REPLIES_ROW = re.compile(r"\breplies\b\W+(?P<count>\d+)\s+\((?P<errors>\d+) errors\)")


_SUMMARY_TITLE = re.compile(r"Summary \((?P<elapsed>[\d.]+) s\)")


@dataclass(slots=True)
class Throughput:
    """How much the bot answered while profiled: the profiler's cost shows here."""

    messages: int
    replies: int
    window_s: float
    source: str

    @property
    def replies_per_s(self) -> float:
        return self.replies / self.window_s if self.window_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.window_s if self.window_s > 0 else 0.0


def throughput_from_metrics(path: Path, since: float) -> Throughput | None:
    """Replies per second while the traffic flowed (first to last message at or after ``since``).

    Replies after the last message are left out: they are the queue draining at the stop, and
    would make a saturated bot look faster than it is.
    """
    message_ts: list[float] = []
    reply_ts: list[float] = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                try:
                    event = json.loads(raw)
                    ts = float(event["ts"])
                    kind = event["type"]
                except (ValueError, KeyError, TypeError):
                    continue
                if ts < since:
                    continue
                if kind == "message":
                    message_ts.append(ts)
                elif kind == "reply":
                    reply_ts.append(ts)
    except OSError:
        return None
    if len(message_ts) < 2:
        return None
    first, last = min(message_ts), max(message_ts)
    if last <= first:
        return None
    replies = sum(1 for ts in reply_ts if first <= ts <= last)
    return Throughput(len(message_ts), replies, last - first, f"metrics file {path}")


def throughput_from_summary(stdout: str) -> Throughput | None:
    """The ``messages``/``replies`` rows of ``botctl run``'s summary (start-up included)."""
    title = _SUMMARY_TITLE.search(stdout)
    messages = _MESSAGES_ROW.search(stdout)
    if title is None or messages is None:
        return None
    replies = _REPLIES_ROW.search(stdout)
    return Throughput(
        messages=int(messages["count"]),
        replies=int(replies["count"]) if replies else 0,
        window_s=float(title["elapsed"]),
        source="the bot's summary (start-up included)",
    )
