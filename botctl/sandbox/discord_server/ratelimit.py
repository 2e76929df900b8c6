"""Discord's REST rate limits: a global limit per bot token and per-route buckets, with Discord's headers.

Each route belongs to a :class:`Bucket` (a limit per window, split by a major parameter such as the
channel id, as Discord splits its buckets). A bucket's window starts with its first request and
resets ``per`` seconds later; within it, ``limit`` requests pass. Every answer of a limited route
carries ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` (Unix seconds), ``-Reset-After`` (seconds)
and ``-Bucket`` (an opaque id, one per route family, as Discord's hashes are), which is what
discord.py 2.7.1's ``Ratelimit.update`` reads to pace itself. A request over the limit gets 429 with
Discord's body (``message``, ``retry_after``, ``global``), ``Retry-After``, ``X-RateLimit-Scope``
(``user``; ``global`` plus ``X-RateLimit-Global: true`` for the global limit) and ``Via`` (without
it discord.py takes a 429 for a Cloudflare ban). Interaction callbacks and webhooks are outside the
global limit, as on Discord.

Times to reset are rounded *up* to the millisecond, so a client that waits what it was told never
arrives before the window has turned. Cost: two dict lookups and a few string formats per request;
windows that have expired are dropped every few thousand requests, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from botctl.sandbox.discord_server.common import JSON

__all__ = ["Bucket", "Decision", "RateLimiter", "RateLimits"]

_PRUNE_EVERY = 4096


@dataclass(frozen=True, slots=True)
class Bucket:
    """A route family's limit: ``limit`` requests per ``per`` seconds for each value of ``major``."""

    name: str
    limit: int
    per: float
    major: str | None = None  # the path parameter that splits the bucket (channel_id, ...)
    global_limit: bool = True  # counts toward the bot's global limit
    hash: str = field(init=False)
    limit_text: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.name.encode(), usedforsecurity=False).hexdigest()[:32]
        object.__setattr__(self, "hash", digest)
        object.__setattr__(self, "limit_text", str(self.limit))


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The figures; the defaults are Discord's."""

    global_per_second: int = 50
    messages: int = 5  # message creates per channel per `messages_per` seconds
    messages_per: float = 5.0
    edits: int = 5
    edits_per: float = 5.0
    typing: int = 5
    typing_per: float = 5.0

    def buckets(self) -> dict[str, Bucket]:
        """The buckets by name: the routes (``rest.py``) say which one they fall into."""
        return {
            b.name: b
            for b in (
                Bucket("messages.create", self.messages, self.messages_per, "channel_id"),
                Bucket("messages.edit", self.edits, self.edits_per, "channel_id"),
                Bucket("typing", self.typing, self.typing_per, "channel_id"),
                Bucket("messages.delete", 5, 1.0, "channel_id"),
                Bucket("messages.read", 50, 1.0, "channel_id"),
                Bucket("threads.create", 10, 10.0, "channel_id"),
                Bucket("channels", 50, 1.0, "channel_id"),
                Bucket("interactions", 5, 5.0, "token", global_limit=False),
                Bucket("webhooks", 5, 2.0, "token", global_limit=False),
                Bucket("commands", 50, 20.0),
                Bucket("other", 50, 1.0),
            )
        }


class _Window:
    __slots__ = ("reset_at", "reset_text", "used")

    def __init__(self, now: float, per: float) -> None:
        self.reset_at = now + per
        # X-RateLimit-Reset is the same for the whole window: Unix seconds, rounded up to the ms.
        self.reset_text = f"{math.ceil((time.time() + per) * 1000) / 1000:.3f}"
        self.used = 0


@dataclass(slots=True)
class Decision:
    """The limiter's answer: the headers for the response, or a ready 429 (``limited``)."""

    headers: dict[str, str]
    limited: bool = False
    body: bytes = b""


class RateLimiter:
    """Counts requests per (bucket, major parameter) and per token; answers with Discord's headers."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self.buckets = self.limits.buckets()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._global: dict[str, _Window] = {}
        self.limited: Counter[str] = Counter()  # 429s by bucket name ("global" for the global one)
        self.checked = 0

    def stats(self) -> JSON:
        return {
            "rate_limits": True,
            "rate_limited": dict(self.limited),
            "rate_limited_total": sum(self.limited.values()),
        }

    def check(self, bucket: Bucket, major: str, token: str) -> Decision:
        """Count one request; the headers to answer with, or the 429 to answer instead."""
        now = time.monotonic()
        self.checked += 1
        if self.checked % _PRUNE_EVERY == 0:
            self._prune(now)
        if bucket.global_limit:
            gw = self._global.get(token)
            if gw is None or now >= gw.reset_at:
                gw = self._global[token] = _Window(now, 1.0)
            if gw.used >= self.limits.global_per_second:
                return self._global_429(gw.reset_at - now)
            gw.used += 1
        key = (bucket.name, major)
        window = self._windows.get(key)
        if window is None or now >= window.reset_at:
            window = self._windows[key] = _Window(now, bucket.per)
        # Rounded up: a client that waits this long finds the window turned.
        reset_after = f"{math.ceil((window.reset_at - now) * 1000) / 1000:.3f}"
        if window.used >= bucket.limit:
            self.limited[bucket.name] += 1
            headers = self._headers(bucket, 0, window, reset_after)
            headers["X-RateLimit-Scope"] = "user"
            return self._429(headers, float(reset_after), is_global=False)
        window.used += 1
        return Decision(self._headers(bucket, bucket.limit - window.used, window, reset_after))

    @staticmethod
    def _headers(
        bucket: Bucket, remaining: int, window: _Window, reset_after: str
    ) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": bucket.limit_text,
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": window.reset_text,
            "X-RateLimit-Reset-After": reset_after,
            "X-RateLimit-Bucket": bucket.hash,
        }

    def _global_429(self, retry_after: float) -> Decision:
        self.limited["global"] += 1
        retry_after = math.ceil(retry_after * 1000) / 1000
        headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
        return self._429(headers, retry_after, is_global=True)

    @staticmethod
    def _429(headers: dict[str, str], retry_after: float, *, is_global: bool) -> Decision:
        headers["Content-Type"] = "application/json"
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        headers["Via"] = "1.1 google"  # discord.py treats a 429 without Via as a Cloudflare ban
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
        return Decision(headers, limited=True, body=orjson.dumps(body))

    def _prune(self, now: float) -> None:
        for key in [k for k, w in self._windows.items() if w.reset_at <= now]:
            del self._windows[key]
        for token in [k for k, w in self._global.items() if w.reset_at <= now]:
            del self._global[token]
