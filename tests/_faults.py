"""Shared helpers of the fault suite: the real bot (``bot.frontend.app.serve``) against an in-process sandbox.

:func:`running_bot` starts a :class:`DiscordServer` (and, unless told otherwise, an
:class:`LLMServer`) on 127.0.0.1, runs ``serve()`` in the test's event loop with the real discord.py
client pointed at them, and stops everything in order on exit, every wait bounded. The only
difference from ``botctl run`` is ``guild_ready_timeout=0.1`` (no 2 s wait for guilds), so a test
starts the bot in a fraction of a second.

Also here: a reader of the metrics file, Discord's rules for who a message pings, and the listening
sockets of a process (parsed from ``/proc``, no psutil).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bot.components import Components
from bot.config import load_settings
from bot.frontend.app import ServeResult, serve
from bot.frontend.endpoints import reset_endpoints
from botctl.sandbox.discord_server import DiscordServer, RecordedEdit, RecordedMessage
from botctl.sandbox.llm_server import LLMServer

TOKEN = "sandbox-token"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 20.0
WARNING = "⚠️"


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a metrics file, parsed (a torn last line fails the test)."""
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@dataclass
class BotRun:
    server: DiscordServer
    llm: LLMServer | None
    components: Components
    stop: asyncio.Event
    task: asyncio.Task[ServeResult]
    metrics_file: Path
    result: ServeResult | None = None
    asked: list[str] = field(default_factory=list)

    def post(self, text: str, *, channel: str | None = None, user: str | None = None) -> str:
        """Post ``text`` mentioning the bot; a fresh channel unless one is given."""
        cid = channel if channel is not None else self.server.create_channel()
        uid = user if user is not None else self.server.user_ids[len(self.asked) % 5]
        mid = self.server.post_message(cid, uid, text)
        self.asked.append(mid)
        return mid

    async def reply(
        self, mid: str, timeout: float = 10.0, settle: float = 0.3
    ) -> list[RecordedMessage]:
        """The reply's parts once it has settled (``[]`` if nothing came within ``timeout``)."""
        return await self.server.wait_for_settled_reply(mid, timeout, settle=settle)

    async def ask(
        self, text: str, *, timeout: float = 10.0, settle: float = 0.3, **where: Any
    ) -> str:
        """Post ``text`` and return the reply's text once it settled (streamed answers are
        edited about once a second: give them ``settle=1.5``)."""
        mid = self.post(text, **where)
        parts = await self.reply(mid, timeout, settle)
        assert parts, f"no reply to {text[:40]!r} within {timeout} s"
        return "\n".join(p.content for p in parts)

    async def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The metrics file's events so far (flushed first), optionally of one type."""
        await asyncio.wait_for(self.components.metrics.flush(), 5.0)
        events = read_events(self.metrics_file)
        return [e for e in events if kind is None or e["type"] == kind]

    async def wait_events(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """The events of type ``kind`` once there are at least ``count`` of them."""
        async with asyncio.timeout(timeout):
            # Polling: events reach the file in batches, with nothing to wait on.
            while len(found := await self.events(kind)) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return found

    def alive(self) -> bool:
        return not self.task.done()


@contextlib.asynccontextmanager
async def running_bot(
    tmp_path: Path,
    *,
    llm: bool = True,
    llm_options: dict[str, Any] | None = None,
    server_options: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[BotRun]:
    """The bot, a sandbox Discord and (``llm``) a sandbox LLM, all on 127.0.0.1."""
    server = DiscordServer(**(server_options or {}))
    await server.start()
    llm_server: LLMServer | None = None
    if llm:
        options = {"latency": 0.0, "tokens_per_second": 0.0, **(llm_options or {})}
        llm_server = LLMServer(**options)
        await llm_server.start()
    metrics_file = tmp_path / "metrics.jsonl"
    values: dict[str, Any] = {
        "discord_api": server.api_base,
        "discord_gateway": server.gateway_url,
        "metrics_file": metrics_file,
        "llm_timeout": 2.0,
        "batch_interval": 60.0,
        "cooldown": 0.0,
        "write_pacing": server.limiter is not None,  # a server without limits answers at once
        **settings,
    }
    if llm_server is not None:
        values.setdefault("llm_url", llm_server.url)
    bot_settings = load_settings(None, values)
    ready = asyncio.Event()
    holder: dict[str, Components] = {}

    async def on_ready(components: Components) -> None:
        holder["components"] = components
        ready.set()

    stop = asyncio.Event()
    run: BotRun | None = None
    try:
        task = asyncio.create_task(
            serve(
                bot_settings,
                TOKEN,
                stop,
                on_ready=on_ready,
                drain_timeout=5.0,
                client_options={"guild_ready_timeout": 0.1},
            )
        )
        waiter = asyncio.ensure_future(ready.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if not ready.is_set():
            stop.set()
            if task in done:
                raise AssertionError(f"the bot stopped at start-up: {task.result().error}")
            raise AssertionError(f"the bot was not ready within {START_TIMEOUT} s")
        run = BotRun(server, llm_server, holder["components"], stop, task, metrics_file)
        yield run
    finally:
        stop.set()
        if run is not None:
            run.result = await asyncio.wait_for(run.task, STOP_TIMEOUT)
        reset_endpoints()
        if llm_server is not None:
            await llm_server.stop()
        await asyncio.wait_for(server.stop(), STOP_TIMEOUT)


# --------------------------------------------------------------------------- mentions


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def pings(content: str, allowed: dict[str, Any] | None, *, is_reply: bool) -> list[str]:
    """Who Discord would notify for a message with ``content`` and ``allowed_mentions``.

    Discord's rules: without ``allowed_mentions`` everything in the text pings (and a reply pings
    its author); ``parse`` lists the kinds parsed from the text ("everyone", "users", "roles");
    ``users``/``roles`` whitelist ids; ``replied_user`` (default false) pings a reply's author.
    """
    if allowed is None:
        parse: Sequence[str] = ("everyone", "users", "roles")
        users: Sequence[str] = ()
        roles: Sequence[str] = ()
        replied = is_reply
    else:
        parse = allowed.get("parse") or ()
        users = [str(u) for u in allowed.get("users") or ()]
        roles = [str(r) for r in allowed.get("roles") or ()]
        replied = bool(allowed.get("replied_user", False)) and is_reply
    found: list[str] = []
    if "everyone" in parse:
        found += re.findall(r"@(?:everyone|here)", content)
    for uid in _USER_MENTION.findall(content):
        if "users" in parse or uid in users:
            found.append(f"user {uid}")
    for rid in _ROLE_MENTION.findall(content):
        if "roles" in parse or rid in roles:
            found.append(f"role {rid}")
    if replied:
        found.append("the replied-to author")
    return found


def assert_no_pings(sends: Sequence[RecordedMessage], edits: Sequence[RecordedEdit]) -> None:
    """Every send and edit says no to every mention, explicitly, and pings nobody."""
    for message in sends:
        allowed = message.allowed_mentions
        assert allowed is not None, f"a send without allowed_mentions: {message.content[:60]!r}"
        assert allowed.get("parse") == [], allowed
        assert not allowed.get("users") and not allowed.get("roles"), allowed
        assert allowed.get("replied_user", False) is False, allowed
        assert pings(message.original_content, allowed, is_reply=message.reply_to is not None) == []
    for edit in edits:
        allowed = edit.allowed_mentions
        assert allowed is not None, f"an edit without allowed_mentions: {edit.content[:60]!r}"
        assert allowed.get("parse") == [], allowed
        assert not allowed.get("users") and not allowed.get("roles"), allowed
        assert allowed.get("replied_user", False) is False, allowed
        assert pings(edit.content, allowed, is_reply=False) == []


# --------------------------------------------------------------------------- processes


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on, from /proc (no psutil)."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: list[tuple[str, int]] = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = local.split(":")
            raw = bytes.fromhex(hex_ip)
            if family == socket.AF_INET:
                ip = socket.inet_ntop(family, raw[::-1])
            else:  # four little-endian 32-bit words
                ip = socket.inet_ntop(
                    family, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                )
            found.append((ip, int(hex_port, 16)))
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the bot's variables (so a developer's settings do not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1", **extra)
    return env


def botctl(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> Any:
    """``python -m botctl ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "botctl", *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def post_json(url: str, payload: Any, timeout: float = 10.0) -> Any:
    import urllib.request

    request = urllib.request.Request(
        url, data=orjson.dumps(payload), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return orjson.loads(body) if body else None


@dataclass
class Sandbox:
    """``python -m botctl.sandbox.process`` as a child, as ``botctl run`` starts it."""

    proc: subprocess.Popen[bytes]
    api_base: str
    gateway_url: str
    control_url: str
    llm_url: str | None

    def call(self, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Any:
        import urllib.request

        data = None if payload is None else orjson.dumps(payload)
        request = urllib.request.Request(
            self.control_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return orjson.loads(body) if body else None


@contextlib.contextmanager
def sandbox_process(**config: Any) -> Iterator[Sandbox]:
    from botctl.sandbox.process import SandboxConfig

    # These tests load the bot at up to 50 msg/s over a few channels: Discord's rate limits (on by
    # default) would pace its replies to one per channel per second. A test may turn them back on.
    text = SandboxConfig(**{"rate_limits": False, **config}).to_json()
    proc = subprocess.Popen(
        [sys.executable, "-m", "botctl.sandbox.process", text],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = _readline(proc, 30.0)
        ready = orjson.loads(line)
        yield Sandbox(
            proc, ready["api_base"], ready["gateway_url"], ready["control_url"], ready["llm_url"]
        )
    finally:
        stop_process(proc, signal.SIGTERM, 10.0)
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.stdout is not None:
            proc.stdout.close()


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no ready line within {timeout} s"
    line = proc.stdout.readline()
    assert line, f"the process exited at start-up (code {proc.poll()})"
    return line


def stop_process(proc: subprocess.Popen[Any], sig: int, timeout: float) -> int:
    """Send ``sig`` (if still running), wait ``timeout`` s, then kill; the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
    return int(proc.returncode)


def wait_for(predicate: Any, timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def table_value(stdout: str, row: str) -> int:
    """The leading integer of a row of ``botctl run``'s summary table."""
    match = re.search(rf"│ {re.escape(row)}\s+│\s+(\d+)", stdout)
    assert match, f"no {row!r} row in the summary:\n{stdout}"
    return int(match.group(1))
