"""Injected faults: REST calls answered with 429 or 5xx, and a gateway cut (resumable or not).

These are what a test asks for, apart from Discord's own rate limits (``ratelimit.py``): an injected
429 is answered whatever the bucket says, and counted as a fault, not as a rate limit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

from botctl.sandbox.discord_server.common import error
from botctl.sandbox.discord_server.gateway import Gateway

__all__ = ["Faults"]


@dataclass(slots=True)
class _Fault:
    kind: str  # "429" | "5xx"
    remaining: int
    status: int = 500
    retry_after: float = 0.1
    route_prefix: str | None = None


def _normalise_prefix(prefix: str | None) -> str | None:
    return prefix.strip("/") if prefix else None


class Faults:
    """Pending REST faults (taken in order by the calls they match) and the gateway's cut."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._pending: list[_Fault] = []
        self.injected = 0

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def inject_rest_429(
        self, count: int, retry_after: float = 0.1, route_prefix: str | None = None
    ) -> None:
        self._pending.append(
            _Fault("429", count, 429, retry_after, _normalise_prefix(route_prefix))
        )

    def inject_rest_5xx(
        self, count: int, status: int = 500, route_prefix: str | None = None
    ) -> None:
        if not 500 <= status <= 599:
            raise ValueError(f"status must be 5xx, not {status}")
        self._pending.append(_Fault("5xx", count, status, 0.0, _normalise_prefix(route_prefix)))

    def drop_gateway(self, code: int = 4000, *, resumable: bool = True) -> int:
        return self._gateway.drop(code, resumable=resumable)

    def take(self, tail: str) -> web.Response | None:
        """The fault answer for a REST call to ``tail`` (the path after ``/api/v10/``), if one is due."""
        for fault in self._pending:
            if fault.route_prefix is None or tail.startswith(fault.route_prefix):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._pending.remove(fault)
                return self._response(fault)
        return None

    def _response(self, fault: _Fault) -> web.Response:
        self.injected += 1
        if fault.kind != "429":
            return error(fault.status, f"{fault.status}: sandbox fault")
        retry_after = fault.retry_after
        headers = {
            "Content-Type": "application/json",
            # discord.py treats a 429 without Via as a Cloudflare ban and gives up.
            "Via": "1.1 google",
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Scope": "user",
        }
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": False,
        }
        return web.Response(body=orjson.dumps(body), status=429, headers=headers)
