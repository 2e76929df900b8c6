"""The rows of ``botctl bench``: each of the seed's performance claims, measured here, with budgets.

:func:`run_suite` runs the benchmarks a :class:`Plan` asks for and turns their results into
:class:`Row` objects (the claim, the figure measured, the budgets) inside a :class:`BenchReport`,
which the reporter renders as a table or JSON. A benchmark that fails to run becomes a row that
says why, never a crash of the whole report. The dedup, history and metrics rows are built here,
the sandbox ones in :mod:`botctl.bench.e2e_rows`.

Sections: the seed's four (``dedup``, ``history``, ``metrics``, ``e2e``: the bot against a bare
discord.py bot, and on uvloop), then ``openai`` (the OpenAI protocol against Ollama's), ``chains``
(reply chains against channel history), ``realistic`` (Discord's limits and a streaming LLM at 1,
5 and 20 questions/s) and ``ttft`` (the real local model's time to first token, when installed).
The CPU comparisons of ``e2e``, ``openai`` and ``chains`` share one alternated set of trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

from botctl.bench.budgets import Budget
from botctl.bench.common import machine
from botctl.bench.e2e import E2E_LOAD, run_e2e
from botctl.bench.e2e_rows import (
    E2E_VS_BARE,
    chains_row,
    e2e_rows,
    openai_row,
    realistic_rows,
    ttft_row,
)
from botctl.bench.realistic import REALISTIC_RATES, WINDOWS
from botctl.bench.rows import Row, failed_row
from botctl.bench.seed_rows import CLAIMS, dedup_rows, history_row, metrics_row
from botctl.sandbox.config import SandboxConfig

__all__ = [
    "CLAIMS",
    "E2E_VS_BARE",
    "SECTIONS",
    "BenchReport",
    "Plan",
    "Row",
    "e2e_rows",
    "run_suite",
]


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
    chain_depth: int = 10  # messages of reply chain before each question of the chains row
    realistic_rates: tuple[float, ...] = REALISTIC_RATES
    realistic_windows: tuple[tuple[float, float], ...] = tuple(WINDOWS.items())
    ttft_rounds: int = 10
    # Left out of --quick (each costs a sandbox trial or a model start): said in its notes.
    slow_sections: tuple[str, ...] = ()

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
            slow_sections=("openai", "chains", "realistic", "ttft"),
        )

    @classmethod
    def full_plan(cls) -> Plan:
        return cls(quick=False)


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


SECTIONS = ("dedup", "history", "metrics", "e2e", "openai", "chains", "realistic", "ttft")


def _seed_rows(
    plan: Plan, sections: Collection[str], progress: Callable[[str], None] | None
) -> list[Row]:
    from botctl.bench.dedup import run_dedup_bench
    from botctl.bench.history import run_history_bench
    from botctl.bench.metrics_io import run_metrics_bench

    rows: list[Row] = []
    if "dedup" in sections:
        try:
            rows += dedup_rows(
                run_dedup_bench(burst=plan.dedup_burst, near=plan.dedup_near, progress=progress)
            )
        except Exception as exc:
            rows.append(failed_row("dedup_burst", "LLM calls with and without dedup", exc))
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
            rows.append(failed_row("history", "History LRU against a list LRU", exc))
    if "metrics" in sections:
        try:
            result = run_metrics_bench(
                events=plan.metrics_events, rounds=plan.metrics_rounds, progress=progress
            )
            rows.append(metrics_row(result))
        except Exception as exc:
            rows.append(failed_row("metrics", "Metrics writes per event", exc))
    return rows


def _sandbox_rows(
    plan: Plan, sections: Collection[str], progress: Callable[[str], None] | None
) -> list[Row]:
    """``e2e``, ``openai`` and ``chains`` in one alternated set of trials: the bot on Ollama's
    protocol answering plain mentions is the baseline of all three."""
    extra: dict[str, dict[str, Any]] = {}
    if "openai" in sections:
        extra["bot_openai"] = {"api": "openai"}
    if "chains" in sections:
        extra["bot_chains"] = {"load": replace(plan.e2e_load, reply_depth=plan.chain_depth)}
    full = "e2e" in sections
    if not full and not extra:
        return []
    try:
        result = run_e2e(
            duplicate_ratios=plan.e2e_duplicate_ratios if full else (0.0,),
            load=plan.e2e_load,
            duration=plan.e2e_duration,
            warmup=plan.e2e_warmup,
            pairs=plan.e2e_pairs,
            progress=progress,
            bare=full,
            uvloop=full,
            extra=extra,
        )
    except Exception as exc:
        return [failed_row("e2e", "Sandbox end to end", exc)]
    rows = e2e_rows(result, quick=plan.quick) if full else []
    base = result["rows"][0]
    if "openai" in sections:
        rows.append(openai_row(base))
    if "chains" in sections:
        rows.append(chains_row(base, plan.chain_depth))
    return rows


def _realistic_and_ttft(
    plan: Plan, sections: Collection[str], progress: Callable[[str], None] | None
) -> list[Row]:
    from botctl.bench.local_ttft import run_local_ttft, ttft_budget
    from botctl.bench.realistic import run_realistic

    rows: list[Row] = []
    if "realistic" in sections:
        try:
            result = run_realistic(
                plan.realistic_rates, windows=dict(plan.realistic_windows), progress=progress
            )
            rows += realistic_rows(result)
        except Exception as exc:
            rows.append(failed_row("realistic", "Realistic sandbox", exc))
    if "ttft" in sections:
        try:
            result = run_local_ttft(plan.ttft_rounds, progress=progress)
            rows.append(ttft_row(result, ttft_budget(result)))
        except Exception as exc:
            rows.append(failed_row("ttft", "Local model: time to first token", exc))
    return rows


def run_suite(
    plan: Plan,
    *,
    progress: Callable[[str], None] | None = None,
    sections: Collection[str] = SECTIONS,
) -> BenchReport:
    started = time.monotonic()
    notes: list[str] = []
    skipped = [s for s in plan.slow_sections if s in sections]
    wanted = [s for s in sections if s not in skipped]
    if not plan.e2e:
        wanted = [s for s in wanted if s not in ("e2e", "openai", "chains", "realistic")]
        notes.append("end to end skipped")
    rows = _seed_rows(plan, wanted, progress)
    rows += _sandbox_rows(plan, wanted, progress)
    rows += _realistic_and_ttft(plan, wanted, progress)
    if plan.quick:
        notes.append(
            "--quick: fewer rounds and sizes, no near-duplicate burst, a short end-to-end pair "
            "at a fixed rate; run without --quick (or `make bench`) for the full figures"
        )
    if skipped:
        notes.append(f"--quick leaves out: {', '.join(skipped)} (sandbox trials, the local model)")
    return BenchReport(
        quick=plan.quick,
        machine=machine(),
        rows=rows,
        notes=notes,
        elapsed_s=time.monotonic() - started,
    )
