"""The one Redis connection pool of a process, and what happens when Redis goes away.

Every shared class (:mod:`bot.shared`) talks to Redis through :meth:`SharedState.run`. While Redis
answers, operations go through; the first failure marks it *down*, logs ONE warning (logger
``bot.shared``) and starts a background task that pings it again with a capped backoff. While down,
:meth:`~SharedState.run` raises :class:`SharedUnavailable` at once, without touching the network, and
each caller falls back to its in-process behaviour: the bot carries on, a little less shared. When a
ping answers again, an INFO line says so and the ``on_up`` callbacks push what was written locally.

Redis unreachable at start is different: :meth:`SharedState.connect` raises :class:`SharedStateError`,
one line naming the address (never a password) and what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError

from bot.llm.errors import redact_url

__all__ = ["MIN_SERVER", "SharedState", "SharedStateError", "SharedUnavailable"]

log = logging.getLogger("bot.shared")

T = TypeVar("T")
Client = aioredis.Redis
Op = Callable[[Client], Awaitable[T]]

# SET ... NX GET (one round trip to claim a flight) needs Redis 7.0; every Valkey has it.
MIN_SERVER = (7, 0)


class SharedStateError(Exception):
    """Redis cannot be used at start: a one-line message with the address, without credentials."""


class SharedUnavailable(Exception):
    """Redis is down (or this operation failed): the caller uses its in-process state."""


def default_process_id() -> str:
    """Host, pid and a random tail: two processes (or one restarted) never share an id."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class SharedState:
    """One pool to one Redis, its up/down state and the tasks of the shared classes.

    Build it with :meth:`connect`. ``prefix`` starts every key, so several bots can share a server.
    """

    def __init__(
        self,
        client: Client,
        address: str,
        *,
        prefix: str,
        process_id: str,
        secret: str | None = None,
        reconnect_min: float = 0.2,
        reconnect_max: float = 5.0,
        timeout: float = 2.0,
    ) -> None:
        self.client = client
        self.address = address
        self.prefix = prefix
        self.process_id = process_id
        self.timeout = timeout
        self._secret = secret
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._up = True
        self._up_event = asyncio.Event()
        self._up_event.set()
        self._closed = False
        self._reconnect: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_up: list[Callable[[], None]] = []
        self._warned: set[str] = set()
        self.downs = 0  # times Redis was lost while running (tests and stats read it)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        prefix: str = "botctl:",
        process_id: str | None = None,
        timeout: float = 2.0,
        max_connections: int = 256,
        reconnect_min: float = 0.2,
        reconnect_max: float = 5.0,
    ) -> SharedState:
        """Connect and check the server (PING, version); :class:`SharedStateError` if unusable."""
        address = redact_url(url) or "<no address>"
        secret = _password(url)
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout,  # waiting for a free connection is bounded too
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # Fail fast: redis-py's default retries ten times with backoff, which would hold
                # every reply for seconds while Redis is down. One retry covers a stale connection.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as exc:
            raise SharedStateError(
                f"invalid Redis URL {address!r}: {_scrub(str(exc), secret)}; "
                "expected redis://[:password@]host:port/db (--redis or BOT_REDIS_URL)"
            ) from None
        client = aioredis.Redis(connection_pool=pool)
        try:
            info = await asyncio.wait_for(client.info("server"), timeout * 2)
        except AuthenticationError as exc:
            await _quiet_close(client, pool)
            raise SharedStateError(
                f"Redis at {address} refused the credentials ({_scrub(str(exc), secret)}); "
                "check the user and password in --redis / BOT_REDIS_URL"
            ) from None
        except (RedisError, OSError, TimeoutError) as exc:
            await _quiet_close(client, pool)
            reason = _scrub(str(exc), secret) or type(exc).__name__
            raise SharedStateError(
                f"cannot reach Redis at {address} ({reason}); check that the server runs and "
                "that --redis / BOT_REDIS_URL names it"
            ) from None
        version = str(info.get("redis_version", "0"))
        if _version(version) < MIN_SERVER:
            await _quiet_close(client, pool)
            raise SharedStateError(
                f"Redis {version} at {address} is too old: the bot needs Redis 7.0 or newer "
                "(or any Valkey)"
            )
        return cls(
            client,
            address,
            prefix=prefix,
            process_id=process_id or default_process_id(),
            secret=secret,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            timeout=timeout,
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return self._up and not self._closed

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def on_up(self, callback: Callable[[], None]) -> None:
        """``callback()`` each time Redis is back after being down (push what was kept locally)."""
        self._on_up.append(callback)

    async def wait_up(self) -> None:
        """Return once Redis is up (at once if it is)."""
        await self._up_event.wait()

    async def run(self, op: Op[T]) -> T:
        """``op(client)``, or :class:`SharedUnavailable` when Redis is down or the call fails."""
        if not self._up or self._closed:
            raise SharedUnavailable
        try:
            return await op(self.client)
        except ResponseError as exc:
            # The server answered (OOM, a script error): not down, but this operation did not
            # happen. One warning per kind of answer, not one per message.
            self._warn_once(exc)
            raise SharedUnavailable from None
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed(exc)
            raise SharedUnavailable from None

    def failed(self, exc: BaseException) -> None:
        """Mark Redis down (once), warn once, and start reconnecting in the background."""
        if self._closed or not self._up:
            return
        self._up = False
        self._up_event.clear()
        self.downs += 1
        reason = _scrub(str(exc), self._secret) or type(exc).__name__
        log.warning(
            "Redis at %s is unreachable (%s): carrying on with per-process state, reconnecting",
            self.address,
            reason,
        )
        self._reconnect = asyncio.get_running_loop().create_task(
            self._reconnect_loop(), name="redis-reconnect"
        )

    async def _reconnect_loop(self) -> None:
        # Every connection of the pool may be dead (a restarted server): drop them all, so the
        # first operations after the return do not fail on a stale socket and mark it down again.
        with contextlib.suppress(Exception):
            await self.client.connection_pool.disconnect()
        delay = self._reconnect_min
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self.client.ping(), self.timeout)
            except (RedisError, OSError, TimeoutError):
                delay = min(delay * 2, self._reconnect_max)
                continue
            self._up = True
            self._up_event.set()
            log.info("Redis at %s is back: state is shared again", self.address)
            for callback in self._on_up:
                try:
                    callback()
                except Exception:
                    log.exception("a shared store failed to resume after Redis came back")
            return

    def _warn_once(self, exc: ResponseError) -> None:
        kind = (str(exc).split(" ", 1) or ["ERR"])[0]
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning(
                "Redis at %s refused an operation (%s); using per-process state for it",
                self.address,
                _scrub(str(exc), self._secret),
            )

    # -- tasks ---------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """A background task owned by this state: kept referenced, cancelled by :meth:`close`."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shared-state task %s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """Stop the tasks and close the pool; every step runs even when one fails."""
        if self._closed:
            return
        self._closed = True
        self._up_event.set()  # nobody may wait for a return that will not come
        tasks = [t for t in (self._reconnect, *self._tasks) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout)
        try:
            await self.client.aclose()
        except Exception as exc:
            log.warning("closing the Redis client failed: %s", _scrub(str(exc), self._secret))
        try:
            await self.client.connection_pool.aclose()
        except Exception as exc:
            log.warning("closing the Redis pool failed: %s", _scrub(str(exc), self._secret))


async def _quiet_close(client: Client, pool: aioredis.ConnectionPool) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()
    with contextlib.suppress(Exception):
        await pool.aclose()


def _password(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def _scrub(text: str, secret: str | None) -> str:
    """``text`` on one line, without the password should a library have quoted it."""
    if secret:
        text = text.replace(secret, "***")
    return " ".join(text.split())


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in text.split(".")[:2]:
        try:
            parts.append(int(part))
        except ValueError:
            parts.append(0)
    return tuple(parts)
