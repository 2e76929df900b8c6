"""The rows of ``botctl bench``: each of the seed's performance claims, measured here, with budgets.

:func:`run_suite` runs the benchmarks a :class:`Plan` asks for and turns their results into
:class:`Row` objects (the claim, the figure measured, the budgets) inside a :class:`BenchReport`,
which the reporter renders as a table or JSON. A benchmark that fails to run becomes a row that
says why, never a crash of the whole report.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from botctl.bench.budgets import Budget
from botctl.bench.common import machine
from botctl.bench.e2e import E2E_LOAD, run_e2e
from botctl.sandbox.config import SandboxConfig

__all__ = ["CLAIMS", "SECTIONS", "BenchReport", "Plan", "Row", "run_suite"]

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
E2E_VS_BARE = 0.5


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure: ``quick`` for ``botctl bench --quick``, ``full`` for the rest."""

    quick: bool
    dedup_burst: int = 1000
    dedup_near: bool = True
    history_sizes: tuple[int, ...] = (100, 1_000, 10_000, 100_000)
    history_rounds: int = 5
    history_ops: int = 50_000
    history_list_ops: int = 5_000
    metrics_events: int = 20_000
    metrics_rounds: int = 5
    e2e: bool = True
    e2e_load: SandboxConfig = E2E_LOAD  # the sandbox and its traffic; duplicate ratios below
    e2e_duplicate_ratios: tuple[float, ...] = (0.0, 0.3)
    e2e_pairs: int = 3
    e2e_duration: float = 8.0
    e2e_warmup: float = 1.5

    @classmethod
    def quick_plan(cls) -> Plan:
        # Under 30 s here: fewer rounds and operations, no near-duplicate burst, and one short
        # bot/bare pair instead of three alternated ones.
        return cls(
            quick=True,
            dedup_near=False,
            history_sizes=(100, 1_000),
            history_rounds=3,
            history_ops=20_000,
            history_list_ops=2_000,
            metrics_events=10_000,
            metrics_rounds=3,
            e2e_duplicate_ratios=(0.0,),
            e2e_pairs=1,
            e2e_duration=2.5,
            e2e_warmup=0.75,
        )

    @classmethod
    def full_plan(cls) -> Plan:
        return cls(quick=False)


@dataclass(slots=True)
class Row:
    key: str
    title: str
    claim: str | None
    measured: str
    budgets: list[Budget] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "claim": self.claim,
            "measured": self.measured,
            "note": self.note,
            "error": self.error,
            "budgets": [b.to_json() for b in self.budgets],
            "data": self.data,
        }


@dataclass(slots=True)
class BenchReport:
    quick: bool
    machine: dict[str, Any]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def budgets(self) -> list[Budget]:
        return [budget for row in self.rows for budget in row.budgets]

    def to_json(self) -> dict[str, Any]:
        budgets = self.budgets
        return {
            "quick": self.quick,
            "machine": self.machine,
            "elapsed_s": round(self.elapsed_s, 2),
            "notes": self.notes,
            "rows": [row.to_json() for row in self.rows],
            "budgets": [b.to_json() for b in budgets],
            "budgets_passed": sum(1 for b in budgets if b.verdict == "pass"),
            "budgets_failed": sum(1 for b in budgets if b.verdict == "fail"),
            "budgets_not_measured": sum(1 for b in budgets if b.verdict == "not measured"),
        }


# -- rows from results ---------------------------------------------------------------------------


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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def e2e_rows(result: dict[str, Any], *, quick: bool, budget: bool = True) -> list[Row]:
    """A row per duplicate ratio; the 0 % one carries the budget (unless ``budget`` is off, for
    extra rows such as a deliberate overload)."""
    out = []
    for row in result["rows"]:
        bot, bare = row["bot"], row["bare"]
        dup = row["duplicate_ratio"]
        errors = bot["errors"] + bare["errors"]
        if bot["replies_per_s"] is None or bare["replies_per_s"] is None:
            measured = "not measured: " + ("; ".join(str(e) for e in errors) or "no trial finished")
        else:
            measured = (
                f"at {row['rate']:g} msg/s offered: bot {bot['replies_per_s']:,.0f}/s vs bare "
                f"discord.py {bare['replies_per_s']:,.0f}/s = {row['ratio']:.2f}x; bot reply "
                f"p50/p95/p99 {_ms(bot['p50_ms'])}/{_ms(bot['p95_ms'])}/{_ms(bot['p99_ms'])} ms"
            )
            if row.get("cpu_per_reply_ratio"):
                measured += (
                    f"; CPU per reply {bot['cpu_ms_per_reply']:.2f} vs "
                    f"{bare['cpu_ms_per_reply']:.2f} ms ({row['cpu_per_reply_ratio']:.2f}x)"
                )
        notes = []
        if bare.get("kept_up"):
            notes.append(
                "the bare bot kept up with the offered rate (not saturated), so the throughput "
                "ratio flatters the bot; the CPU-per-reply ratio is the capacity estimate"
            )
        if quick:
            notes.append(
                f"--quick: one {result['duration_s']:g} s trial each (full run: "
                f"{Plan.full_plan().e2e_pairs} alternated pairs of {Plan.full_plan().e2e_duration:g} s)"
            )
        budgets = []
        if dup == 0.0 and budget:
            # The throughput ratio compares capacities only if both sides were saturated; where
            # the bare bot kept up with the load its figure is the offered rate, and the ratio of
            # CPU per reply (each process's own cost of a reply) is the capacity estimate.
            figure = row["ratio"]
            how = "replies/s ratio, the bare bot saturated"
            if bare.get("kept_up"):
                figure = row.get("cpu_per_reply_ratio")
                how = (
                    f"CPU-per-reply ratio, as the bare bot kept up with {row['rate']:g} msg/s "
                    f"(replies/s ratio {row['ratio']:.2f}x)"
                )
            budgets.append(
                Budget(
                    "end to end: bot capacity over a bare discord.py bot (0 % duplicates)",
                    figure,
                    ">=",
                    E2E_VS_BARE,
                    detail=f"{how}; at {row['rate']:g} msg/s, pairs {row['pair_ratios']}",
                    reason="; ".join(str(e) for e in errors) or None,
                )
            )
        out.append(
            Row(
                "e2e" if dup == 0.0 else f"e2e_dup{round(dup * 100)}",
                f"Sandbox end to end, {dup:.0%} duplicates (replies/s)",
                CLAIMS["e2e"],
                measured,
                budgets,
                data=row,
                note="; ".join(notes) or None,
            )
        )
    return out


# -- running -------------------------------------------------------------------------------------


def _failed_row(key: str, title: str, exc: BaseException) -> Row:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
    return Row(
        key,
        title,
        CLAIMS.get(key),
        "not measured",
        error=f"{type(exc).__name__}: {exc}{at}",
    )


SECTIONS = ("dedup", "history", "metrics", "e2e")


def run_suite(
    plan: Plan,
    *,
    progress: Callable[[str], None] | None = None,
    sections: Collection[str] = SECTIONS,
) -> BenchReport:
    from botctl.bench.dedup import run_dedup_bench
    from botctl.bench.history import run_history_bench
    from botctl.bench.metrics_io import run_metrics_bench

    started = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    if "dedup" in sections:
        try:
            rows += dedup_rows(
                run_dedup_bench(burst=plan.dedup_burst, near=plan.dedup_near, progress=progress)
            )
        except Exception as exc:
            rows.append(_failed_row("dedup_burst", "LLM calls with and without dedup", exc))
    if "history" in sections:
        try:
            result = run_history_bench(
                plan.history_sizes,
                rounds=plan.history_rounds,
                ops=plan.history_ops,
                list_ops=plan.history_list_ops,
                progress=progress,
            )
            rows.append(history_row(result))
        except Exception as exc:
            rows.append(_failed_row("history", "History LRU against a list LRU", exc))
    if "metrics" in sections:
        try:
            result = run_metrics_bench(
                events=plan.metrics_events, rounds=plan.metrics_rounds, progress=progress
            )
            rows.append(metrics_row(result))
        except Exception as exc:
            rows.append(_failed_row("metrics", "Metrics writes per event", exc))
    if "e2e" in sections and plan.e2e:
        try:
            result = run_e2e(
                duplicate_ratios=plan.e2e_duplicate_ratios,
                load=plan.e2e_load,
                duration=plan.e2e_duration,
                warmup=plan.e2e_warmup,
                pairs=plan.e2e_pairs,
                progress=progress,
            )
            rows += e2e_rows(result, quick=plan.quick)
        except Exception as exc:
            rows.append(_failed_row("e2e", "Sandbox end to end", exc))
    elif "e2e" in sections:
        notes.append("end to end skipped")
    if plan.quick:
        notes.append(
            "--quick: fewer rounds and sizes, no near-duplicate burst, a short end-to-end pair "
            "at a fixed rate; run without --quick (or `make bench`) for the full figures"
        )
    return BenchReport(
        quick=plan.quick,
        machine=machine(),
        rows=rows,
        notes=notes,
        elapsed_s=time.monotonic() - started,
    )
