"""The knowledge base in-process: ranking, incremental add, remove, skipped files, bad files."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.kb import KBError, KnowledgeBase, add_paths, remove_keys
from bot.kb.chunker import split_lines
from bot.kb.db import _probe_fts5, driver
from bot.kb.query import estimate_df, idf, match_expression, plan, rrf, terms

CORPUS = Path(__file__).parent / "data" / "kb"

# (question, the chunk that answers it)
QUESTIONS = [
    ("How do I install botctl from source?", "docs/guide.md", 6, 16),
    ("How can I reset a conversation?", "docs/faq.rst", 1, 9),
    ("Where is self-promotion allowed?", "docs/community/rules.txt", 1, 11),
    ("What does the /stats endpoint return?", "docs/community/api.html", 11, 18),
    ("How long is the default cooldown between questions?", "docs/cooldown.py", 1, 7),
    ("How do I write a persona?", "docs/faq.rst", 17, 32),
    ("Which temperature makes answers steadier?", "docs/guide.md", 24, 27),
    ("Why does the bot not answer in my channel?", "docs/faq.rst", 11, 15),
    ("What is the history_limit setting?", "docs/guide.md", 18, 22),
    ("東京のミートアップ", "docs/community/cafe.md", 6, 8),
    ("cafe creme", "docs/community/cafe.md", 1, 4),
    ("is the gateway healthy?", "docs/community/api.html", 20, 23),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(CORPUS, tmp_path / "docs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def kb(workdir: Path) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(workdir / "kb.sqlite", create=True) as store:
        report = add_paths(store.conn, [Path("docs")])
        assert len(report.added) == 6 and not report.skipped
        yield store


def chunk_rows(store: KnowledgeBase) -> list[tuple[int, ...]]:
    return store.conn.execute(
        "SELECT id, file_id, start_line, end_line FROM chunks ORDER BY id"
    ).fetchall()


def fts_ok(store: KnowledgeBase) -> None:
    # FTS5 checks its index against the content it was built from (the chunks).
    store.conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")


@pytest.mark.parametrize(("question", "source", "start", "end"), QUESTIONS)
def test_each_question_ranks_its_file_and_lines_first(
    kb: KnowledgeBase, question: str, source: str, start: int, end: int
) -> None:
    hits = kb.search(question, 3)
    assert hits, question
    assert (hits[0].source, hits[0].start, hits[0].end) == (source, start, end)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize(("question", "source", "start", "end"), QUESTIONS)
def test_the_bounded_plan_ranks_the_same_first_chunk(
    kb: KnowledgeBase, question: str, source: str, start: int, end: int
) -> None:
    # With the gate at one row, every term but the rarest is a boost: the path a 100k-chunk KB takes.
    kb.gate_rows = 1
    hits = kb.search(question, 3)
    assert (hits[0].source, hits[0].start, hits[0].end) == (source, start, end)


def test_every_chunk_is_exactly_its_files_lines(kb: KnowledgeBase) -> None:
    rows = kb.conn.execute(
        "SELECT f.path, c.start_line, c.end_line, c.text FROM chunks c JOIN files f ON f.id = c.file_id"
    ).fetchall()
    assert len(rows) >= 18
    for path, start, end, text in rows:
        lines = split_lines(Path(path).read_text("utf-8"))
        assert 1 <= start <= end <= len(lines)
        assert text == "\n".join(lines[start - 1 : end])


def test_an_html_hit_reads_as_its_text_not_its_markup(kb: KnowledgeBase) -> None:
    # The chunk stores the exact lines; what a search shows and a prompt carries is the text.
    (hit,) = [h for h in kb.search("What does the /stats endpoint return?", 3) if h.start == 11]
    assert hit.source == "docs/community/api.html" and hit.end == 18
    assert "<" not in hit.text and "&amp;" not in hit.text
    assert "GET /stats returns the dedup & history counters as JSON:" in hit.text.splitlines()
    assert "tracking-pixel" not in " ".join(h.text for h in kb.search("analytics tracking", 5))


@pytest.mark.parametrize(
    "question",
    [
        'cooldown" OR title:*',
        "NOT",
        "AND OR NOT NEAR",
        '"',
        "(((",
        "NEAR(reset conversation, 2)",
        "^reset",
        "body:reset -conversation",
        "reset*",
        "-",
        "",
        "   ",
        "{title body}: reset",
    ],
)
def test_question_syntax_is_never_fts5_syntax(kb: KnowledgeBase, question: str) -> None:
    hits = kb.search(question, 5)
    assert isinstance(hits, list)
    if "reset" in question:
        assert hits and hits[0].source == "docs/faq.rst"


def test_terms_drop_stop_words_and_keep_compounds() -> None:
    assert terms("How do I reset the bot's history?") == ["reset", "bot", "history"]
    assert terms("the of and") == ["the", "of", "and"]  # nothing else left: keep them
    assert terms("Self-promotion, per-user") == [
        "self",
        "promotion",
        "per",
        "user",
        "self promotion",
        "per user",
    ]
    assert match_expression(['a"b', "c d"]) == '"a""b" OR "c d"'


def test_plan_gates_on_rare_terms_and_boosts_common_ones_by_idf() -> None:
    chosen = plan(
        {"rare": 10.0, "mid": 400.0, "common": 600.0, "everywhere": 90_000.0}, 100_000, 500
    )
    assert chosen.gate == ["rare", "mid"]
    assert [term for term, _ in chosen.boost] == ["common", "everywhere"]
    assert chosen.boost[0][1] == pytest.approx(idf(600.0, 100_000))
    assert chosen.boost[0][1] > chosen.boost[1][1] > 0
    # The rarest term gates even when it alone is past the budget.
    assert plan({"a": 5000.0, "b": 9000.0}, 10_000, 500).gate == ["a"]


def test_estimate_df_is_exact_below_the_probe_and_scaled_above() -> None:
    assert estimate_df(42, 9_000, 1, 10_000, 501) == 42
    # 501 matches within the first 1,000 of 10,000 ids: about half the chunks.
    assert estimate_df(501, 1_000, 1, 10_000, 501) == pytest.approx(5010)


def test_rrf_rewards_agreement_between_rankings() -> None:
    fused = rrf([[1, 2, 3], [3, 1, 4]])
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_readding_unchanged_files_writes_nothing(kb: KnowledgeBase) -> None:
    before_rows = chunk_rows(kb)
    before_files = kb.conn.execute("SELECT * FROM files ORDER BY id").fetchall()
    changes = kb.conn.total_changes
    report = add_paths(kb.conn, [Path("docs")])
    assert report.unchanged == 6 and report.chunks_written == 0
    assert not report.added and not report.updated
    assert kb.conn.total_changes == changes  # not one row inserted, updated or deleted
    assert chunk_rows(kb) == before_rows
    assert kb.conn.execute("SELECT * FROM files ORDER BY id").fetchall() == before_files


def test_a_changed_file_has_its_chunks_replaced_and_the_others_kept(kb: KnowledgeBase) -> None:
    rules = Path("docs/community/rules.txt")
    others = [r for r in chunk_rows(kb) if r[1] != _file_id(kb, "docs/community/rules.txt")]
    rules.write_text(rules.read_text("utf-8").replace("#showcase", "#gallery"), "utf-8")
    report = add_paths(kb.conn, [Path("docs")])
    assert report.updated == ["docs/community/rules.txt"] and report.unchanged == 5
    assert [h.source for h in kb.search("showcase", 5)] == []
    assert kb.search("gallery", 1)[0].source == "docs/community/rules.txt"
    assert [r for r in chunk_rows(kb) if r[1] != _file_id(kb, "docs/community/rules.txt")] == others
    fts_ok(kb)


def _file_id(kb: KnowledgeBase, path: str) -> int:
    return int(kb.conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()[0])


def test_remove_drops_a_file_or_a_whole_folder(kb: KnowledgeBase) -> None:
    removed, chunks, unmatched = remove_keys(kb.conn, ["docs/community", "docs/nothing.md"])
    assert sorted(removed) == [
        "docs/community/api.html",
        "docs/community/cafe.md",
        "docs/community/rules.txt",
    ]
    assert chunks == 4 + 3 + 1 and unmatched == ["docs/nothing.md"]
    assert not [h for h in kb.search("self-promotion gateway café", 10) if "community" in h.source]
    removed, _, _ = remove_keys(kb.conn, ["docs/guide.md"])
    assert removed == ["docs/guide.md"]
    assert kb.stats().chunks == 3 + 3  # faq.rst and cooldown.py are left
    fts_ok(kb)


def test_a_folder_prefix_does_not_match_a_sibling(kb: KnowledgeBase) -> None:
    Path("docs-old").mkdir()
    Path("docs-old/x.md").write_text("# Old\n\nsibling text\n", "utf-8")
    add_paths(kb.conn, [Path("docs-old")])
    removed, _, _ = remove_keys(kb.conn, ["docs"])
    assert "docs-old/x.md" not in removed and len(removed) == 6


def test_empty_binary_and_undecodable_files_are_skipped_with_a_reason(workdir: Path) -> None:
    extra = workdir / "extra"
    extra.mkdir()
    (extra / "empty.txt").write_bytes(b"")
    (extra / "blank.md").write_text("  \n\n\t\n", "utf-8")
    (extra / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (extra / "blob.dat").write_bytes(bytes(range(128, 256)) * 4)
    (extra / "latin1.txt").write_bytes("café au lait, très bon\n".encode("latin-1"))
    (extra / "settings.cfg").write_text("[bot]\ncooldown = 3\n", "utf-8")
    (extra / ".hidden.md").write_text("# hidden\n", "utf-8")
    with KnowledgeBase.open(workdir / "kb.sqlite", create=True) as store:
        report = add_paths(store.conn, [extra, workdir / "missing.md"])
        assert dict(report.skipped) == {
            "extra/blank.md": "empty",
            "extra/blob.dat": "binary (not UTF-8 text)",
            "extra/empty.txt": "empty",
            "extra/logo.png": "binary",
        }
        assert sorted(report.added) == ["extra/latin1.txt", "extra/settings.cfg"]
        assert report.notes == [f"{workdir / 'missing.md'}: no such file or folder"]
        assert "lait" in store.search("lait", 1)[0].text
        # A file that becomes empty leaves the KB.
        (extra / "settings.cfg").write_bytes(b"")
        report = add_paths(store.conn, [extra])
        assert report.dropped == ["extra/settings.cfg"]
        assert store.search("cooldown", 5) == []


def test_files_gone_from_an_added_folder_are_reported(kb: KnowledgeBase) -> None:
    Path("docs/cooldown.py").unlink()
    report = add_paths(kb.conn, [Path("docs")])
    assert report.gone == ["docs/cooldown.py"]


def test_paths_outside_the_current_directory_are_stored_absolute(
    kb: KnowledgeBase, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "notes.md"
    elsewhere.write_text("# Notes\n\nzebra crossing\n", "utf-8")
    add_paths(kb.conn, [elsewhere])
    assert kb.search("zebra", 1)[0].source == str(elsewhere.resolve())


def test_unicode_text_is_stored_and_returned_intact(kb: KnowledgeBase) -> None:
    hit = kb.search("thé glacé", 1)[0]
    assert hit.source == "docs/community/cafe.md"
    assert "☕" in hit.text and "Ça marche" in hit.text
    assert kb.search("émojis sondages", 1)[0].start == 10


def test_the_kb_file_itself_is_never_indexed(workdir: Path) -> None:
    with KnowledgeBase.open(workdir / "kb.sqlite", create=True) as store:
        report = add_paths(store.conn, [workdir], exclude=[workdir / "kb.sqlite"])
        assert not [n for n, _ in report.skipped if n.startswith("kb.sqlite")]
        assert len(report.added) == 6


def test_a_reader_cannot_write(kb: KnowledgeBase, workdir: Path) -> None:
    with KnowledgeBase.open(workdir / "kb.sqlite") as reader:
        assert reader.search("persona", 1)
        with pytest.raises(driver().OperationalError, match="readonly"):
            reader.conn.execute("DELETE FROM files")


def _one_line(exc: KBError) -> str:
    message = str(exc)
    assert "\n" not in message and message
    return message


def test_a_missing_kb_is_a_clear_error_for_readers(tmp_path: Path) -> None:
    with pytest.raises(KBError) as info:
        KnowledgeBase.open(tmp_path / "nope.sqlite")
    assert "no knowledge base at" in _one_line(info.value)
    assert not (tmp_path / "nope.sqlite").exists()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.sqlite"
    bogus.write_text("just some text, not a database\n" * 20, "utf-8")
    for create in (False, True):
        with pytest.raises(KBError) as info:
            KnowledgeBase.open(bogus, create=create)
        assert "not a knowledge base (not an SQLite file)" in _one_line(info.value)


def test_another_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users(name) VALUES ('ada')")
    conn.close()
    before = other.read_bytes()
    for create in (False, True):
        with pytest.raises(KBError) as info:
            KnowledgeBase.open(other, create=create)
        assert "not a botctl knowledge base" in _one_line(info.value)
    assert other.read_bytes() == before


def test_a_corrupt_kb_is_one_line(kb: KnowledgeBase, workdir: Path) -> None:
    path = workdir / "kb.sqlite"
    kb.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    data[page:] = b"\xa5" * (len(data) - page)  # every page but the first (the schema) garbled
    path.write_bytes(bytes(data))
    Path(f"{path}-wal").unlink(missing_ok=True)
    Path(f"{path}-shm").unlink(missing_ok=True)
    with pytest.raises(KBError) as info, KnowledgeBase.open(path) as store:
        store.search("persona", 3)
    assert "corrupt" in _one_line(info.value)


def test_a_kb_from_a_newer_botctl_is_refused(kb: KnowledgeBase, workdir: Path) -> None:
    kb.conn.execute("UPDATE kb_meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(KBError) as info:
        KnowledgeBase.open(workdir / "kb.sqlite")
    assert "newer botctl" in _one_line(info.value)


def test_a_sqlite_without_fts5_is_one_clear_line() -> None:
    class NoFts5:
        def execute(self, sql: str, *args: object) -> object:
            if "fts5" in sql:
                raise driver().OperationalError("no such module: fts5")
            return sqlite3.connect(":memory:").execute(sql, *args)

    with pytest.raises(KBError) as info:
        _probe_fts5(NoFts5())  # type: ignore[arg-type]
    assert "lacks FTS5" in _one_line(info.value)
