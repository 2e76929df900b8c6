"""Tests of ``botctl.analyze.stats`` on real cProfile output of two different workloads."""

from __future__ import annotations

import cProfile
import json
import marshal
import re
from pathlib import Path
from typing import Any

import pytest

from botctl.analyze.stats import (
    ProfileError,
    as_sort_key,
    diff_profiles,
    load_profile,
    profile_totals,
    top_functions,
)


def shared_step(n: int) -> int:
    return sum(i * i for i in range(n))


def old_only_helper() -> list[int]:
    return sorted(range(2000), key=lambda x: -x)


def new_only_helper() -> str:
    return json.dumps({"k": list(range(500))})


def old_workload() -> None:
    for _ in range(3):
        shared_step(2000)
    old_only_helper()


def new_workload() -> None:
    for _ in range(5):
        shared_step(4000)
    new_only_helper()


def write_profiles(directory: Path) -> tuple[Path, Path]:
    """``new.prof`` and ``old.prof`` from the two workloads above."""
    paths = []
    for name, workload in (("new", new_workload), ("old", old_workload)):
        profiler = cProfile.Profile()
        profiler.runcall(workload)
        path = directory / f"{name}.prof"
        profiler.dump_stats(path)
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_profiles(tmp_path_factory.mktemp("prof"))


def test_top_functions_sorted_limited_and_filtered(profiles: tuple[Path, Path]) -> None:
    stats = load_profile(profiles[0])
    rows = top_functions(stats, sort="cumulative", limit=5)
    assert len(rows) == 5
    assert [r.cumtime for r in rows] == sorted((r.cumtime for r in rows), reverse=True)
    assert rows[0].function == "new_workload"

    by_calls = top_functions(stats, sort="ncalls", limit=3)
    assert by_calls[0].function == "<genexpr>"
    assert by_calls[0].ncalls == 5 * 4001
    assert [r.ncalls for r in by_calls] == sorted((r.ncalls for r in by_calls), reverse=True)

    by_own = top_functions(stats, sort="tottime", limit=0)
    assert [r.tottime for r in by_own] == sorted((r.tottime for r in by_own), reverse=True)
    assert len(by_own) == profile_totals(stats).functions

    shared = top_functions(stats, filter_regex="shared_step")
    assert [r.function for r in shared] == ["shared_step"]
    row = shared[0]
    assert row.ncalls == row.primitive_calls == 5
    assert row.file == __file__
    assert row.line == shared_step.__code__.co_firstlineno
    assert row.tottime_per_call == pytest.approx(row.tottime / 5)
    assert row.cumtime_per_call == pytest.approx(row.cumtime / 5)
    assert row.location.endswith(f"({row.function})")

    # The filter also matches the file name.
    by_file = top_functions(stats, filter_regex=re.compile(r"json[/\\]"), limit=0)
    assert by_file and all("json" in r.file for r in by_file)
    assert top_functions(stats, filter_regex="no_such_thing_anywhere") == []


def test_totals(profiles: tuple[Path, Path]) -> None:
    totals = profile_totals(load_profile(profiles[0]))
    assert totals.total_calls >= 5 * 4001
    assert totals.primitive_calls <= totals.total_calls
    assert totals.total_time > 0


def test_diff_new_vanished_changed(profiles: tuple[Path, Path]) -> None:
    new, old = (load_profile(p) for p in profiles)
    rows = diff_profiles(new, old)
    by_name = {r.function: r for r in rows if r.file == __file__}

    assert by_name["new_only_helper"].status == "new"
    assert by_name["new_only_helper"].ncalls_old == 0
    assert by_name["old_only_helper"].status == "vanished"
    assert by_name["old_only_helper"].ncalls_new == 0
    assert by_name["old_only_helper"].cumtime_delta < 0
    step = by_name["shared_step"]
    assert step.status == "changed"
    assert (step.ncalls_old, step.ncalls_new, step.ncalls_delta) == (3, 5, 2)
    assert {"new", "vanished", "changed"} <= {r.status for r in rows}

    changes = [abs(r.cumtime_delta) for r in rows]
    assert changes == sorted(changes, reverse=True)
    by_calls = [abs(r.ncalls_delta) for r in diff_profiles(new, old, sort="ncalls")]
    assert by_calls == sorted(by_calls, reverse=True)

    limited = diff_profiles(new, old, limit=2, filter_regex="helper")
    assert len(limited) == 2
    assert {r.function for r in limited} == {"new_only_helper", "old_only_helper"}
    assert json.loads(json.dumps(limited[0].to_json()))["status"] in ("new", "vanished")


def test_diff_keys_by_file_and_function_not_line(tmp_path: Path) -> None:
    """The same function moved to another line is one changed row; colliding entries add up."""
    f = "/src/app.py"
    Table = dict[tuple[str, int, str], tuple[int, int, float, float, dict[Any, Any]]]
    old: Table = {
        (f, 10, "handler"): (4, 4, 0.4, 1.0, {}),
        (f, 50, "<lambda>"): (1, 1, 0.1, 0.1, {}),
        (f, 60, "<lambda>"): (2, 2, 0.2, 0.2, {}),
    }
    new: Table = {
        (f, 12, "handler"): (6, 6, 0.5, 1.5, {}),
        (f, 50, "<lambda>"): (1, 1, 0.1, 0.1, {}),
        (f, 70, "<lambda>"): (2, 2, 0.2, 0.2, {}),
    }
    paths = []
    for name, table in (("new", new), ("old", old)):
        path = tmp_path / f"{name}.prof"
        path.write_bytes(marshal.dumps(table))
        paths.append(path)
    rows = diff_profiles(load_profile(paths[0]), load_profile(paths[1]))
    assert len(rows) == 2
    handler, lam = rows
    assert handler.function == "handler" and handler.status == "changed"
    assert handler.lines == (10, 12)
    assert handler.cumtime_delta == pytest.approx(0.5)
    assert lam.function == "<lambda>" and lam.status == "unchanged"
    assert lam.ncalls_new == lam.ncalls_old == 3
    assert lam.lines == (50, 60, 70)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is not a profile\n", "unreadable data"),
        (marshal.dumps([1, 2, 3]), "unexpected content"),
        (marshal.dumps({("a", 1, "f"): (1, 2)}), "unexpected content"),
    ],
)
def test_corrupt_profiles(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.prof"
    path.write_bytes(content)
    with pytest.raises(ProfileError, match=re.escape(f"{path} is not a pstats profile ({reason}")):
        load_profile(path)


def test_missing_profile_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(tmp_path / "absent.prof")
    with pytest.raises(ProfileError, match="directory"):
        load_profile(tmp_path)


def test_sort_keys() -> None:
    assert as_sort_key("tottime") == "tottime"
    with pytest.raises(ValueError, match="cumulative, tottime, ncalls"):
        as_sort_key("name")
