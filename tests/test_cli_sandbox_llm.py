"""``botctl sandbox llm`` as a real subprocess on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from botctl.analyze.web import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def botctl(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "botctl", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def wait_for(process: subprocess.Popen[str], url: str) -> Any:
    """``url``'s JSON once the server answers (20 s at most)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return get_json(url)
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the server did not answer in 20 s"
            time.sleep(0.1)


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_serves_tags_and_stops_on_ctrl_c() -> None:
    port = free_port()
    process = botctl("sandbox", "llm", "--port", str(port), "--latency", "0")
    try:
        tags = wait_for(process, f"http://127.0.0.1:{port}/api/tags")
        model = tags["models"][0]
        assert model["name"] == model["model"] == "llama3.2"
        # Both protocols on the one port by default.
        assert get_json(f"http://127.0.0.1:{port}/v1/models")["data"][0]["id"] == "llama3.2"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{port}" in out and f"OLLAMA_HOST=http://127.0.0.1:{port}" in out
    assert f"--llm-url http://127.0.0.1:{port}/v1" in out
    assert "Traceback" not in err


def test_api_openai_serves_only_the_openai_api() -> None:
    port = free_port()
    process = botctl("sandbox", "llm", "--port", str(port), "--api", "openai")
    try:
        models = wait_for(process, f"http://127.0.0.1:{port}/v1/models")
        assert models["object"] == "list" and models["data"][0]["id"] == "llama3.2"
        assert status_of(f"http://127.0.0.1:{port}/api/tags") == 404
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0, err
    assert f"OPENAI_BASE_URL=http://127.0.0.1:{port}/v1" in out
    assert "OLLAMA_HOST" not in out and "Traceback" not in err


def test_unknown_api_is_a_usage_error() -> None:
    process = botctl("sandbox", "llm", "--api", "grpc")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2 and "Traceback" not in err


def test_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = botctl("sandbox", "llm", "--port", str(port))
        _, err = process.communicate(timeout=30)
    assert process.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert f"port {port} is in use; pick another with --port" in lines[0]


def test_the_command_module_does_not_import_aiohttp() -> None:
    code = "import sys, botctl.commands.sandbox; print('aiohttp' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "False", done.stderr
