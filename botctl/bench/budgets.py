"""Budgets: a measured figure, a comparison and a limit, reported as pass, fail or not measured.

Budgets are reported, never asserted: a benchmark that misses one still prints every figure and
exits 0, and the line says by how much it missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Budget", "Op", "Verdict", "evaluate", "summary_line"]

Op = Literal[">=", "<=", "=="]
Verdict = Literal["pass", "fail", "not measured"]

# Counts are compared exactly; a float that went through arithmetic only up to rounding noise.
_EQ_TOLERANCE = 1e-9


def evaluate(measured: float | None, op: Op, limit: float) -> Verdict:
    """``measured op limit`` as a verdict; ``None`` or NaN is "not measured", never a pass."""
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return "not measured"
    if op == ">=":
        ok = measured >= limit
    elif op == "<=":
        ok = measured <= limit
    elif op == "==":
        ok = math.isclose(measured, limit, rel_tol=0.0, abs_tol=_EQ_TOLERANCE)
    else:  # pragma: no cover - Op is closed; this guards callers that bypass typing
        raise ValueError(f"unknown comparison {op!r}")
    return "pass" if ok else "fail"


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if float(value).is_integer():
        return f"{int(value):,}{unit and ' ' + unit}"
    return f"{value:.4g}{unit and ' ' + unit}"


@dataclass(frozen=True, slots=True)
class Budget:
    """``name``: ``measured op limit`` (``unit`` is ``"x"`` for ratios)."""

    name: str
    measured: float | None
    op: Op
    limit: float
    unit: str = "x"
    detail: str = ""
    reason: str | None = None  # why it was not measured

    @property
    def verdict(self) -> Verdict:
        return evaluate(self.measured, self.op, self.limit)

    @property
    def passed(self) -> bool | None:
        verdict = self.verdict
        return None if verdict == "not measured" else verdict == "pass"

    def line(self) -> str:
        """One line for a terminal or a log: ``PASS name: 12.3x (budget >= 10x) — detail``."""
        verdict = self.verdict
        tag = {"pass": "PASS", "fail": "FAIL", "not measured": "N/A "}[verdict]
        if verdict == "not measured":
            text = f"not measured ({self.reason or 'no figure'})"
        else:
            assert self.measured is not None
            text = (
                f"{_fmt(self.measured, self.unit)} (budget {self.op} {_fmt(self.limit, self.unit)})"
            )
        tail = f" — {self.detail}" if self.detail else ""
        return f"{tag} {self.name}: {text}{tail}"

    def to_json(self) -> dict[str, Any]:
        measured = self.measured
        if measured is not None and isinstance(measured, float) and math.isnan(measured):
            measured = None
        return {
            "name": self.name,
            "measured": measured,
            "op": self.op,
            "limit": self.limit,
            "unit": self.unit,
            "verdict": self.verdict,
            "passed": self.passed,
            "detail": self.detail,
            "reason": self.reason,
        }


def summary_line(budgets: list[Budget]) -> str:
    counts = {"pass": 0, "fail": 0, "not measured": 0}
    for budget in budgets:
        counts[budget.verdict] += 1
    return (
        f"budgets: {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['not measured']} not measured"
    )
