"""``python -m benchmarks.kb``: the knowledge base's add throughput and search latency at
1k, 10k and 100k chunks (``botctl.bench.kb``), as a table and budget lines; ``--json`` instead.

``kb_row`` is the same as a row of ``python -m benchmarks`` (register it as the ``kb`` section).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from botctl.bench.kb import KB_SIZES, run_kb_bench
from botctl.bench.suite import Row

QUICK_SIZES = (1_000, 10_000)


def kb_row(progress: Callable[[str], None], sizes: tuple[int, ...] = KB_SIZES) -> Row:
    r = run_kb_bench(sizes, progress=progress)
    return Row(
        "kb",
        "Knowledge base: kb add throughput, kb search latency (in-process)",
        None,
        measured(r),
        r["budgets"],
        data={k: v for k, v in r.items() if k != "budgets"},
    )


def measured(r: dict[str, Any]) -> str:
    parts = []
    for size, s in r["sizes"].items():
        t, p = s["topic"], s["plain"]
        parts.append(
            f"{size:,} chunks: add {s['add_mb_per_s']:.1f} MB/s, re-add {s['readd_over_add']:.3f}x; "
            f"search p50/p95 {t['p50_ms']:.2f}/{t['p95_ms']:.2f} ms (plain bm25 "
            f"{p['p50_ms']:.2f}/{p['p95_ms']:.2f} ms), own section in top 5 "
            f"{t['found_in_top5']:.0%} (plain {p['found_in_top5']:.0%}); common-words questions "
            f"p95 {s['common']['p95_ms']:.2f} ms"
        )
    return " · ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kb", description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object, nothing else")
    parser.add_argument("--quick", action="store_true", help="1k and 10k chunks only")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    row = kb_row(progress, QUICK_SIZES if args.quick else KB_SIZES)
    if args.json:
        from botctl.reporters.metrics import print_json

        print_json(row.to_json())
        return 0
    from rich.table import Table

    from botctl.console import console

    table = Table(title=row.title, title_justify="left")
    for column in (
        "chunks",
        "MB",
        "add MB/s",
        "re-add/add",
        "p50 ms",
        "p95 ms",
        "plain p95 ms",
        "top-5",
        "common p95 ms",
    ):
        table.add_column(column, justify="right")
    for size, s in row.data["sizes"].items():
        table.add_row(
            f"{size:,}",
            f"{s['megabytes']:.1f}",
            f"{s['add_mb_per_s']:.1f}",
            f"{s['readd_over_add']:.3f}",
            f"{s['topic']['p50_ms']:.2f}",
            f"{s['topic']['p95_ms']:.2f}",
            f"{s['plain']['p95_ms']:.2f}",
            f"{s['topic']['found_in_top5']:.0%}",
            f"{s['common']['p95_ms']:.2f}",
        )
    console.width = max(console.width, 120)
    console.print(table)
    for budget in row.budgets:
        console.print(budget.line(), highlight=False, soft_wrap=True)
    return 0  # budgets are reported, not asserted


if __name__ == "__main__":
    raise SystemExit(main())
