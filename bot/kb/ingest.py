"""Writing the knowledge base: incremental ``add`` by content hash, and ``remove``.

A file whose SHA-256 matches what the KB holds costs a read and a hash and writes nothing. A new or
changed file is chunked, then its old chunks (index entries and vectors included) are replaced by
the new ones in ONE transaction, so a reader sees the old version or the new one, never a mix.
Chunk ids are never reused (``AUTOINCREMENT``), so a vector left behind by a writer that could not
load sqlite-vec can never be mistaken for a newer chunk's.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot.kb.chunker import chunk_lines, kind_of, split_lines
from bot.kb.db import write_transaction
from bot.kb.sources import MAX_FILE_BYTES, Candidate, decode, walk

__all__ = ["AddReport", "Progress", "add_paths", "has_vectors", "optimize", "remove_keys"]

# (bytes done, bytes in all, the file being read)
Progress = Callable[[int, int, str], None]

_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


@dataclass(slots=True)
class AddReport:
    """What an add did, file by file."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)
    notes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # in the KB, now empty or binary
    gone: list[str] = field(default_factory=list)  # in the KB under an added folder, not on disk
    chunks_written: int = 0
    bytes_read: int = 0
    seconds: float = 0.0


def has_vectors(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'chunks_vec'"
    ).fetchone()
    return row is not None


def add_paths(
    conn: sqlite3.Connection,
    paths: Iterable[Path],
    *,
    exclude: Iterable[Path] = (),
    vectors_loaded: bool = False,
    progress: Progress | None = None,
) -> AddReport:
    """Index the files under ``paths`` (never ``exclude``, the KB, nor its WAL files);
    ``vectors_loaded``: sqlite-vec is loaded in ``conn``, so vectors of replaced chunks are
    deleted with them (else they are left behind, unreachable)."""
    started = time.perf_counter()
    report = AddReport()
    given = list(paths)
    candidates: list[tuple[Candidate, int]] = []
    # The KB's own file and its sidecars, whatever folder is added.
    own = [Path(f"{p}{suffix}") for p in exclude for suffix in ("", "-wal", "-shm", "-journal")]
    for item in walk(given, own):
        if isinstance(item, str):
            report.notes.append(item)
            continue
        try:
            candidates.append((item, item.path.stat().st_size))
        except OSError as exc:
            report.skipped.append((item.key, f"unreadable: {exc.strerror or exc}"))
    total = sum(size for _, size in candidates)
    done = 0
    drop_vectors = vectors_loaded and has_vectors(conn)
    for candidate, size in candidates:
        if progress is not None:
            progress(done, total, candidate.key)
        _add_one(conn, candidate, report, drop_vectors)
        done += size
    if progress is not None:
        progress(total, total, "")
    if report.chunks_written or report.dropped:
        optimize(conn)
    report.gone = _gone(conn, given, {c.key for c, _ in candidates})
    report.seconds = time.perf_counter() - started
    return report


def _add_one(
    conn: sqlite3.Connection, candidate: Candidate, report: AddReport, drop_vectors: bool
) -> None:
    key = candidate.key
    try:
        stat = candidate.path.stat()
        if stat.st_size > MAX_FILE_BYTES:
            report.skipped.append((key, f"too large ({stat.st_size / 1e6:,.0f} MB)"))
            return
        data = candidate.path.read_bytes()
    except OSError as exc:
        report.skipped.append((key, f"unreadable: {exc.strerror or exc}"))
        return
    report.bytes_read += len(data)
    digest = hashlib.sha256(data).hexdigest()
    row = conn.execute("SELECT id, sha256 FROM files WHERE path = ?", (key,)).fetchone()
    if row is not None and row[1] == digest:
        report.unchanged += 1
        return
    decoded = decode(candidate.path.name, data)
    if decoded.text is None:
        report.skipped.append((key, decoded.skipped or "not text"))
        if row is not None:
            with write_transaction(conn):
                _delete_files(conn, [row[0]], drop_vectors)
            report.dropped.append(key)
        return
    kind = kind_of(candidate.path.name)
    lines = split_lines(decoded.text)
    chunks = chunk_lines(lines, kind)
    with write_transaction(conn):
        if row is None:
            file_id = conn.execute(
                "INSERT INTO files(path, size, mtime_ns, sha256, added, kind) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, len(data), stat.st_mtime_ns, digest, time.time(), kind),
            ).lastrowid
        else:
            file_id = row[0]
            _delete_chunks(conn, file_id, drop_vectors)
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, sha256 = ?, added = ?, kind = ? "
                "WHERE id = ?",
                (len(data), stat.st_mtime_ns, digest, time.time(), kind, file_id),
            )
        rows = []
        for chunk in chunks:
            text = "\n".join(lines[chunk.start - 1 : chunk.end])
            body = _html_body(text) if kind == "html" else None
            rows.append((file_id, chunk.start, chunk.end, chunk.title, text, body))
        conn.executemany(
            "INSERT INTO chunks(file_id, start_line, end_line, title, text, body) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute(
            "INSERT INTO chunks_fts(rowid, title, body) SELECT id, title, body "
            "FROM chunks_indexed WHERE id IN (SELECT id FROM chunks WHERE file_id = ?)",
            (file_id,),
        )
    report.chunks_written += len(rows)
    (report.added if row is None else report.updated).append(key)


def optimize(conn: sqlite3.Connection) -> None:
    """Merge the FTS index into one segment: every term lookup then reads one b-tree, not one per
    segment (search at 100k chunks took half the time after it, measured here). It rewrites
    the index, so it runs once per add or remove that changed something, never per file."""
    with write_transaction(conn):
        conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")


def _html_body(text: str) -> str:
    """What an HTML chunk says, for the index and for the model: no tags, scripts or styles,
    entities decoded, one line per line of text (the chunk's line range still locates it)."""
    plain = html.unescape(_TAG.sub(" ", _SCRIPT.sub(" ", text)))
    return "\n".join(filter(None, (" ".join(line.split()) for line in plain.splitlines())))


def _delete_chunks(conn: sqlite3.Connection, file_id: int, drop_vectors: bool) -> None:
    # External-content FTS5: an entry is deleted by giving back the values it was built from.
    conn.execute(
        "INSERT INTO chunks_fts(chunks_fts, rowid, title, body) SELECT 'delete', id, title, body "
        "FROM chunks_indexed WHERE id IN (SELECT id FROM chunks WHERE file_id = ?)",
        (file_id,),
    )
    if drop_vectors:
        conn.execute(
            "DELETE FROM chunks_vec WHERE rowid IN (SELECT id FROM chunks WHERE file_id = ?)",
            (file_id,),
        )
    conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))


def _delete_files(conn: sqlite3.Connection, file_ids: list[int], drop_vectors: bool) -> int:
    chunks = 0
    for file_id in file_ids:
        count = conn.execute("SELECT count(*) FROM chunks WHERE file_id = ?", (file_id,))
        chunks += int(count.fetchone()[0])
        _delete_chunks(conn, file_id, drop_vectors)
        conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
    return chunks


def _matching(conn: sqlite3.Connection, key: str) -> list[tuple[int, str]]:
    """Files named ``key`` or under the folder ``key`` (``.``: every relative name)."""
    if key == ".":
        rows = conn.execute("SELECT id, path FROM files WHERE substr(path, 1, 1) != '/'")
    else:
        prefix = key.rstrip("/") + "/"
        rows = conn.execute(
            "SELECT id, path FROM files WHERE path = ? OR substr(path, 1, ?) = ?",
            (key, len(prefix), prefix),
        )
    return [(int(r[0]), str(r[1])) for r in rows.fetchall()]


def remove_keys(
    conn: sqlite3.Connection, keys: Iterable[str], *, vectors_loaded: bool = False
) -> tuple[list[str], int, list[str]]:
    """Drop the files named by ``keys`` (or under them): (removed names, chunks, unmatched keys)."""
    removed: list[str] = []
    unmatched: list[str] = []
    chunks = 0
    drop_vectors = vectors_loaded and has_vectors(conn)
    with write_transaction(conn):
        for key in keys:
            found = [(i, p) for i, p in _matching(conn, key) if p not in removed]
            if not found:
                unmatched.append(key)
                continue
            chunks += _delete_files(conn, [i for i, _ in found], drop_vectors)
            removed.extend(p for _, p in found)
    if removed:
        optimize(conn)
    return removed, chunks, unmatched


def _gone(conn: sqlite3.Connection, given: list[Path], seen: set[str]) -> list[str]:
    """Files the KB holds under the folders just added that are no longer on disk."""
    from bot.kb.sources import key_for

    gone: list[str] = []
    for folder in given:
        if not folder.is_dir():
            continue
        for _, path in _matching(conn, key_for(folder)):
            if path not in seen and path not in gone and not os.path.exists(path):
                gone.append(path)
    return gone
