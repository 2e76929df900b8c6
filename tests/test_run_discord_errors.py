"""``botctl run`` with a token that cannot connect: one line saying what, where and what to check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from test_run_llm import in_thread

pytestmark = pytest.mark.integration


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_", "BOT_"))}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "botctl", "run", "--metrics-file", str(tmp_path / "m.jsonl"), *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )


def test_an_unreachable_discord_is_one_line_with_its_address(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        "--token", "fake.token.abc",
        "--discord-api", "http://127.0.0.1:1/api/v10",
        "--discord-gateway", "ws://127.0.0.1:1/gateway",
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot reach Discord at http://127.0.0.1:1/api/v10" in lines[0]
    assert "--discord-api" in lines[0] and "fake.token" not in proc.stderr + proc.stdout
    assert "Summary" not in proc.stdout  # a run that never connected has no figures to show


def test_a_refused_token_is_named_as_such(tmp_path: Path) -> None:
    async def unauthorized(request: web.Request) -> web.Response:
        body = b'{"message": "401: Unauthorized", "code": 0}'
        return web.Response(body=body, status=401, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unauthorized)
    with in_thread(app) as url:
        proc = run(
            tmp_path,
            "--token", "fake.token.abc",
            "--discord-api", f"{url}/api/v10",
            "--discord-gateway", f"{url.replace('http', 'ws')}/gateway",
        )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "refused the token" in lines[0] and "DISCORD_TOKEN" in lines[0]
    assert "Summary" not in proc.stdout and "fake.token" not in proc.stderr + proc.stdout
