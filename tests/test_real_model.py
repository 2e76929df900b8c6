"""The bot answering through a real model: llama.cpp's own server with SmolLM2, offline.

``botctl run --llm-url http://127.0.0.1:PORT`` with no ``--llm-api`` must find the OpenAI-compatible
API behind llama.cpp's web page, answer the sandbox's users through it (llama.cpp closes the
connection after each streamed answer: many answers in a row on one session), merge identical
questions into one call, and report real token counts. Structure only, never the model's words.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from _local_model import child, needs_model, read_line

pytestmark = [pytest.mark.integration, *needs_model]


def test_the_bot_answers_through_llama_cpp_found_by_itself(tmp_path: Path) -> None:
    metrics = tmp_path / "m.jsonl"
    with child("--port", "0") as model:
        ready = read_line(model)
        root = str(ready["url"]).removesuffix("/v1")  # given without /v1: the probe finds it
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "OLLAMA_"))}
        env["COLUMNS"] = "200"
        args = [sys.executable, "-m", "botctl", "run", "--llm-url", root, "--duration", "14"]
        args += ["--rate", "1.5", "--users", "4", "--channels", "2", "--duplicate-ratio", "0.5"]
        args += ["--metrics-file", str(metrics), "--llm-timeout", "60", "--no-rate-limits"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "OpenAI-compatible server at" in proc.stdout and "smollm2" in proc.stdout
    events = [orjson.loads(line) for line in metrics.read_bytes().splitlines()]
    calls = [e for e in events if e["type"] == "llm_call"]
    replies = [e for e in events if e["type"] == "reply"]
    assert len(calls) >= 4 and {c["api"] for c in calls} == {"openai"}
    assert {c["status"] for c in calls} == {"ok"}, [c for c in calls if c["status"] != "ok"]
    upstream = [c for c in calls if c["dedup"] == "leader"]
    # Several streamed answers in a row through one session: llama.cpp closed each connection.
    assert len(upstream) >= 3
    assert all(c["tokens_out"] and c["tokens_in"] for c in upstream)  # from its usage chunk
    assert any(c["dedup"] in ("follower", "window") for c in calls)  # duplicates merged
    assert replies and {r["status"] for r in replies} == {"ok"}
    assert all(r["chars"] > 0 for r in replies)


def test_the_ttft_bench_row_measures_the_bot_against_llama_cpp() -> None:
    # The row taps the transport the engine really calls: a tap the engine bypasses measures nothing.
    from botctl.bench.local_ttft import run_local_ttft

    result = run_local_ttft(rounds=2)
    assert result["available"], result
    for side in ("bot", "raw"):
        assert len(result[side]["samples"]) == 2
        assert result[side]["server_prompt_p50_ms"] > 0
        assert result[side]["ttft_p50_ms"] >= result[side]["server_prompt_p50_ms"]
