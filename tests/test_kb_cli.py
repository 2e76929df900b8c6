"""``botctl kb`` as real subprocesses: round trip, JSON output, user errors, hybrid through an
embeddings server on loopback, and a ``kb add`` writing while another process searches (WAL)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _kb_embed import EmbedServer

from bot.kb import KnowledgeBase, add_paths
from bot.kb import db as kb_db
from bot.kb.chunker import split_lines

CORPUS = Path(__file__).parent / "data" / "kb"

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copytree(CORPUS, tmp_path / "docs")
    return tmp_path


def kb(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botctl", "kb", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_add_search_list_remove(workdir: Path, clean_env: dict[str, str]) -> None:
    (workdir / "docs" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (workdir / "docs" / "empty.md").write_bytes(b"")
    added = kb(workdir, clean_env, "add", "docs")
    assert added.returncode == 0, added.stderr
    assert "profiles/kb.sqlite: 6 added, 0 updated, 0 unchanged, 2 skipped" in added.stdout
    assert "skipped docs/logo.png: binary" in added.stdout
    assert "skipped docs/empty.md: empty" in added.stdout
    assert (workdir / "profiles" / "kb.sqlite").is_file()

    again = kb(workdir, clean_env, "add", "docs")
    assert "0 added, 0 updated, 6 unchanged" in again.stdout and "0 chunks written" in again.stdout

    found = kb(
        workdir,
        clean_env,
        "search",
        "How can I reset a conversation in a channel?",
        "-k",
        "2",
        "--json",
    )
    assert found.returncode == 0 and found.stderr == ""
    hits = json.loads(found.stdout)  # stdout is the JSON document and nothing else
    assert len(hits) == 2 and set(hits[0]) == {"source", "lines", "score", "text"}
    assert (hits[0]["source"], hits[0]["lines"]) == ("docs/faq.rst", [1, 9])
    assert hits[0]["text"].startswith("==========================\nFrequently asked questions")

    human = kb(workdir, clean_env, "search", "東京のミートアップ")
    assert "1. docs/community/cafe.md:6-8" in human.stdout and "毎月第一土曜日" in human.stdout

    listed = json.loads(kb(workdir, clean_env, "list", "--json").stdout)
    assert [f["path"] for f in listed["files"]] == [
        "docs/community/api.html",
        "docs/community/cafe.md",
        "docs/community/rules.txt",
        "docs/cooldown.py",
        "docs/faq.rst",
        "docs/guide.md",
    ]
    assert listed["chunks"] == 18 and listed["embed_model"] is None

    removed = kb(workdir, clean_env, "remove", "docs/community")
    assert removed.returncode == 0 and "removed 3 file(s) (8 chunks)" in removed.stdout
    gone = json.loads(kb(workdir, clean_env, "search", "self-promotion", "--json").stdout)
    assert [h["source"] for h in gone if "community" in h["source"]] == []


def test_the_kb_option_and_env_choose_the_file(workdir: Path, clean_env: dict[str, str]) -> None:
    env = {**clean_env, "BOT_KB": str(workdir / "from-env.sqlite")}
    assert kb(workdir, env, "add", "docs/faq.rst").returncode == 0
    assert (workdir / "from-env.sqlite").is_file()
    flag = kb(workdir, env, "add", "docs/guide.md", "--kb", "flag.sqlite")
    assert flag.returncode == 0 and (workdir / "flag.sqlite").is_file()
    listed = json.loads(kb(workdir, env, "list", "--json").stdout)
    assert [f["path"] for f in listed["files"]] == ["docs/faq.rst"]


def test_user_errors_are_one_line_and_exit_1(workdir: Path, clean_env: dict[str, str]) -> None:
    assert "no knowledge base at profiles/kb.sqlite" in one_error_line(
        kb(workdir, clean_env, "search", "reset")
    )
    (workdir / "notes.txt").write_text("not a database\n" * 50, "utf-8")
    assert "not a knowledge base (not an SQLite file)" in one_error_line(
        kb(workdir, clean_env, "list", "--kb", "notes.txt")
    )
    other = workdir / "app.db"
    conn = kb_db.driver().connect(str(other))
    conn.execute("CREATE TABLE users(id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    assert "not a botctl knowledge base" in one_error_line(
        kb(workdir, clean_env, "add", "docs", "--kb", "app.db")
    )
    assert other.read_bytes() == before
    # A path that does not exist: one line, and no knowledge base created for nothing.
    assert "no such file or folder: docs/nope; nothing was indexed" in one_error_line(
        kb(workdir, clean_env, "add", "docs/faq.rst", "docs/nope", "--kb", "typo.sqlite")
    )
    assert not (workdir / "typo.sqlite").exists()
    assert kb(workdir, clean_env, "add", "docs/faq.rst").returncode == 0
    assert "nothing in profiles/kb.sqlite matches docs/nope.md" in one_error_line(
        kb(workdir, clean_env, "remove", "docs/nope.md")
    )


@pytest.mark.parametrize(
    "args",
    [("search",), ("add",), ("search", "x", "-k", "0"), ("add", "docs", "--batch-size", "0")],
)
def test_bad_usage_exits_2(workdir: Path, clean_env: dict[str, str], args: tuple[str, ...]) -> None:
    assert kb(workdir, clean_env, *args).returncode == 2


@pytest.fixture
def server() -> Iterator[EmbedServer]:
    running = EmbedServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _vectors_loadable() -> bool:
    conn = kb_db.driver().connect(":memory:")
    try:
        return kb_db.load_vectors(conn) is None
    finally:
        conn.close()


@pytest.mark.skipif(not _vectors_loadable(), reason="sqlite-vec cannot be loaded here")
def test_hybrid_search_through_an_embeddings_server(
    workdir: Path, clean_env: dict[str, str], server: EmbedServer
) -> None:
    added = kb(
        workdir, clean_env, "add", "docs", "--embed-model", "concepts", "--llm-url", server.url
    )
    assert added.returncode == 0, added.stderr
    assert f"embeddings: concepts at {server.url}: 18 chunk(s) embedded" in added.stdout
    # The question shares no word with the documents; the recorded server embeds it.
    hits = json.loads(kb(workdir, clean_env, "search", "throttle", "--json").stdout)
    assert hits[0]["source"] == "docs/cooldown.py"
    listed = json.loads(kb(workdir, clean_env, "list", "--json").stdout)
    assert (listed["embed_model"], listed["embedded_chunks"]) == ("concepts", 18)
    # A later add without --embed-model keeps the vectors complete with the recorded model.
    (workdir / "docs" / "pause.md").write_text("# Pause\n\nwait a little\n", "utf-8")
    later = kb(workdir, clean_env, "add", "docs")
    assert f"embeddings: concepts at {server.url}: 1 chunk(s) embedded" in later.stdout

    server.stop()
    down = kb(workdir, clean_env, "search", "How can I reset a conversation?", "--json")
    assert down.returncode == 0
    assert down.stderr.startswith("warning: lexical search only: cannot reach")
    assert json.loads(down.stdout)[0]["source"] == "docs/faq.rst"
    (workdir / "docs" / "new.md").write_text("# New\n\nfresh page\n", "utf-8")
    partial = kb(workdir, clean_env, "add", "docs", "--embed-model", "concepts")
    assert partial.returncode == 0 and "1 added" in partial.stdout
    assert "warning: embeddings incomplete: cannot reach" in partial.stderr


def _version(i: int, v: int) -> str:
    """File ``i`` of the concurrency corpus, version ``v``: v2 moves every line and adds one."""
    intro = "" if v == 1 else f"Revised intro for topic {i}.\n\n"
    sections = "\n".join(
        f"## Part {p}\n\nalpha beta gamma topic{i % 13} part{p} version{v} "
        + " ".join(f"word{(i * 7 + p * 3 + k) % 97}" for k in range(40))
        + "\n"
        for p in range(6)
    )
    return f"# Topic {i}\n\n{intro}{sections}"


def test_an_add_in_another_process_never_disturbs_a_reader(
    tmp_path: Path, clean_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    count = 600
    lines: dict[tuple[str, int], list[str]] = {}
    for i in range(count):
        for v in (1, 2):
            lines[(f"many/doc{i:04d}.md", v)] = split_lines(_version(i, v))
        (folder / f"doc{i:04d}.md").write_text(_version(i, 1), "utf-8")
    path = tmp_path / "kb.sqlite"
    monkeypatch.chdir(tmp_path)
    with KnowledgeBase.open(path, create=True) as writer:
        add_paths(writer.conn, [Path("many")])
    for i in range(count):
        (folder / f"doc{i:04d}.md").write_text(_version(i, 2), "utf-8")

    proc = subprocess.Popen(
        [sys.executable, "-m", "botctl", "kb", "add", "many", "--kb", str(path)],
        cwd=tmp_path,
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    searches_while_writing = 0
    deadline = time.monotonic() + 90
    with KnowledgeBase.open(path) as reader:
        while True:
            running = proc.poll() is None
            for hit in reader.search(f"alpha topic{len(seen) % 13} gamma", 10):
                text_lines = hit.text.split("\n")
                versions = [
                    v
                    for v in (1, 2)
                    if lines[(hit.source, v)][hit.start - 1 : hit.end] == text_lines
                ]
                assert versions, f"{hit.location} matches neither version of its file"
                seen.update(versions)
            per_file = {f.path: f.chunks for f in reader.stats().files}
            assert set(per_file.values()) <= {6, 7}  # v1: a chunk a part; v2: + the intro
            if not running:
                break
            searches_while_writing += 1
            assert time.monotonic() < deadline, "the add did not finish within 90 s"
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and err == "", err
        assert f"0 added, {count} updated" in out
        final = reader.search("revised intro", 3)
        assert final and all("Revised intro" in h.text for h in final)
    assert searches_while_writing > 0 and seen == {1, 2}
