"""The seed's four rows of ``botctl bench`` from their benchmarks' results: dedup (a burst with
and without dedup, K identical questions), the history LRU against a list LRU, batched metrics.
"""

from __future__ import annotations

from typing import Any

from botctl.bench.budgets import Budget
from botctl.bench.rows import Row

__all__ = ["CLAIMS", "dedup_rows", "history_row", "metrics_row"]

# The seed README's performance table, word for word where it had words.
CLAIMS: dict[str, str | None] = {
    "dedup_burst": "20–30 % fewer LLM calls",
    "history": "10x faster history lookups at 100+ channels",
    "metrics": "1 write per 50 events",
    "dedup_identical": "one API call for duplicates",
    "e2e": None,
}

HISTORY_BUDGET_SIZE = 1_000
HISTORY_VS_LIST = 40.0
HISTORY_VS_LRU_DICT = 1.5
WRITES_PER_EVENT = 0.02
LOG_EVENT_SPEEDUP = 5.0


def _pct_fewer(before: int, after: int) -> float:
    return 100.0 * (before - after) / before if before else 0.0


def dedup_rows(result: dict[str, Any]) -> list[Row]:
    burst = result["concurrent"]
    off, on = burst["no_dedup"]["upstream_calls"], burst["dedup"]["upstream_calls"]
    measured = (
        f"{burst['requests']:,} requests, {_pct_fewer(burst['requests'], burst['distinct_keys']):.0f} % "
        f"concurrent duplicates: {off:,} → {on:,} LLM calls ({_pct_fewer(off, on):.1f} % fewer)"
    )
    budgets = [
        Budget(
            "dedup burst: upstream calls = distinct keys in flight",
            on,
            "==",
            burst["distinct_keys"],
            unit="calls",
            detail=f"{burst['requests']:,} requests, {burst['distinct_keys']:,} distinct keys",
        )
    ]
    near = result.get("near")
    if near:
        near_on = near["dedup"]["upstream_calls"]
        measured += (
            f"; {_pct_fewer(near['requests'], near['distinct_keys']):.0f} % near-duplicates "
            f"(after the first answer, within the 5 s window): {near['no_dedup']['upstream_calls']:,}"
            f" → {near_on:,} ({near['in_flight_only']['upstream_calls']:,} with in-flight merging only)"
        )
        budgets.append(
            Budget(
                "dedup window: upstream calls = distinct keys (near-duplicates)",
                near_on,
                "==",
                near["distinct_keys"],
                unit="calls",
                detail=f"{near['requests']:,} requests, {near['distinct_keys']:,} distinct keys",
            )
        )
    identical = result["identical"]
    worst = max(row["dedup"] for row in identical)
    ident_text = " · ".join(
        f"K={row['k']}: {row['dedup']} (without: {row['no_dedup']})" for row in identical
    )
    ks = ", ".join(str(row["k"]) for row in identical)
    return [
        Row(
            "dedup_burst",
            "LLM calls with and without dedup, duplicate burst",
            CLAIMS["dedup_burst"],
            measured,
            budgets,
            data=result,
            note=None if near else "near-duplicate burst skipped (--quick)",
        ),
        Row(
            "dedup_identical",
            "N identical concurrent questions → upstream calls",
            CLAIMS["dedup_identical"],
            ident_text,
            [
                Budget(
                    "dedup: upstream calls for K identical concurrent requests",
                    worst,
                    "==",
                    1,
                    unit="calls",
                    detail=f"worst of K = {ks}",
                )
            ],
        ),
    ]


def history_row(result: dict[str, Any]) -> Row:
    rows = result["rows"]
    parts = []
    for row in rows:
        text = f"{row['channels']:,} ch: {row['speedup_vs_list']:.1f}x"
        if row.get("vs_lru_dict") is not None:
            text += f" ({row['vs_lru_dict']:.2f}x lru-dict)"
        parts.append(text)
    at = next((row for row in rows if row["channels"] == HISTORY_BUDGET_SIZE), None)
    budgets = [
        Budget(
            f"history: ChatHistoryManager speed-up over the list LRU at {HISTORY_BUDGET_SIZE:,} channels",
            at["speedup_vs_list"] if at else None,
            ">=",
            HISTORY_VS_LIST,
            detail=(
                f"{at['ns_per_op']['ours']:,.0f} vs {at['ns_per_op']['list']:,.0f} ns/op; "
                f"the LRU's own cost alone (above the shared lookup-and-copy floor of "
                f"{at['ns_per_op']['floor']:,.0f} ns): {at['lru_speedup_vs_list']:.0f}x"
                if at
                else ""
            ),
            reason=None if at else f"{HISTORY_BUDGET_SIZE:,} channels not in this run",
        )
    ]
    vs_lru = [(row["vs_lru_dict"], row["channels"]) for row in rows if row.get("vs_lru_dict")]
    if vs_lru:
        worst, size = max(vs_lru)
        budgets.append(
            Budget(
                "history: ChatHistoryManager cost relative to lru-dict (worst size)",
                worst,
                "<=",
                HISTORY_VS_LRU_DICT,
                detail=f"at {size:,} channels; "
                + ", ".join(f"{c:,}: {v:.2f}x" for v, c in sorted(vs_lru, key=lambda x: x[1])),
            )
        )
    else:
        budgets.append(
            Budget(
                "history: ChatHistoryManager cost relative to lru-dict (worst size)",
                None,
                "<=",
                HISTORY_VS_LRU_DICT,
                reason="lru-dict is not installed (pip install 'botctl[bench]')",
            )
        )
    return Row(
        "history",
        "History LRU against a list LRU (90/10 get/put, Zipf)",
        CLAIMS["history"],
        " · ".join(parts),
        budgets,
        data=result,
    )


def metrics_row(result: dict[str, Any]) -> Row:
    writes = result["writes_per_event"]
    rate = result["events_per_s"]
    batched = writes["batched"]
    per = f"1 per {1 / batched:.0f} events" if batched > 0 else "none"
    measured = (
        f"{batched:.4f} writes/event batched ({per}) vs {writes['per_event']:.2f} per event; "
        f"log_event {rate['log_event']:,}/s vs {rate['per_event']:,}/s write+flush "
        f"({result['speedup']:.1f}x; all-in with the batch writes {result['speedup_all_in']:.1f}x)"
    )
    return Row(
        "metrics",
        "Metrics writes per event, batched and not",
        CLAIMS["metrics"],
        measured,
        [
            Budget(
                "metrics: write syscalls per event (batched)",
                batched,
                "<=",
                WRITES_PER_EVENT,
                unit="",
                detail=f"counted by {result['writes_counted_by']}",
            ),
            Budget(
                "metrics: log_event rate over a per-event write+flush logger (stdlib json)",
                result["speedup"],
                ">=",
                LOG_EVENT_SPEEDUP,
                detail=(
                    f"{result['us_per_event']['log_event']:.2f} vs "
                    f"{result['us_per_event']['per_event']:.2f} µs/event; all-in "
                    f"{result['speedup_all_in']:.1f}x"
                ),
            ),
        ],
        data=result,
    )
