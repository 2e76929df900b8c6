"""The knowledge base's SQLite file: driver choice, opening and checking it, its schema.

One file holds everything (WAL mode, so a running bot reads while ``botctl kb add`` writes). A
``kb_meta`` table marks the file as a knowledge base and carries its schema version; any other
SQLite file, a corrupt one or a file that is not SQLite at all is refused with one line
(:class:`KBError`) before anything is written to it.

The driver is the standard ``sqlite3`` unless it cannot load extensions (some Python builds, the
pyenv ones among them, leave ``enable_load_extension`` out) while ``sqlite-vec`` is installed: then
``pysqlite3`` (the ``pysqlite3-binary`` wheel, same DB-API) is used where installed, so that vectors
work. Both read and write the same file format.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "KBError",
    "connect",
    "driver",
    "load_vectors",
    "read_transaction",
    "translated",
    "write_transaction",
]

FORMAT = "botctl-kb"
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
# A writer waits this long for another writer (another `kb add`) before giving up.
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = f"""
CREATE TABLE kb_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO kb_meta(key, value) VALUES ('format', '{FORMAT}'), ('schema', '{SCHEMA_VERSION}');
CREATE TABLE files(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    added REAL NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL REFERENCES files(id),
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    body TEXT,
    embedded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX chunks_file ON chunks(file_id);
CREATE VIEW chunks_indexed(id, title, body) AS
    SELECT c.id, f.path || ' ' || c.title, coalesce(c.body, c.text)
    FROM chunks c JOIN files f ON f.id = c.file_id;
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    title, body,
    content='chunks_indexed', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE chunks_vocab USING fts5vocab(chunks_fts, 'row');
"""
# Why the columns: `body` is the indexed text when it differs from the lines shown (HTML without
# its tags), else NULL; the FTS index is external-content over the view, so chunk text is stored
# once; `title` (path + heading trail) lets a chunk in the middle of a long section still match
# its section's heading.


class KBError(Exception):
    """A knowledge-base problem a user can act on: one line, no traceback."""


def driver() -> ModuleType:
    """The DB-API module to use (see the module docstring); decided once per process."""
    global _DRIVER
    if _DRIVER is None:
        _DRIVER = _pick_driver()
    return _DRIVER


_DRIVER: ModuleType | None = None


def _pick_driver() -> ModuleType:
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    if importlib.util.find_spec("sqlite_vec") is None:
        return sqlite3
    try:
        return importlib.import_module("pysqlite3.dbapi2")
    except ImportError:
        return sqlite3


def _check_file(path: Path, *, create: bool) -> bool:
    """Whether ``path`` must be initialised; refuses what is plainly not a knowledge base."""
    if path.is_dir():
        raise KBError(f"{path} is a directory; pass the knowledge base FILE (such as kb.sqlite)")
    if not path.exists():
        if not create:
            raise KBError(f"no knowledge base at {path}; create it with `botctl kb add DOCS...`")
        path.parent.mkdir(parents=True, exist_ok=True)
        return True
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise KBError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        return create  # an empty file is an empty database to SQLite
    if head != _SQLITE_MAGIC:
        raise KBError(f"{path} is not a knowledge base (not an SQLite file); pass another --kb")
    return False


def connect(path: Path, *, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Open and check the knowledge base at ``path`` (creating it when ``create``).

    The connection is in autocommit mode (transactions are explicit) and may be used from any
    thread, one at a time (the caller serialises). ``readonly`` forbids every write
    (``query_only``): what the bot opens.
    """
    new = _check_file(path, create=create)
    db = driver()
    mode = "rwc" if create else "rw"
    try:
        conn = db.connect(
            f"file:{_uri_path(path)}?mode={mode}",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=_BUSY_TIMEOUT_S,
        )
    except db.Error as exc:
        raise KBError(f"cannot open {path}: {exc}") from None
    conn = cast(sqlite3.Connection, conn)
    try:
        with translated(path):
            _probe_fts5(conn)
            if new or _is_blank(conn):
                if not create:
                    raise KBError(f"{path} is an empty database, not a knowledge base yet")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
                set_meta(conn, "created", str(time.time()))
            else:
                _check_schema(conn, path)
                if not readonly:
                    conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable in WAL mode up to the last checkpoint, and spares a sync per commit.
            conn.execute("PRAGMA synchronous=NORMAL")
            if readonly:
                conn.execute("PRAGMA query_only=1")
    except BaseException:
        conn.close()
        raise
    return conn


def _uri_path(path: Path) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _probe_fts5(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.kb_fts5_probe USING fts5(x)")
        conn.execute("DROP TABLE temp.kb_fts5_probe")
    except driver().OperationalError as exc:
        if "fts5" not in str(exc).lower():
            raise
        version = conn.execute("SELECT sqlite_version()").fetchone()[0]
        raise KBError(
            f"this Python's SQLite {version} lacks FTS5, which the knowledge base needs; use a "
            "Python whose sqlite3 has FTS5 or `pip install pysqlite3-binary`"
        ) from None


def _is_blank(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    return bool(row[0] == 0)


def _check_schema(conn: sqlite3.Connection, path: Path) -> None:
    not_kb = f"{path} is an SQLite file but not a botctl knowledge base; pass another --kb"
    try:
        rows = dict(conn.execute("SELECT key, value FROM kb_meta").fetchall())
    except driver().OperationalError:
        raise KBError(not_kb) from None
    if rows.get("format") != FORMAT:
        raise KBError(not_kb)
    try:
        version = int(rows.get("schema", ""))
    except ValueError:
        raise KBError(not_kb) from None
    if version > SCHEMA_VERSION:
        raise KBError(
            f"{path} was written by a newer botctl (knowledge base schema {version}); upgrade botctl"
        )


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM kb_meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str | None) -> None:
    if value is None:
        conn.execute("DELETE FROM kb_meta WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO kb_meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


@contextlib.contextmanager
def translated(path: Path) -> Iterator[None]:
    """SQLite errors on ``path`` as one-line :class:`KBError`s (corrupt file, locked, full disk)."""
    db = driver()
    try:
        yield
    except db.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise KBError(f"{path} is busy (another writer holds it); try again") from None
        if "malformed" in text or "not a database" in text:
            raise KBError(f"{path} is corrupt ({text}); rebuild it with `botctl kb add`") from None
        raise KBError(f"{path}: {text}") from None
    except db.DatabaseError as exc:
        raise KBError(f"{path} is corrupt or not a knowledge base ({exc})") from None


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction: all of it lands, or none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One snapshot for several reads: a concurrent writer's commit is seen entirely or not."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            with contextlib.suppress(driver().Error):  # never mask the error that brought us here
                conn.execute("COMMIT")


_VEC_LOCK = threading.Lock()


def load_vectors(conn: sqlite3.Connection) -> str | None:
    """Load sqlite-vec into ``conn``; ``None`` when it worked, else why it did not."""
    try:
        sqlite_vec = importlib.import_module("sqlite_vec")  # no type stubs: a plain module
    except ImportError:
        return "sqlite-vec is not installed (pip install sqlite-vec)"
    enable = getattr(conn, "enable_load_extension", None)
    if enable is None:
        return "this Python's SQLite cannot load extensions (pip install pysqlite3-binary)"
    with _VEC_LOCK:
        try:
            enable(True)
            try:
                sqlite_vec.load(cast(Any, conn))
            finally:
                enable(False)
        except (driver().Error, AttributeError, OSError) as exc:
            return f"sqlite-vec did not load: {exc}"
    return None
