"""The REST API under ``/api/v10`` on aiohttp's router, and the attachment files under ``/attachments``.

Every route is registered with its path pattern and the rate-limit bucket it falls into
(``ratelimit.py``); one wrapper per route counts the call, answers an injected fault, checks the
token (``Authorization: Bot …``; webhooks and interaction callbacks authenticate by their token in
the path, as on Discord), applies the rate limits when they are on, and turns a body it cannot read
into Discord's 400. Routes the sandbox does not know answer Discord's JSON 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from botctl.sandbox.discord_server.common import (
    API_VERSION,
    error,
    json_response,
    read_json,
)
from botctl.sandbox.discord_server.faults import Faults
from botctl.sandbox.discord_server.messages import Store
from botctl.sandbox.discord_server.ratelimit import Bucket, RateLimiter
from botctl.sandbox.discord_server.rest_interactions import Interactions
from botctl.sandbox.discord_server.rest_messages import Messages, Route
from botctl.sandbox.discord_server.world import World

__all__ = ["API_PREFIX", "Rest"]

API_PREFIX = f"/api/v{API_VERSION}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNREADABLE = (orjson.JSONDecodeError, ValueError, TypeError, KeyError)


def _bad_body() -> web.Response:
    # Discord answers a body it cannot read with 400 "The request body contains invalid JSON".
    return error(400, "The request body contains invalid JSON.", 50109)


class Rest:
    def __init__(
        self,
        world: World,
        store: Store,
        messages: Messages,
        interactions: Interactions,
        faults: Faults,
        limiter: RateLimiter | None,
        *,
        token: str | None,
        gateway_url: Callable[[], str],
        shards: int,
    ) -> None:
        self.world = world
        self.store = store
        self.faults = faults
        self.limiter = limiter
        self._auth = f"Bot {token}" if token is not None else None
        self._gateway_url = gateway_url
        self.shards = shards
        self.calls = 0
        self._routes: list[Route] = [
            *messages.routes(),
            *interactions.routes(),
            ("GET", "/users/@me", self.me, "other"),
            ("GET", "/users/{user_id}", self.user, "other"),
            ("POST", "/users/@me/channels", self.dm_channel, "other"),
            ("GET", "/oauth2/applications/@me", self.application, "other"),
            ("GET", "/gateway", self.gateway, "other"),
            ("GET", "/gateway/bot", self.gateway_bot, "other"),
            ("GET", "/guilds/{guild_id}", self.guild, "other"),
            ("GET", "/guilds/{guild_id}/channels", self.guild_channels, "other"),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self.guild_member, "other"),
        ]

    def register(self, app: web.Application) -> None:
        buckets = self.limiter.buckets if self.limiter is not None else {}
        for method, path, handler, bucket in self._routes:
            public = path.startswith(("/webhooks/", "/interactions/"))
            wrapped = self._wrap(handler, buckets.get(bucket or ""), auth=not public)
            app.router.add_route(method, API_PREFIX + path, wrapped)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._wrap(self.not_found, None))
        app.router.add_get("/attachments/{attachment_id}/{filename}", self.attachment)

    def _wrap(self, handler: Handler, bucket: Bucket | None, *, auth: bool = True) -> Handler:
        skip = len(API_PREFIX) + 1
        limiter = self.limiter if bucket is not None else None
        major = bucket.major if bucket is not None else None

        async def handle(request: web.Request) -> web.StreamResponse:
            self.calls += 1
            if self.faults.pending:
                fault = self.faults.take(request.path[skip:])
                if fault is not None:
                    return fault
            if (
                auth
                and self._auth is not None
                and request.headers.get("Authorization") != self._auth
            ):
                return error(401, "401: Unauthorized")
            if limiter is None or bucket is None:
                try:
                    return await handler(request)
                except _UNREADABLE:
                    return _bad_body()
            decision = limiter.check(
                bucket,
                request.match_info.get(major, "") if major else "",
                request.headers.get("Authorization", ""),
            )
            if decision.limited:
                return web.Response(body=decision.body, status=429, headers=decision.headers)
            try:
                response = await handler(request)
            except _UNREADABLE:
                response = _bad_body()
            response.headers.update(decision.headers)
            return response

        return handle

    # ------------------------------------------------------------------ handlers

    async def not_found(self, request: web.Request) -> web.Response:
        return error(404, "404: Not Found")

    async def me(self, request: web.Request) -> web.Response:
        return json_response(self.world.bot_user)

    async def user(self, request: web.Request) -> web.Response:
        uid = request.match_info["user_id"]
        user = self.world.users.get(uid)
        if user is None and uid == self.world.bot_user_id:
            user = self.world.bot_user
        return json_response(user) if user is not None else error(404, "Unknown User", 10013)

    async def dm_channel(self, request: web.Request) -> web.Response:
        uid = str((await read_json(request)).get("recipient_id"))
        if uid not in self.world.users:
            return error(404, "Unknown User", 10013)
        return json_response(self.world.dm_payload(self.world.dm_channel_for(uid)))

    async def application(self, request: web.Request) -> web.Response:
        return json_response(self.world.application_payload())

    async def gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self._gateway_url()})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        # Discord lets a large bot identify up to max_concurrency shards at once (else one every
        # 5 s); the sandbox lets them all start at once so a sharded run is ready in a second.
        concurrency = max(1, self.shards)
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": concurrency}
        body = {"url": self._gateway_url(), "shards": self.shards, "session_start_limit": limit}
        return json_response(body)

    def _guild_id(self, request: web.Request) -> str | None:
        gid = request.match_info["guild_id"]
        return gid if gid in self.world.guilds else None

    async def guild(self, request: web.Request) -> web.Response:
        gid = self._guild_id(request)
        if gid is None:
            return error(404, "Unknown Guild", 10004)
        return json_response(self.world.guild_payload(gid, full=False))

    async def guild_channels(self, request: web.Request) -> web.Response:
        gid = self._guild_id(request)
        if gid is None:
            return error(404, "Unknown Guild", 10004)
        guild = self.world.guilds[gid]
        return json_response([self.world.channels[c] for c in guild.channel_ids])

    async def guild_member(self, request: web.Request) -> web.Response:
        gid = self._guild_id(request)
        if gid is None:
            return error(404, "Unknown Guild", 10004)
        uid = request.match_info["user_id"]
        user = self.world.users.get(uid) or (
            self.world.bot_user if uid == self.world.bot_user_id else None
        )
        if user is None:
            return error(404, "Unknown Member", 10007)
        return json_response(self.world.member(gid, user))

    async def attachment(self, request: web.Request) -> web.StreamResponse:
        """A user's attached file, as Discord's CDN serves it (or a fault a test asked for)."""
        found = self.store.attachment(
            request.match_info["attachment_id"], request.match_info["filename"]
        )
        if found is None or found.fault == "404":
            return web.Response(status=404, text="Not Found")
        if found.fault == "hang":
            await asyncio.Event().wait()  # until the client gives up or the server stops
        return web.Response(body=found.data, headers={"Content-Type": found.content_type})
