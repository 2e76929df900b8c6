"""``botctl run --chat``: lines typed in the terminal are posted as a sandbox user, the bot's reply
is shown as it streams. ``> N text`` replies to the bot's answer N, ``/file PATH`` attaches a file,
and ``/reset``, ``/stats``, ``/model``, ``/persona`` run the slash commands (not questions).

Standard input is read through the event loop (a reader on its file descriptor), never by a thread
blocked in ``readline``: a stop (Ctrl-C, SIGTERM, ``--duration``) must not wait for the user to
press Enter (a thread blocked in a read keeps ``asyncio.run`` from returning).
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ChatSession", "StdinLines", "chat_loop"]

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


HELP = (
    "type a question; `> N text` replies to the bot's answer N; `/file PATH [text]` attaches a "
    "file; `/reset`, `/stats`, `/model [NAME]`, `/persona [NAME]` run the slash commands; "
    "`/help` shows this"
)
_COMMANDS = frozenset({"reset", "stats", "model", "persona", "ask"})
_OPTION = {"model": "name", "persona": "name", "ask": "question"}


def _read_file(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


class ChatSession:
    """What the terminal user types, turned into sandbox messages and slash commands."""

    def __init__(self, sandbox: Any, say: Callable[[str], None]) -> None:
        self.sandbox = sandbox
        self.say = say  # a line for the user (help, errors, command answers)
        self.answers: list[str] = []  # the bot's answers by number (their first message's id)

    async def post(self, line: str) -> str | None:
        """Post ``line``; the id to wait a reply to, or None when there is nothing to wait for."""
        text = line.strip()
        if text == "/help":
            self.say(HELP)
            return None
        if text.startswith(">"):
            number, _, rest = text[1:].strip().partition(" ")
            if not number.isdigit() or not 1 <= int(number) <= len(self.answers):
                self.say(
                    f"no answer {number or '?'} to reply to (answers so far: {len(self.answers)})"
                )
                return None
            return str(await self.sandbox.say(rest, reply_to=self.answers[int(number) - 1]))
        if text.startswith("/file"):
            _, _, rest = text.partition(" ")
            path, _, question = rest.strip().partition(" ")
            try:
                data = await asyncio.to_thread(_read_file, path)
            except OSError as exc:
                self.say(f"cannot read {path or '(no path)'}: {exc.strerror or exc}")
                return None
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            name = Path(path).name
            return str(await self.sandbox.say(question, attachment=(name, data, kind)))
        if text.startswith("/"):
            command, _, argument = text[1:].partition(" ")
            if command not in _COMMANDS:
                self.say(f"unknown command /{command}; {HELP}")
                return None
            options = {_OPTION[command]: argument.strip()} if argument.strip() else None
            return str(await self.sandbox.interaction(command, options=options))
        return str(await self.sandbox.say(line))


async def chat_loop(
    sandbox: Any,
    stop: asyncio.Event,
    lines: StdinLines,
    prompt: Callable[[], None],
    on_reply: Callable[[str, bool, int | None], None],
    say: Callable[[str], None],
) -> None:
    """Post each line typed; print the reply as the bot edits it; end of input stops the run."""
    session = ChatSession(sandbox, say)
    while not stop.is_set():
        prompt()
        line = await lines.readline()
        if line is None:  # end of input
            stop.set()
            return
        if not line.strip():
            continue
        message_id = await session.post(line)
        if message_id is None:
            continue
        # Stream the reply as the bot edits it: peek until it settles.
        deadline = time.monotonic() + CHAT_REPLY_TIMEOUT
        number: int | None = None
        while time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(_POLL)
            reply: dict[str, Any] | None = None
            with contextlib.suppress(Exception):  # no part yet: keep waiting
                reply = await sandbox.wait_reply(message_id, timeout=0.0, settle=0.0)
            if reply is None:
                continue
            ids = [str(i) for i in reply.get("part_ids") or ()]
            if number is None and ids:
                session.answers.append(ids[0])
                number = len(session.answers)
            settled = bool(reply.get("settled"))
            on_reply(str(reply.get("content", "")), settled, number)
            if settled:
                break
