"""Start-up: ``botctl --help`` wall time against a bare Typer app, and what ``--help`` imports.

Each command runs as a fresh subprocess of this interpreter, interleaved (botctl, Typer floor,
bare interpreter), and the medians are compared. The import check runs each command's help
in-process in a child and reports whether ``discord`` or ``aiohttp`` got imported: the CLI keeps
those inside the commands so that asking for help never pays for them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from botctl.bench.common import median, ratio, rotated

HELLO = Path(__file__).with_name("typer_hello.py")
HEAVY = ("discord", "aiohttp")
TIMEOUT_S = 60.0

_CHECK = """
import contextlib, io, json, sys
from botctl.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(sys.argv[1:])
    except SystemExit:
        pass
print(json.dumps({name: name in sys.modules for name in %r}))
"""


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S, check=False
    )
    return time.perf_counter() - start


def imports_on_help(args: list[str]) -> dict[str, bool]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK % (HEAVY,), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"the import check failed: {proc.stderr.strip()[-300:]}")
    result: dict[str, bool] = json.loads(lines[-1])
    return result


def run_startup(runs: int = 10) -> dict[str, Any]:
    python = sys.executable
    variants = [
        ("botctl", [python, "-m", "botctl", "--help"]),
        ("typer", [python, str(HELLO), "--help"]),
        ("python", [python, "-c", "pass"]),
    ]
    for _, cmd in variants:  # warm the page cache and .pyc files first
        _wall(cmd)
    samples: dict[str, list[float]] = {name: [] for name, _ in variants}
    for r in range(runs):
        for name, cmd in rotated(variants, r):
            samples[name].append(_wall(cmd))
    ms = {name: median(values) * 1000 for name, values in samples.items()}
    commands = ["--help", "run --help", "profile --help", "bench --help", "metrics --help"]
    imported = {cmd: imports_on_help(cmd.split()) for cmd in commands}
    heavy = sorted(
        {f"{m} ({cmd})" for cmd, found in imported.items() for m, on in found.items() if on}
    )
    return {
        "runs": runs,
        "median_ms": {name: round(value, 1) for name, value in ms.items()},
        "ratio": ratio(ms["botctl"], ms["typer"]),
        "imports": imported,
        "heavy_imports": heavy,
    }
