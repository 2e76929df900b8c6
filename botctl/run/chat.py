"""``botctl run --chat``: lines typed in the terminal are posted as a sandbox user, the bot's reply
is shown as it streams.

Standard input is read through the event loop (a reader on its file descriptor), never by a thread
blocked in ``readline``: a stop (Ctrl-C, SIGTERM, ``--duration``) must not wait for the user to
press Enter (a thread blocked in a read keeps ``asyncio.run`` from returning).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["StdinLines", "chat_loop"]

CHAT_REPLY_TIMEOUT = 180.0
_POLL = 0.25


class StdinLines:
    """Lines of standard input, read without blocking the loop or a thread; ``None`` at the end."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = sys.stdin.fileno() if fd is None else fd
        self._buffer = bytearray()
        self._eof = False

    async def readline(self) -> str | None:
        while b"\n" not in self._buffer and not self._eof:
            await self._readable()
            data = os.read(self._fd, 65536)
            if data:
                self._buffer += data
            else:
                self._eof = True
        if not self._buffer:
            return None
        line, _sep, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode("utf-8", "replace")

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.add_reader(self._fd, wake)
        except PermissionError:
            return  # a regular file (input redirected from one): reading it never blocks
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)


async def chat_loop(
    sandbox: Any,
    stop: asyncio.Event,
    lines: StdinLines,
    prompt: Callable[[], None],
    on_reply: Callable[[str, bool], None],
) -> None:
    """Post each line typed; print the reply as the bot edits it; end of input stops the run."""
    while not stop.is_set():
        prompt()
        line = await lines.readline()
        if line is None:  # end of input
            stop.set()
            return
        if not line.strip():
            continue
        message_id = await sandbox.say(line)
        # Stream the reply as the bot edits it: peek until it settles.
        deadline = time.monotonic() + CHAT_REPLY_TIMEOUT
        while time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(_POLL)
            reply: dict[str, Any] | None = None
            with contextlib.suppress(Exception):  # no part yet: keep waiting
                reply = await sandbox.wait_reply(message_id, timeout=0.0, settle=0.0)
            if reply is None:
                continue
            settled = bool(reply.get("settled"))
            on_reply(str(reply.get("content", "")), settled)
            if settled:
                break
