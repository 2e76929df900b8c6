"""``make bench`` (``python -m benchmarks``): every benchmark, its table and its budget lines.

It runs the full ``botctl bench`` suite (``botctl.bench``: dedup, history LRU, batched metrics,
end to end and on uvloop, the OpenAI protocol, reply chains, the realistic sandbox, the local
model's time to first token), plus what needs a fresh interpreter, strace or a profiler:

- ``key``: the dedup key's cost at 1, 10 and 50 history messages against the reference
  (``benchmarks.engine_micro``);
- ``log_event``: ``log_event`` against the least any buffered logger pays (``engine_micro``);
- ``strace``: write syscalls per event counted by ``strace -c -f -e trace=write``;
- ``startup``: ``botctl --help`` against a bare Typer app, and what ``--help`` imports;
- ``overload``: end to end far beyond the bot's capacity (informational);
- ``profile``: sandbox throughput under each ``botctl profile`` mode against none;
- ``kb``, ``prometheus``, ``llm_server``, ``local_speed``: the standalone scripts of this folder
  (``benchmarks.more_rows``); ``local_speed`` is opt-in (``--only local_speed``).

Budgets are reported as PASS/FAIL lines; the exit status is 0 whatever they say. ``--json``
prints one JSON object instead; ``--only key,startup`` runs some sections.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchmarks.more_rows import kb_section, llm_server_row, local_speed_row, prometheus_row
from botctl.bench.budgets import Budget
from botctl.bench.suite import SECTIONS, Plan, Row, e2e_rows, run_suite

EXTRA = (
    "key",
    "log_event",
    "strace",
    "startup",
    "overload",
    "profile",
    "kb",
    "prometheus",
    "llm_server",
    "local_speed",
)
ALL = (*SECTIONS, *EXTRA)
# Run only when asked for by name (--only): informational and slow.
OPT_IN = ("local_speed",)
DEFAULT = tuple(s for s in ALL if s not in OPT_IN)

KEY_BUDGET = 1.2
HELP_BUDGET = 1.5
PYSPY_BUDGET = 0.95
STRACE_BUDGET = 0.02
OVERLOAD_RATE = 900.0


def key_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.engine_micro import bench_key

    results = {}
    generic = {}
    for history in (1, 10, 50):
        progress(f"dedup key cost, {history} history messages")
        results[history] = bench_key(15, 2000, history, shape="service")
        generic[history] = bench_key(15, 2000, history, shape="client")
    budgets = [
        Budget(
            f"dedup key cost over sha256(orjson OPT_SORT_KEYS), {history} history messages",
            r["ratio"],
            "<=",
            KEY_BUDGET,
            detail=(
                f"make_key {r['make_key_us']:.2f} vs {r['reference_us']:.2f} µs on the request "
                f"the bot builds; a client-shaped request (with stream, missing fields) "
                f"{generic[history]['ratio']:.2f}x"
            ),
        )
        for history, r in results.items()
    ]
    measured = " · ".join(
        f"{h} msg: {r['make_key_us']:.1f} vs {r['reference_us']:.1f} µs ({r['ratio']:.2f}x; "
        f"client-shaped {generic[h]['ratio']:.2f}x)"
        for h, r in results.items()
    )
    data = {
        str(history): {**r, "client_shaped": generic[history]} for history, r in results.items()
    }
    return Row("key", "Dedup key cost against the reference", None, measured, budgets, data=data)


def log_event_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.engine_micro import bench_log_event

    progress("log_event against dict+append")
    r = bench_log_event(15, 20_000)
    measured = (
        f"log_event {r['events_per_s']:,.0f}/s; building the dict and appending it to a list "
        f"(the least any buffered logger pays) {r['baseline_events_per_s']:,.0f}/s: "
        f"{r['cost_vs_baseline']:.2f}x its cost"
    )
    return Row("log_event", "log_event against the bare minimum", None, measured, data=r)


def strace_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.syscalls import run_strace

    progress("write syscalls per event under strace")
    r = run_strace()
    if not r["available"]:
        budget = Budget(
            "metrics: write syscalls per event (strace)",
            None,
            "<=",
            STRACE_BUDGET,
            unit="",
            reason=r["reason"],
        )
        return Row("strace", "Metrics writes per event (strace)", None, r["reason"], [budget])
    w = r["writes_per_event"]
    return Row(
        "strace",
        "Metrics writes per event (strace -c -f)",
        "1 write per 50 events",
        f"batched {w['batched']:.4f} writes/event vs per-event {w['per_event']:.2f} "
        f"({r['events']:,} events, less an empty run)",
        [
            Budget(
                "metrics: write syscalls per event (strace)",
                w["batched"],
                "<=",
                STRACE_BUDGET,
                unit="",
                detail=f"raw counts {r['calls']}",
            )
        ],
        data=r,
    )


def startup_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.startup import run_startup

    progress("botctl --help against a bare Typer app")
    r = run_startup(10)
    ms = r["median_ms"]
    heavy = r["heavy_imports"]
    measured = (
        f"botctl --help {ms['botctl']:.0f} ms vs bare Typer {ms['typer']:.0f} ms "
        f"({r['ratio']:.2f}x; python -c pass {ms['python']:.0f} ms); discord/aiohttp imported "
        f"by --help: {', '.join(heavy) if heavy else 'no'}"
    )
    return Row(
        "startup",
        "Start-up: botctl --help",
        None,
        measured,
        [
            Budget("start-up: botctl --help over a bare Typer app", r["ratio"], "<=", HELP_BUDGET),
            Budget(
                "start-up: heavy modules (discord, aiohttp) imported by --help",
                len(heavy),
                "==",
                0,
                unit="modules",
                detail="checked: " + ", ".join(f"botctl {c}" for c in r["imports"]),
            ),
        ],
        data=r,
    )


def overload_rows(progress: Callable[[str], None]) -> list[Row]:
    from botctl.bench.e2e import run_e2e

    # The bot on asyncio against the bare bot only: the uvloop row belongs to the budgeted load.
    result = run_e2e(
        duplicate_ratios=(0.0,),
        rate=OVERLOAD_RATE,
        duration=8.0,
        pairs=2,
        progress=progress,
        uvloop=False,
    )
    rows = e2e_rows(result, quick=False, budget=False)
    for row in rows:
        row.key = "e2e_overload"
        row.title = f"End to end far past capacity ({OVERLOAD_RATE:g} msg/s offered)"
        row.note = "informational: how each side holds up when offered far more than it can carry"
    return rows


def profile_row(progress: Callable[[str], None]) -> Row:
    from benchmarks.profiler_overhead import run_profiler_overhead

    r = run_profiler_overhead(progress=progress)
    if not r["available"]:
        return Row(
            "profile",
            "Profiler overhead",
            None,
            f"not measured: {r['reason']}",
            [
                Budget(
                    "profiler: py-spy throughput over none",
                    None,
                    ">=",
                    PYSPY_BUDGET,
                    reason=r["reason"],
                )
            ],
        )
    modes = r["modes"]
    parts = []
    for mode, m in modes.items():
        if m["replies_per_s"] is None:
            parts.append(f"{mode}: not measured ({'; '.join(m['errors'])[:160]})")
        else:
            vs = "" if mode == "none" else f" = {m['vs_none']:.2f}x"
            parts.append(f"{mode} {m['replies_per_s']:,.0f}/s{vs}")
    pyspy = modes.get("pyspy", {})
    reason = "; ".join(pyspy.get("errors", [])) or "no run finished"
    return Row(
        "profile",
        f"Profiler overhead (sandbox replies/s at {r['rate']:g} msg/s offered)",
        None,
        " · ".join(parts),
        [
            Budget(
                "profiler: throughput with py-spy (100 Hz) over no profiler",
                pyspy.get("vs_none"),
                ">=",
                PYSPY_BUDGET,
                detail=f"samples {pyspy.get('samples')} vs {modes['none']['samples']}",
                reason=None if pyspy.get("vs_none") is not None else reason,
            )
        ],
        data=r,
    )


EXTRA_RUNNERS: dict[str, Callable[[Callable[[str], None]], Any]] = {
    "key": key_row,
    "log_event": log_event_row,
    "strace": strace_row,
    "startup": startup_row,
    "overload": overload_rows,
    "profile": profile_row,
    "kb": kb_section,
    "prometheus": prometheus_row,
    "llm_server": llm_server_row,
    "local_speed": local_speed_row,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"comma-separated sections to run, of: {', '.join(ALL)} (all but "
        f"{', '.join(OPT_IN)} by default)",
    )
    args = parser.parse_args(argv)
    wanted = (
        DEFAULT if not args.only else tuple(s.strip() for s in args.only.split(",") if s.strip())
    )
    unknown = [s for s in wanted if s not in ALL]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")

    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    plan = Plan.full_plan()
    report = run_suite(plan, progress=progress, sections=[s for s in SECTIONS if s in wanted])
    extra_rows: dict[str, list[Row]] = {}
    for name, runner in EXTRA_RUNNERS.items():
        if name not in wanted:
            continue
        try:
            produced = runner(progress)
        except Exception as exc:
            where = traceback.format_exception_only(type(exc), exc)[-1].strip()
            produced = Row(name, name, None, "not measured", error=where)
        extra_rows[name] = produced if isinstance(produced, list) else [produced]
    # The suite's rows first, in its order, then the extra ones in the documented order.
    for name in ALL:
        report.rows.extend(extra_rows.get(name, []))
    report.elapsed_s = time.monotonic() - started

    from botctl.console import console
    from botctl.reporters import bench as reporter

    if args.json:
        from botctl.reporters.metrics import print_json

        print_json(reporter.report_json(report))
    else:
        console.width = max(console.width, 140)
        reporter.print_report(console, report)
    return 0  # budgets are reported, not asserted


if __name__ == "__main__":
    raise SystemExit(main())
