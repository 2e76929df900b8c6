"""Embedding the chunks that have no vector yet, into a sqlite-vec ``vec0`` table.

Incremental like the text: only chunks without a vector are sent (a re-add of unchanged files
embeds nothing; an interrupted run resumes). Batches are written as they arrive, each in its own
transaction. The model is recorded in ``kb_meta``; changing it drops every vector (two models'
vectors are not comparable) and starts again.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.kb import db
from bot.kb.ingest import has_vectors
from bot.settings import strip_credentials

__all__ = ["EMBED_CHARS", "EmbedReport", "TextEmbedder", "embed_missing", "query_text"]

# What one chunk sends: its heading trail and text, cut to stay inside small models' contexts.
EMBED_CHARS = 4000


class TextEmbedder(Protocol):
    """What :func:`embed_missing` needs of :class:`bot.kb.embed.Embedder` (tests pass fakes)."""

    @property
    def model(self) -> str: ...

    @property
    def api(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def batch_size(self) -> int: ...

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(slots=True)
class EmbedReport:
    embedded: int = 0
    missing: int = 0  # chunks that needed a vector when the run started
    reset_from: str | None = None  # the model whose vectors were dropped


def query_text(title: str, text: str) -> str:
    return (f"{title}\n\n{text}" if title else text)[:EMBED_CHARS]


async def embed_missing(
    conn: sqlite3.Connection,
    embedder: TextEmbedder,
    progress: Callable[[int, int], None] | None = None,
) -> EmbedReport:
    """Give every chunk without a vector one from ``embedder`` (needs sqlite-vec loaded in
    ``conn``: :func:`bot.kb.db.load_vectors`). Raises the embedder's errors as they come;
    what was written before stays."""
    report = EmbedReport()
    previous = db.get_meta(conn, "embed_model")
    if previous is not None and previous != embedder.model:
        with db.write_transaction(conn):
            _drop_vectors(conn)
        report.reset_from = previous
    elif has_vectors(conn):
        with db.write_transaction(conn):
            # Vectors of chunks replaced by a writer that could not load sqlite-vec.
            conn.execute("DELETE FROM chunks_vec WHERE rowid NOT IN (SELECT id FROM chunks)")
    report.missing = int(
        conn.execute("SELECT count(*) FROM chunks WHERE embedded = 0").fetchone()[0]
    )
    last_id = 0
    while report.embedded < report.missing:
        rows = conn.execute(
            "SELECT id, title, coalesce(body, text) FROM chunks WHERE embedded = 0 AND id > ? "
            "ORDER BY id LIMIT ?",
            (last_id, embedder.batch_size),
        ).fetchall()
        if not rows:
            break  # chunks removed meanwhile
        vectors = await embedder.embed([query_text(str(r[1]), str(r[2])) for r in rows])
        with db.write_transaction(conn):
            _store(conn, embedder, [int(r[0]) for r in rows], vectors)
        last_id = int(rows[-1][0])
        report.embedded += len(rows)
        if progress is not None:
            progress(report.embedded, report.missing)
    return report


def _drop_vectors(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TABLE IF EXISTS chunks_vec")
    conn.execute("UPDATE chunks SET embedded = 0 WHERE embedded != 0")
    for key in ("embed_model", "embed_dim", "embed_api", "embed_url"):
        db.set_meta(conn, key, None)


def _store(
    conn: sqlite3.Connection, embedder: TextEmbedder, ids: list[int], vectors: list[list[float]]
) -> None:
    dim = len(vectors[0])
    known = db.get_meta(conn, "embed_dim")
    if known is None:
        conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vec USING vec0("
            f"embedding float[{dim}] distance_metric=cosine)"
        )
        db.set_meta(conn, "embed_model", embedder.model)
        db.set_meta(conn, "embed_dim", str(dim))
        db.set_meta(conn, "embed_api", embedder.api)
        db.set_meta(conn, "embed_url", strip_credentials(embedder.url))
    elif int(known) != dim:
        raise db.KBError(
            f"{embedder.model} returned {dim}-dimension vectors, the KB holds {known}; "
            "re-add with the same --embed-model"
        )
    for vector in vectors:
        if len(vector) != dim:
            raise db.KBError(f"{embedder.model} returned vectors of different sizes")
    conn.executemany(
        "INSERT INTO chunks_vec(rowid, embedding) VALUES (?, ?)",
        [(i, struct.pack(f"<{dim}f", *v)) for i, v in zip(ids, vectors, strict=True)],
    )
    marks = ",".join("?" * len(ids))
    conn.execute(f"UPDATE chunks SET embedded = 1 WHERE id IN ({marks})", ids)
