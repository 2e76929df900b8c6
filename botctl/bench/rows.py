"""A row of the bench report: the claim, the figure measured here, its budgets and raw data."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from botctl.bench.budgets import Budget

__all__ = ["Row", "failed_row", "ms"]


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


def failed_row(key: str, title: str, exc: BaseException, claim: str | None = None) -> Row:
    """A benchmark that raised: a row that says where, never a crash of the whole report."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
    return Row(key, title, claim, "not measured", error=f"{type(exc).__name__}: {exc}{at}")


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
