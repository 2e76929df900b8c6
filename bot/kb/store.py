"""Reading the knowledge base: :class:`KnowledgeBase` (search, stats) and :class:`Hit`.

Search is synchronous SQLite. Lexical: FTS5 BM25 over the chunk text and its heading trail.
With a query vector and vectors in the KB: BM25 and cosine (sqlite-vec) ranks fused by
reciprocal rank fusion. All of one search runs in one read transaction, so a concurrent
``kb add`` (WAL) is seen entirely or not at all. One connection, guarded by a lock, so the
object may be shared by threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bot.kb import db
from bot.kb.query import GATE_ROWS, estimate_df, match_expression, plan, rrf, terms

__all__ = ["FileInfo", "Hit", "KBStats", "KnowledgeBase"]

# Heading trail and path weigh twice the body: a question naming a section should find it.
_BM25_WEIGHTS = (2.0, 1.0)
# How deep each list is read before fusion: RRF needs more than k to reward agreement.
_FUSION_DEPTH = 50
_RANKED = "SELECT rowid, bm25(chunks_fts, ?, ?) AS s FROM chunks_fts WHERE chunks_fts MATCH ?"


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk: ``source`` lines ``start..end`` (1-based, inclusive)."""

    source: str
    start: int
    end: int
    score: float
    text: str

    @property
    def location(self) -> str:
        return f"{self.source}:{self.start}-{self.end}"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "lines": [self.start, self.end],
            "score": self.score,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    chunks: int
    added: float
    sha256: str


@dataclass(frozen=True, slots=True)
class KBStats:
    path: str
    files: list[FileInfo]
    chunks: int
    embedded: int
    db_bytes: int
    embed_model: str | None
    embed_dim: int | None

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


class KnowledgeBase:
    """An open knowledge base. :meth:`open` for reading (the bot), ``create=True`` to write."""

    # Candidates bm25() scores at most; see bot.kb.query. Tests lower it to reach the bounded path.
    gate_rows: int = GATE_ROWS

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self.conn = conn
        self.lock = threading.Lock()
        self._vectors: str | bool | None = False  # False: not tried; None: loaded; str: why not

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, create: bool = False, readonly: bool | None = None
    ) -> KnowledgeBase:
        """Open the KB at ``path``; read-only unless ``create`` (raises :class:`db.KBError`)."""
        where = Path(path)
        ro = not create if readonly is None else readonly
        return cls(db.connect(where, create=create, readonly=ro), where)

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        with self.lock, db.translated(self.path):
            return db.get_meta(self.conn, key)

    @property
    def embed_model(self) -> str | None:
        """The embedding model the KB's vectors came from, if it has vectors."""
        return self.meta("embed_model")

    def vectors_unavailable(self) -> str | None:
        """Why hybrid search cannot run here (``None``: it can); sqlite-vec is loaded once."""
        if self.embed_model is None:
            return "the knowledge base has no embeddings (add with --embed-model)"
        if self._vectors is False:
            with self.lock:
                self._vectors = db.load_vectors(self.conn)
        return self._vectors if isinstance(self._vectors, str) else None

    def search(self, query: str, k: int = 5, vector: Sequence[float] | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query``: BM25, fused with cosine ranks when a ``vector``
        (the query's embedding) is given and the KB has vectors. Best first."""
        if k <= 0:
            return []
        words = terms(query)
        hybrid = vector is not None and self.vectors_unavailable() is None
        if not words and not hybrid:
            return []
        depth = max(k, _FUSION_DEPTH) if hybrid else k
        with self.lock, db.translated(self.path), db.read_transaction(self.conn):
            lexical = self._lexical(words, depth) if words else []
            if hybrid:
                assert vector is not None
                dense = self._nearest(vector, depth)
                ranked = rrf([[i for i, _ in lexical], [i for i, _ in dense]])[:k]
            else:
                ranked = lexical[:k]
            return self._fetch(ranked)

    def _lexical(self, words: list[str], limit: int) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) best first; see :mod:`bot.kb.query` for why a plan."""
        conn = self.conn
        total = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0])
        if total == 0:
            return []
        # Two statements: SQLite answers a lone min() or max() from the index, both at once by a scan.
        first_id = int(conn.execute("SELECT min(id) FROM chunks").fetchone()[0])
        max_id = int(conn.execute("SELECT max(id) FROM chunks").fetchone()[0])
        probe = self.gate_rows + 1
        estimates: dict[str, float] = {}
        for word in words:
            count, last = conn.execute(
                "SELECT count(*), max(rowid) FROM (SELECT rowid FROM chunks_fts "
                "WHERE chunks_fts MATCH ? LIMIT ?)",
                (match_expression([word]), probe),
            ).fetchone()
            if count:
                estimates[word] = estimate_df(int(count), int(last), first_id, max_id, probe)
        if not estimates:
            return []
        chosen = plan(estimates, total, self.gate_rows)
        gate = match_expression(chosen.gate)
        if not chosen.boost:
            rows = conn.execute(
                f"{_RANKED} ORDER BY s LIMIT ?", (*_BM25_WEIGHTS, gate, limit)
            ).fetchall()
            # bm25() is "lower is better"; a score people read should grow with relevance.
            return [(int(r[0]), -float(r[1])) for r in rows]
        scores = {int(r[0]): -float(r[1]) for r in conn.execute(_RANKED, (*_BM25_WEIGHTS, gate))}
        for word, weight in chosen.boost:
            for (rowid,) in conn.execute(
                "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?",
                (f"{match_expression([word])} AND ({gate})",),
            ):
                scores[int(rowid)] += weight
        return sorted(scores.items(), key=lambda pair: -pair[1])[:limit]

    def _nearest(self, vector: Sequence[float], limit: int) -> list[tuple[int, float]]:
        import struct

        blob = struct.pack(f"<{len(vector)}f", *vector)
        rows = self.conn.execute(
            "SELECT rowid, distance FROM chunks_vec WHERE embedding MATCH ? AND k = ? "
            "ORDER BY distance",
            (blob, limit),
        ).fetchall()
        return [(int(r[0]), 1.0 - float(r[1])) for r in rows]

    def _fetch(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        if not ranked:
            return []
        marks = ",".join("?" * len(ranked))
        rows = self.conn.execute(
            # HTML shows (and goes to the model) as its text, not its markup.
            "SELECT c.id, f.path, c.start_line, c.end_line, coalesce(c.body, c.text) FROM chunks c "
            f"JOIN files f ON f.id = c.file_id WHERE c.id IN ({marks})",
            [i for i, _ in ranked],
        ).fetchall()
        found = {int(r[0]): r for r in rows}
        return [
            Hit(str(r[1]), int(r[2]), int(r[3]), round(score, 6), str(r[4]))
            for i, score in ranked
            if (r := found.get(i)) is not None  # a vector whose chunk is gone
        ]

    def stats(self) -> KBStats:
        with self.lock, db.translated(self.path), db.read_transaction(self.conn):
            files = [
                FileInfo(str(r[0]), int(r[1]), int(r[2]), float(r[3]), str(r[4]))
                for r in self.conn.execute(
                    "SELECT f.path, f.size, count(c.id), f.added, f.sha256 FROM files f "
                    "LEFT JOIN chunks c ON c.file_id = f.id GROUP BY f.id ORDER BY f.path"
                )
            ]
            chunks, embedded = self.conn.execute(
                "SELECT count(*), coalesce(sum(embedded), 0) FROM chunks"
            ).fetchone()
            model = db.get_meta(self.conn, "embed_model")
            dim = db.get_meta(self.conn, "embed_dim")
        size = sum(
            os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if os.path.exists(p)
        )
        return KBStats(
            str(self.path),
            files,
            int(chunks),
            int(embedded),
            size,
            model,
            int(dim) if dim else None,
        )
