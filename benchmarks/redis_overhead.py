"""What ``--redis`` costs: SharedFlights against the in-process deduplicator, Redis commands per
message, LLM calls saved across two processes, and what one Redis serves on this machine.

It starts its own ``redis-server`` (127.0.0.1, a free port, no persistence) and runs
``botctl.bench.redis``:

- CPU per request of :class:`~bot.shared.SharedFlights` as leader, follower and window replay,
  against :class:`~bot.dedup.RequestDeduplicator`, with a fake source that costs nearly nothing:
  all 40 chunks at once (the mechanism's floor), then 75 chunks paced at 50 tokens/s (the sandbox
  LLM's default, 1.5 s: the publisher writes a handful of entries);
- Redis commands per message on the bot's path (INFO commandstats) and redis-server's CPU per
  message;
- upstream calls for 1,000 requests with 30 % concurrent duplicates split between two processes;
- redis-benchmark's requests/s for each command shape the bot sends.

One run; read the ratios and counts. ``--quick`` for a short run, ``--json`` for one JSON object.

    .venv/bin/python -m benchmarks.redis_overhead [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from botctl.bench.common import machine
from botctl.bench.redis import burst_calls, capacity, flights_cpu, ops_per_message, redis_server


async def _measure(url: str, quick: bool) -> dict[str, Any]:
    rounds = 2 if quick else 5
    return {
        "flights_fast": await flights_cpu(url, requests=200 if quick else 400, rounds=rounds),
        "flights_paced": await flights_cpu(
            url,
            requests=100 if quick else 200,
            chunks=75,
            pace=0.02,
            concurrency=50,
            rounds=1 if quick else 3,
        ),
        "ops": await ops_per_message(url, messages=100 if quick else 300),
        "burst": await burst_calls(url, requests=300 if quick else 1000),
    }


def run(quick: bool) -> dict[str, Any]:
    with redis_server() as url:
        result = asyncio.run(_measure(url, quick))
        result["capacity"] = capacity(url, requests=20_000 if quick else 100_000)
    result["machine"] = machine()
    return result


def _flights_lines(name: str, row: dict[str, Any]) -> list[str]:
    us, server = row["client_cpu_us_per_request"], row["redis_cpu_us_per_request"]
    return [
        f"{name}: {row['chunks']} chunks, pace {row['pace_s']} s; bot CPU µs per request "
        f"(redis-server's in brackets):",
        f"  in-process dedup  {us['local']:8.1f}",
        f"  shared, leader    {us['shared_leader']:8.1f}  ({server['shared_leader']:.1f})"
        f"  {row['ratio_leader']:.2f}x",
        f"  shared, follower  {us['follower']:8.1f}  (pair {server['shared_pair']:.1f})"
        f"  {row['ratio_follower']:.2f}x",
        f"  shared, window    {us['shared_window']:8.1f}  ({server['shared_window']:.1f})"
        f"  {row['ratio_window']:.2f}x",
    ]


def report(result: dict[str, Any]) -> str:
    lines = [*_flights_lines("flights, fast source", result["flights_fast"])]
    lines += _flights_lines("flights, paced source", result["flights_paced"])
    ops = result["ops"]
    lines.append(f"Redis commands per message ({ops['messages']} messages; {ops['note']}):")
    for name in (
        "leader_new_conversation",
        "leader_known_conversation",
        "leader_and_follower_pair",
        "window_replay",
    ):
        row = ops[name]
        lines.append(
            f"  {name:28} {row['commands_per_message']:6.2f}  redis CPU "
            f"{row['redis_cpu_us_per_message']:6.1f} µs  {row['by_command']}"
        )
    burst = result["burst"]
    lines.append(
        f"burst: {burst['requests']} requests, {burst['distinct_keys']} distinct keys -> "
        f"{burst['upstream_calls_two_processes']} upstream calls over 2 processes "
        f"({burst['upstream_calls_one_process']} in one process); saved "
        f"{burst['saved_two_processes']}, {burst['remote_followers']} across processes"
    )
    cap = result["capacity"]
    if "error" in cap:
        lines.append(f"capacity: {cap['error']}")
    else:
        lines.append(f"redis-benchmark ({cap['clients']} clients), requests/s unpipelined / P16:")
        for name, row in cap["requests_per_s"].items():
            lines.append(f"  {name:34} {row['P1']:>9,} / {row['P16']:>9,}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        result = run(args.quick)
    except RuntimeError as exc:  # no redis-server
        print(f"redis_overhead: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
