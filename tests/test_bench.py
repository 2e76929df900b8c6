"""``botctl bench``: the command as a real subprocess, and the pure pieces it is built from.

No timing is asserted anywhere: budgets are reported by the benchmarks, not checked by tests.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
from collections import Counter, OrderedDict
from dataclasses import replace
from typing import Any

import orjson
import pytest

from bot.history import ChatHistoryManager
from bot.percentile import percentile
from botctl.bench.budgets import Budget, evaluate, summary_line
from botctl.bench.common import ZipfSampler, rotated
from botctl.bench.dedup import concurrent_schedule, near_schedule
from botctl.bench.e2e import E2E_LOAD, E2EConfig, E2EResult, side_stats
from botctl.bench.e2e_rows import chains_row, openai_row, realistic_rows, ttft_row
from botctl.bench.history import (
    DictFloor,
    ListLRUHistory,
    build_variant,
    channel_ids,
    floor_ops,
    lru_dict_available,
    make_ops,
    steady_state,
)
from botctl.bench.local_ttft import ttft_budget
from botctl.bench.realistic import summarise_realistic
from botctl.bench.suite import E2E_VS_BARE, e2e_rows

# -- the list LRU reference ------------------------------------------------------------------------


class ModelLRU:
    """The textbook LRU the references are checked against."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: OrderedDict[str, list[str]] = OrderedDict()

    def get(self, key: str) -> list[str] | None:
        if key not in self.data:
            return None
        self.data.move_to_end(key)
        return self.data[key]

    def put(self, key: str, value: str) -> None:
        if key in self.data:
            self.data.move_to_end(key)
            self.data[key].append(value)
            return
        self.data[key] = [value]
        if len(self.data) > self.capacity:
            self.data.popitem(last=False)


def _random_ops(seed: int, n: int, keys: int) -> list[tuple[bool, str]]:
    rng = random.Random(seed)
    return [(rng.random() < 0.7, f"ch{rng.randrange(keys)}") for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_list_lru_behaves_like_an_lru(seed: int) -> None:
    model, lst = ModelLRU(8), ListLRUHistory(8, max_messages=100)
    for is_get, key in _random_ops(seed, 2000, 20):
        if is_get:
            expected = model.get(key)
            got = lst.get_history(key)
            assert [m["content"] for m in got] == (expected or [])
        else:
            model.put(key, f"m-{key}")
            lst.add_message(key, "user", f"m-{key}")
        assert lst.order == list(model.data)  # same recency order, least recent first
        assert set(lst.histories) == set(model.data)
        assert len(lst) <= 8


def test_list_lru_evicts_the_least_recently_used() -> None:
    lst = ListLRUHistory(2)
    lst.add_message("a", "user", "1")
    lst.add_message("b", "user", "2")
    assert lst.get_history("a")  # a is now the most recent
    lst.add_message("c", "user", "3")  # evicts b
    assert lst.get_history("b") == []
    assert [m["content"] for m in lst.get_history("a")] == ["1"]
    assert lst.evictions == 1


def test_list_lru_miss_creates_nothing_and_returns_fresh_dicts() -> None:
    lst = ListLRUHistory(4)
    assert lst.get_history("x") == [] and len(lst) == 0 and lst.misses == 1
    lst.add_message("x", "user", "hi")
    first = lst.get_history("x")
    first[0]["content"] = "changed"
    assert lst.get_history("x")[0]["content"] == "hi"


def test_variants_serve_the_same_hits_as_chat_history_manager() -> None:
    capacity = 50
    state = steady_state(capacity, make_ops(capacity, 2_000, seed=3))
    ops = floor_ops(capacity, state, make_ops(capacity, 3_000, seed=4))
    ours = build_variant("ours", capacity, state)
    assert isinstance(ours, ChatHistoryManager)
    lst = build_variant("list", capacity, state)
    floor = build_variant("floor", capacity, state)
    assert isinstance(floor, DictFloor)
    others: list[Any] = [lst]
    if lru_dict_available():
        others.append(build_variant("lru-dict", capacity, state))
    hits_before = ours.get_stats()["hits"]
    for is_get, channel, victim in ops:
        if is_get:
            expected = ours.get_history(channel)
            for other in others:
                assert other.get_history(channel) == expected
            assert floor.get_history(channel) == expected
        else:
            ours.add_message(channel, "user", "y")
            for other in others:
                other.add_message(channel, "user", "y")
            floor.add_message(channel, "user", "y", victim)
    hits = ours.get_stats()["hits"] - hits_before
    assert hits > 0
    assert all(other.hits == hits for other in others)
    assert floor.hits == hits
    assert len(floor.histories) == len(ours) == len(lst)


def test_steady_state_is_full_and_distinct() -> None:
    state = steady_state(100, make_ops(100, 5_000))
    assert len(state) == 100 == len(set(state))
    assert set(state) <= set(channel_ids(200))


def test_ops_mix_is_ninety_ten() -> None:
    ops = make_ops(1_000, 20_000, seed=1)
    gets = sum(1 for is_get, _ in ops if is_get) / len(ops)
    assert 0.88 < gets < 0.92


# -- Zipf ---------------------------------------------------------------------------------------


def test_zipf_sampler_follows_its_distribution() -> None:
    sampler = ZipfSampler(10, 1.0, seed=42)
    draws = sampler.sample(100_000)
    assert min(draws) >= 0 and max(draws) <= 9
    counts = Counter(draws)
    harmonic = sum(1 / k for k in range(1, 11))
    for rank in range(10):
        expected = (1 / (rank + 1)) / harmonic
        assert sampler.probability(rank) == pytest.approx(expected)
        assert counts[rank] / 100_000 == pytest.approx(expected, abs=0.01)
    assert counts[0] > counts[1] > counts[4] > counts[9]


def test_zipf_sampler_is_reproducible_and_validates() -> None:
    assert ZipfSampler(50, seed=1).sample(100) == ZipfSampler(50, seed=1).sample(100)
    assert ZipfSampler(50, seed=1).sample(100) != ZipfSampler(50, seed=2).sample(100)
    assert ZipfSampler(1).sample(5) == [0] * 5
    with pytest.raises(ValueError):
        ZipfSampler(0)
    with pytest.raises(ValueError):
        ZipfSampler(10, s=0)


def test_rotated_and_percentile() -> None:
    assert rotated([1, 2, 3], 0) == [1, 2, 3]
    assert rotated([1, 2, 3], 1) == [2, 3, 1]
    assert rotated([1, 2, 3], 5) == [3, 1, 2]
    assert rotated([], 3) == []
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0


# -- budgets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measured", "op", "limit", "verdict"),
    [
        (45.0, ">=", 40.0, "pass"),
        (40.0, ">=", 40.0, "pass"),
        (39.9, ">=", 40.0, "fail"),
        (1.2, "<=", 1.5, "pass"),
        (1.5, "<=", 1.5, "pass"),
        (1.51, "<=", 1.5, "fail"),
        (0.0196, "<=", 0.02, "pass"),
        (0.021, "<=", 0.02, "fail"),
        (1, "==", 1, "pass"),
        (2, "==", 1, "fail"),
        (697, "==", 697, "pass"),
        (None, ">=", 1.0, "not measured"),
        (math.nan, "<=", 1.0, "not measured"),
    ],
)
def test_budget_evaluation(measured: float | None, op: Any, limit: float, verdict: str) -> None:
    assert evaluate(measured, op, limit) == verdict
    budget = Budget("x", measured, op, limit)
    assert budget.verdict == verdict
    assert budget.passed is {"pass": True, "fail": False, "not measured": None}[verdict]
    tag = {"pass": "PASS", "fail": "FAIL", "not measured": "N/A"}[verdict]
    assert budget.line().startswith(tag)
    data = budget.to_json()
    assert data["verdict"] == verdict
    orjson.dumps(data)  # NaN never reaches JSON
    if verdict == "not measured":
        assert data["measured"] is None


def test_budget_line_says_why_not_measured_and_summary_counts() -> None:
    missing = Budget("py-spy", None, ">=", 0.95, reason="botctl profile is missing")
    assert "botctl profile is missing" in missing.line()
    budgets = [Budget("a", 1, "==", 1), Budget("b", 2, "==", 1), missing]
    assert summary_line(budgets) == "budgets: 1 passed, 1 failed, 1 not measured"


def _side(replies: float, offered: float, cpu_ms: float, kept_up: bool) -> dict[str, Any]:
    return {
        "replies_per_s": replies,
        "offered_per_s": offered,
        "p50_ms": 10.0,
        "p95_ms": 20.0,
        "p99_ms": 30.0,
        "cpu_ms_per_reply": cpu_ms,
        "errors": [],
        "kept_up": kept_up,
    }


def _e2e(bot: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    ratio = bot["replies_per_s"] / bare["replies_per_s"]
    return {
        "duration_s": 8.0,
        "rows": [
            {
                "duplicate_ratio": 0.0,
                "rate": 400.0,
                "bot": bot,
                "bare": bare,
                "ratio": ratio,
                "pair_ratios": [ratio],
                "cpu_per_reply_ratio": bare["cpu_ms_per_reply"] / bot["cpu_ms_per_reply"],
            }
        ],
    }


def test_e2e_budget_is_cpu_per_reply_even_when_both_sides_saturate() -> None:
    # Saturated, the two ratios agree; the budget reads CPU per reply either way.
    result = _e2e(_side(150, 400, 3.0, False), _side(380, 400, 1.0, False))
    (row,) = e2e_rows(result, quick=False)
    (budget,) = row.budgets
    assert budget.measured == pytest.approx(1 / 3)
    assert budget.verdict == "fail"
    assert "asyncio" in budget.name


def test_e2e_budget_uses_cpu_per_reply_when_the_bare_bot_kept_up() -> None:
    # The bare bot answered everything offered: its throughput is the offered rate, not its
    # capacity, so the throughput ratio (0.95) would flatter the bot; CPU per reply (0.4) does not.
    result = _e2e(_side(380, 400, 2.5, False), _side(400, 400, 1.0, True))
    (row,) = e2e_rows(result, quick=False)
    (budget,) = row.budgets
    assert budget.measured == pytest.approx(0.4)
    assert budget.verdict == "fail"
    assert "kept up" in (row.note or "")
    assert E2E_VS_BARE == 0.55


def test_e2e_row_shows_the_kernels_share_of_cpu_per_reply() -> None:
    def trial(replies: int, user_s: float, system_s: float) -> E2EResult:
        return E2EResult(
            "bot",
            100.0,
            100.0,
            5.0,
            replies,
            None,
            None,
            None,
            user_s + system_s,
            None,
            extra={"cpu": {"user_s": user_s, "system_s": system_s}},
        )

    bot = side_stats([trial(1000, 0.6, 0.3), trial(1000, 0.8, 0.5)])
    bare = side_stats([trial(1000, 0.3, 0.2)])
    assert bot["system_ms_per_reply"] == pytest.approx(0.4)
    assert bot["cpu_ms_per_reply"] == pytest.approx(1.1)
    result = _e2e({**bot, "p50_ms": 1.0}, {**bare, "p50_ms": 1.0})
    (row,) = e2e_rows(result, quick=False)
    assert "of which in the kernel 0.40 vs 0.20 ms" in row.measured
    # A trial from before the split (no "cpu") leaves the figure out rather than guessing it.
    assert (
        side_stats([E2EResult("bot", 1.0, 1.0, 1.0, 10, None, None, None, 0.1, None)])[
            "system_ms_per_reply"
        ]
        is None
    )


def test_uvloop_row_sits_beside_the_asyncio_budget_and_carries_none() -> None:
    result = _e2e(_side(380, 400, 1.6, False), _side(400, 400, 1.0, True))
    uv = _side(390, 400, 1.25, False)
    result["rows"][0].update(bot_uvloop=uv, uvloop_cpu_per_reply_ratio=0.8)
    rows = e2e_rows(result, quick=False)
    assert [r.key for r in rows] == ["e2e", "e2e_uvloop"]
    assert rows[1].budgets == []
    assert "0.80x" in rows[1].measured and "uvloop/asyncio 0.78x" in rows[1].measured
    (budget,) = rows[0].budgets
    assert budget.measured == pytest.approx(1 / 1.6)  # the asyncio bot, not the uvloop one
    assert "the bot on uvloop 0.80x" in budget.detail


def _variant(cpu_ms: float, **extra: Any) -> dict[str, Any]:
    side = _side(400, 400, cpu_ms, True)
    side["extra"] = [extra]
    return side


def test_openai_row_budgets_cpu_per_reply_and_checks_the_protocol() -> None:
    row = {
        "rate": 400.0,
        "bot": _variant(1.0),
        "variants": {"bot_openai": _variant(1.1, llm_calls_by_api={"ollama": 0, "openai": 9})},
    }
    (budget,) = openai_row(row).budgets
    assert budget.measured == pytest.approx(1.1) and budget.verdict == "pass"
    row["variants"]["bot_openai"]["extra"] = [{"llm_calls_by_api": {"ollama": 9, "openai": 0}}]
    (budget,) = openai_row(row).budgets
    assert budget.verdict == "not measured"  # the trials never reached /v1


def test_chains_row_counts_fetches_per_message() -> None:
    chains = _variant(1.2, bot={"messages": 1000, "chains_fetched": 0, "replies": 1000})
    row = {"rate": 400.0, "bot": _variant(1.0), "variants": {"bot_chains": chains}}
    ratio_budget, fetches = chains_row(row, 10).budgets
    assert ratio_budget.measured == pytest.approx(1.2) and ratio_budget.verdict == "pass"
    assert fetches.measured == 0 and fetches.verdict == "pass"
    chains["extra"] = [{"bot": {"messages": 100, "chains_fetched": 5}}]
    _ratio, fetches = chains_row(row, 10).budgets
    assert fetches.measured == pytest.approx(0.05) and fetches.verdict == "fail"


def test_realistic_rows_from_a_trial() -> None:
    extra = {
        "model": {"answer_ms": 1700.0, "first_token_ms": 200.0},
        "sandbox": {
            "messages_posted": 20,
            "rest_calls": 40,
            "bot_messages": 20,
            "bot_edits": 20,
            "typing_calls": 0,
            "rate_limited_total": 0,
            "rate_limited": {},
        },
        "unanswered": 0,
    }
    trial = E2EResult("bot", 1.0, 1.0, 20.0, 20, 1780.0, 1900.0, 2000.0, 0.2, 0.1, extra=extra)
    figures = summarise_realistic(1.0, 20.0, trial)
    assert figures["overhead_p50_ms"] == pytest.approx(80.0)
    assert figures["rest_per_answer"] == 2.0 and figures["edits_per_answer"] == 1.0
    (row,) = realistic_rows({"channels": 10, "rows": [figures]})
    overhead, limited = row.budgets
    assert overhead.verdict == "pass" and limited.verdict == "pass"
    figures = {**figures, "rate": 20.0, "rate_limited": 3}
    (row,) = realistic_rows({"channels": 10, "rows": [figures]})
    (limited,) = row.budgets  # the latency budget is at 1 q/s only
    assert limited.verdict == "fail"


def test_ttft_row_is_skipped_with_a_reason_without_the_runtime() -> None:
    result = {"available": False, "reason": "run `make local-model`"}
    row = ttft_row(result, ttft_budget(result))
    assert "make local-model" in row.measured
    (budget,) = row.budgets
    assert budget.verdict == "not measured" and "make local-model" in budget.line()


def test_e2e_config_crosses_to_the_child_as_json() -> None:
    config = E2EConfig(
        api="openai", drain=30.0, model_time=True, load=replace(E2E_LOAD, reply_depth=10)
    )
    assert E2EConfig.from_json(config.to_json()) == config


def test_extra_e2e_rows_can_carry_no_budget() -> None:
    result = _e2e(_side(50, 900, 9.0, False), _side(800, 900, 1.0, False))
    (row,) = e2e_rows(result, quick=False, budget=False)
    assert row.budgets == []


# -- dedup schedules ----------------------------------------------------------------------------


def test_concurrent_schedule_has_thirty_percent_duplicates() -> None:
    arrivals, distinct = concurrent_schedule(1000, 0.3, rate=1000.0)
    assert len(arrivals) == 1000
    assert len({a.question for a in arrivals}) == distinct
    assert 0.25 < (1000 - distinct) / 1000 < 0.35
    # Duplicates arrive together: every question is asked at one moment only.
    times: dict[str, set[float]] = {}
    for a in arrivals:
        times.setdefault(a.question, set()).add(a.at)
    assert all(len(t) == 1 for t in times.values())


def test_near_schedule_repeats_after_the_gap_within_the_window() -> None:
    arrivals, distinct = near_schedule(1000, 0.3, rate=1000.0, min_gap=0.3, max_gap=2.0)
    assert len(arrivals) == 1000
    assert len({a.question for a in arrivals}) == distinct
    assert 0.25 < (1000 - distinct) / 1000 < 0.35
    first: dict[str, float] = {}
    for a in arrivals:
        if a.question in first:
            assert 0.3 <= a.at - first[a.question] <= 2.0
        else:
            first[a.question] = a.at


# -- the command --------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(150)
def test_bench_quick_json_prints_one_object_with_rows_and_budgets(
    botctl_cmd: list[str], clean_env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botctl", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=140,
        env=clean_env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = orjson.loads(proc.stdout)  # the whole of stdout is one JSON object
    assert isinstance(data, dict)
    assert data["quick"] is True
    keys = {row["key"] for row in data["rows"]}
    assert {"dedup_burst", "dedup_identical", "history", "metrics", "e2e"} <= keys
    claims = {row["key"]: row["claim"] for row in data["rows"]}
    assert claims["dedup_burst"] == "20–30 % fewer LLM calls"
    assert claims["history"] == "10x faster history lookups at 100+ channels"
    assert claims["metrics"] == "1 write per 50 events"
    assert claims["dedup_identical"] == "one API call for duplicates"
    for row in data["rows"]:
        assert row["measured"]
        for budget in row["budgets"]:
            assert budget["verdict"] in ("pass", "fail", "not measured")
            assert budget["op"] in (">=", "<=", "==")
    assert len(data["budgets"]) == sum(len(row["budgets"]) for row in data["rows"])
    counted = data["budgets_passed"] + data["budgets_failed"] + data["budgets_not_measured"]
    assert counted == len(data["budgets"])
    # Counts, not timings: dedup makes one upstream call for K identical requests.
    identical = next(b for b in data["budgets"] if "K identical" in b["name"])
    assert identical["verdict"] == "pass"
    assert any("--quick" in note for note in data["notes"])
