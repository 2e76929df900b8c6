"""How much the profiled bot answered: the profiler's cost shows in its throughput.

Two sources, each for what it knows best, so that ``botctl profile`` never contradicts the bot's
summary printed under it: the counts of messages and replies are the summary's (the bot's own
counters); the rate comes from the run's metrics events, as replies per second between the first and
the last message (the replies after the last one are the queue draining at the stop, and would make
a saturated bot look faster than it is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from botctl.metrics.events import Reading, read_records, select_runs

_MESSAGES_ROW = re.compile(r"\bmessages\b\W+(?P<count>\d+)\s+\((?P<rate>[\d.]+)/s\)")
_REPLIES_ROW = re.compile(r"\breplies\b\W+(?P<count>\d+)\s+\((?P<errors>\d+) errors?\)")
SUMMARY_TITLE = re.compile(r"Summary (?:of run \w+ )?\((?P<elapsed>[\d.]+) s\)")


@dataclass(frozen=True, slots=True)
class SummaryCounts:
    """The ``messages`` and ``replies`` rows of ``botctl run``'s summary, and its elapsed time."""

    messages: int
    replies: int
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class TrafficWindow:
    """The run's events: all its messages and replies, and the replies while messages came."""

    messages: int
    replies: int
    replies_in_window: int
    window_s: float


@dataclass(frozen=True, slots=True)
class Throughput:
    """What the reporter says: counts as the summary has them, the rate while traffic flowed."""

    messages: int
    replies: int
    replies_in_window: int | None  # None: no metrics, the rate is over the whole run
    window_s: float
    source: str

    @property
    def replies_per_s(self) -> float:
        replies = self.replies if self.replies_in_window is None else self.replies_in_window
        return replies / self.window_s if self.window_s > 0 else 0.0


def counts_from_summary(stdout: str) -> SummaryCounts | None:
    title = SUMMARY_TITLE.search(stdout)
    messages = _MESSAGES_ROW.search(stdout)
    if title is None or messages is None:
        return None
    replies = _REPLIES_ROW.search(stdout)
    return SummaryCounts(
        messages=int(messages["count"]),
        replies=int(replies["count"]) if replies else 0,
        elapsed_s=float(title["elapsed"]),
    )


def traffic_from_metrics(path: Path, since: float) -> TrafficWindow | None:
    """The latest run among the events at or after ``since`` (the bot's launch)."""
    try:
        records, _skipped = read_records(path)
    except OSError:
        return None
    recent = [r for r in records if (r.ts or 0.0) >= since]
    if not recent:
        return None
    chosen = select_runs(Reading([path], recent, 0)).records
    message_ts = [r.ts for r in chosen if r.event["type"] == "message" and r.ts is not None]
    reply_ts = [r.ts for r in chosen if r.event["type"] == "reply" and r.ts is not None]
    if len(message_ts) < 2 or max(message_ts) <= min(message_ts):
        return None
    first, last = min(message_ts), max(message_ts)
    return TrafficWindow(
        messages=len(message_ts),
        replies=len(reply_ts),
        replies_in_window=sum(1 for ts in reply_ts if first <= ts <= last),
        window_s=last - first,
    )


def throughput(stdout: str, metrics_file: Path | None, since: float) -> Throughput | None:
    """The bot's throughput while profiled, from its summary and its metrics file (see above)."""
    counts = counts_from_summary(stdout)
    window = traffic_from_metrics(metrics_file, since) if metrics_file is not None else None
    if window is not None:
        return Throughput(
            messages=counts.messages if counts else window.messages,
            replies=counts.replies if counts else window.replies,
            replies_in_window=window.replies_in_window,
            window_s=window.window_s,
            source=f"the metrics file {metrics_file}",
        )
    if counts is not None:
        return Throughput(
            counts.messages, counts.replies, None, counts.elapsed_s, "the bot's summary"
        )
    return None
