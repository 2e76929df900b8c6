"""Secrets: the Discord token and the LLM's API key appear in no output, and nothing listens beyond
127.0.0.1.

A full ``botctl run`` session with a recognisable token and an LLM URL carrying credentials, with
faults injected so that error paths run too, is searched everywhere it writes: stdout, stderr, the
metrics file (mode 0600) and a cProfile ``.prof`` of the run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _faults import (
    WARNING,
    botctl,
    clean_env,
    listening_sockets,
    post_json,
    running_bot,
    sandbox_process,
    stop_process,
    wait_for,
)

from bot.config import load_settings
from bot.frontend.app import serve
from bot.frontend.endpoints import reset_endpoints
from botctl.analyze.web import free_port
from botctl.profile.inprocess import CPROFILE_ENV
from botctl.sandbox.discord_server import DiscordServer

pytestmark = pytest.mark.integration

SECRET_TOKEN = "SECRETtok3n.MTIzNDU2Nzg5.never-print-me"
API_USER = "apiuser"
API_KEY = "sk-SECRETkey-0123456789abcdef"


def needles() -> list[str]:
    basic = base64.b64encode(f"{API_USER}:{API_KEY}".encode()).decode()
    # The token, the key, and the forms they take on the wire (Basic auth, its base64).
    return [SECRET_TOKEN, "SECRETtok3n", API_KEY, "SECRETkey", basic, f"{API_USER}:"]


def assert_clean(where: str, data: bytes | str) -> None:
    blob = data.encode() if isinstance(data, str) else data
    for needle in needles():
        assert needle.encode() not in blob, f"{needle!r} leaked into {where}"


def with_key(url: str) -> str:
    return url.replace("http://", f"http://{API_USER}:{API_KEY}@", 1)


def test_a_full_session_leaks_no_secret(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    profile = tmp_path / "run.prof"
    with sandbox_process(rate=30.0, users=10, channels=4) as sandbox:
        assert sandbox.llm_url is not None
        args = ["run", "--token", SECRET_TOKEN, "--cooldown", "0", "--llm-timeout", "2"]
        args += ["--discord-api", sandbox.api_base, "--discord-gateway", sandbox.gateway_url]
        args += ["--no-write-pacing"]  # the test sandbox has no rate limits
        args += ["--llm-url", with_key(sandbox.llm_url), "--metrics-file", str(metrics)]
        args += ["--batch-size", "20"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "botctl", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=clean_env(**{CPROFILE_ENV: str(profile)}),
        )
        try:
            wait_for(
                lambda: sandbox.call("GET", "/stats")["identifies"] >= 1, 30.0, "the bot to connect"
            )
            # The sandbox saw the token (it is Discord here), the bot's own outputs must not.
            time.sleep(2.5)
            sandbox.call("POST", "/traffic/start")
            time.sleep(1.0)
            # Error paths: LLM failures (error replies, error events) and a Discord 5xx.
            llm_fault = sandbox.llm_url + "/_sandbox/fault"
            post_json(llm_fault, {"kind": "status", "status": 500, "count": 5})
            post_json(llm_fault, {"kind": "garbage", "count": 2})
            sandbox.call("POST", "/fault", {"kind": "rest_5xx", "status": 503, "count": 2})
            time.sleep(2.0)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=20)
        finally:
            stop_process(proc, signal.SIGKILL, 5.0)
        llm_stats = sandbox.call("GET", "/llm")
        sandbox.call("POST", "/traffic/stop")
    assert proc.returncode == 0, err
    assert llm_stats["calls_total"] > 0
    assert_clean("stdout", out)
    assert_clean("stderr", err)
    text = metrics.read_text(encoding="utf-8")
    assert '"type":"error"' in text  # the error paths did run
    assert '"type":"stats"' in text
    assert_clean("the metrics file", text)
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o600
    assert profile.exists(), "the run wrote no profile"
    assert_clean("the .prof", profile.read_bytes())
    for command in (["metrics", "summary", str(metrics)], ["metrics", "tail", str(metrics)]):
        done = botctl(*command)
        assert done.returncode == 0, done.stderr
        assert_clean(" ".join(command[:2]), done.stdout + done.stderr)
    analyzed = botctl("analyze", str(profile), "--limit", "50")
    assert analyzed.returncode == 0, analyzed.stderr
    assert_clean("analyze", analyzed.stdout + analyzed.stderr)


@pytest.mark.parametrize(
    "args",
    [
        # Discord unreachable: the error names the problem, not the token.
        [
            "--discord-api", "http://127.0.0.1:{port}/api/v10",
            "--discord-gateway", "ws://127.0.0.1:{port}/gateway",
        ],
        # Credentials in the Discord URLs: refused, and never echoed (nor printed in the banner).
        [
            "--discord-api", f"http://{API_USER}:{API_KEY}@127.0.0.1:{{port}}/api/v10",
            "--discord-gateway", "ws://127.0.0.1:{port}/gateway",
        ],
        # Bad LLM URLs that carry a key: one line, no key, no traceback.
        ["--llm-url", f"http://{API_USER}:{API_KEY}@127.0.0.1:99999"],
        ["--llm-url", f"ftp://{API_USER}:{API_KEY}@127.0.0.1:1"],
        ["--llm-url", f"http://{API_USER}:{API_KEY}@[::1"],
        ["--discord-api", "http://[::1", "--discord-gateway", "ws://[::1"],
    ],
    ids=["unreachable", "creds-in-discord-url", "bad-port", "bad-scheme", "bad-ipv6", "bad-urls"],
)  # fmt: skip
def test_error_messages_leak_no_secret(tmp_path: Path, args: list[str]) -> None:
    port = str(free_port())
    argv = ["run", "--token", SECRET_TOKEN, "--duration", "5", "--llm-timeout", "2"]
    argv += ["--metrics-file", str(tmp_path / "m.jsonl")]
    argv += [a.replace("{port}", port) for a in args]
    done = botctl(*argv, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert_clean("stdout", done.stdout)
    assert_clean("stderr", done.stderr)


async def test_a_refused_token_is_not_echoed(tmp_path: Path) -> None:
    server = DiscordServer(token="the-right-token")
    await server.start()
    try:
        settings = load_settings(
            None,
            {
                "discord_api": server.api_base,
                "discord_gateway": server.gateway_url,
                "metrics_file": tmp_path / "m.jsonl",
                "llm_url": f"http://{API_USER}:{API_KEY}@127.0.0.1:{free_port()}",
            },
        )
        stop = asyncio.Event()
        result = await serve(
            settings, SECRET_TOKEN, stop, client_options={"guild_ready_timeout": 0}
        )
    finally:
        reset_endpoints()
        await server.stop()
    assert result.error is not None and "refused the token" in result.error
    assert_clean("the error", result.error)
    assert_clean("the summary", repr(result.summary) + repr(result.counters))
    assert_clean("the settings shown", repr(settings) + repr(settings.redacted()))


async def test_an_unreachable_llm_with_a_key_is_named_without_it(tmp_path: Path) -> None:
    """The user's error reply says what failed, not where; the error event names the server,
    never its credentials."""
    port = free_port()
    url = f"http://{API_USER}:{API_KEY}@127.0.0.1:{port}"
    async with running_bot(tmp_path, llm=False, llm_url=url) as run:
        reply = await run.ask("hello?")
        assert WARNING in reply and "unreachable" in reply and str(port) not in reply
        assert_clean("the reply", reply)
        events = await run.events()
        assert_clean("the metrics", repr(events))
        (error,) = [e for e in events if e["type"] == "error"]
        assert error["url"] == f"http://127.0.0.1:{port}/api/chat"


# --------------------------------------------------------------------------- loopback only


def test_the_sandbox_listens_on_loopback_only() -> None:
    with sandbox_process(rate=1.0, users=2, channels=1) as sandbox:
        found = listening_sockets(sandbox.proc.pid)
        assert sandbox.llm_url is not None
        ports = {urlsplit(url).port for url in (sandbox.api_base, sandbox.llm_url)}
        assert {port for _, port in found} >= ports
        assert found and all(address == "127.0.0.1" for address, _ in found), found


async def test_in_process_servers_bind_loopback(tmp_path: Path) -> None:
    async with running_bot(tmp_path) as run:
        assert run.llm is not None
        assert run.server.host == run.llm.host == "127.0.0.1"
        found = {port: address for address, port in listening_sockets(os.getpid())}
        assert found[run.server.port] == "127.0.0.1"
        assert found[run.llm.port] == "127.0.0.1"
        # The bot (in this process too) listens nowhere: only the two servers do.
        assert set(found) == {run.server.port, run.llm.port}


def test_snakeviz_listens_on_loopback_only(tmp_path: Path) -> None:
    import cProfile

    from botctl.analyze.web import SnakevizServer

    profile = tmp_path / "tiny.prof"
    cProfile.run("sum(range(1000))", str(profile))
    with SnakevizServer(profile) as server:
        url = server.start(timeout=30)
        assert url.startswith("http://127.0.0.1:")
        process = server._process
        assert process is not None
        found = listening_sockets(process.pid)
        assert found and all(address == "127.0.0.1" for address, _ in found), found
