"""Embeddings: the client against a real HTTP server on loopback, vectors in sqlite-vec, hybrid
search fused by reciprocal rank, and lexical search whenever vectors cannot be used."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _kb_embed import EmbedServer, concept_vector

from bot.kb import Embedder, EmbedError, KBError, KnowledgeBase, add_paths, embedder_for, retrieve
from bot.kb import db as kb_db
from bot.kb.vectors import embed_missing
from botctl.analyze.web import free_port

CORPUS = Path(__file__).parent / "data" / "kb"

pytestmark = pytest.mark.integration


def _vectors_loadable() -> str | None:
    conn = kb_db.driver().connect(":memory:")
    try:
        return kb_db.load_vectors(conn)
    finally:
        conn.close()


needs_vec = pytest.mark.skipif(
    _vectors_loadable() is not None, reason=f"sqlite-vec not loadable: {_vectors_loadable()}"
)


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text("utf-8") + text, "utf-8")


@pytest.fixture
def server() -> Iterator[EmbedServer]:
    running = EmbedServer()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KnowledgeBase]:
    shutil.copytree(CORPUS, tmp_path / "docs")
    monkeypatch.chdir(tmp_path)
    with KnowledgeBase.open(tmp_path / "kb.sqlite", create=True) as store:
        add_paths(store.conn, [Path("docs")])
        yield store


async def test_ollama_embeddings_come_back_in_order_in_batches(server: EmbedServer) -> None:
    texts = ["cooldown", "install", "reset", "pirate persona", "tea"]
    async with Embedder(server.url, "concepts", "ollama", batch_size=2) as embedder:
        vectors = await embedder.embed(texts)
    assert vectors == [concept_vector(t) for t in texts]
    assert server.batches == [2, 2, 1]


@pytest.mark.parametrize(("suffix", "api"), [("/v1", "auto"), ("", "openai")])
async def test_openai_embeddings_are_sorted_by_index(
    server: EmbedServer, suffix: str, api: str
) -> None:
    async with Embedder(server.url + suffix, "concepts", api) as embedder:
        assert embedder.api == "openai"
        assert embedder.endpoint == f"{server.url}/v1/embeddings"
        vectors = await embedder.embed(["cooldown", "install", "tea"])
    assert vectors == [concept_vector(t) for t in ("cooldown", "install", "tea")]


async def test_the_api_key_is_sent_and_never_shown(
    server: EmbedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-0123456789abcdef"
    server.api_key = secret
    monkeypatch.setenv("BOT_LLM_API_KEY", secret)
    async with Embedder(server.url, "concepts") as embedder:
        assert await embedder.embed(["x"])
        assert secret not in repr(embedder)
    assert server.authorizations[-1] == f"Bearer {secret}"
    monkeypatch.setenv("BOT_LLM_API_KEY", "sk-wrong-key-987654")
    url = server.url.replace("http://", "http://user:hunter2@")
    async with Embedder(url, "concepts") as embedder:
        with pytest.raises(EmbedError) as info:
            await embedder.embed(["x"])
    message = str(info.value)
    assert "401" in message and "invalid api key" in message
    assert "sk-wrong" not in message and "hunter2" not in message
    assert server.authorizations[-1] == "Bearer sk-wrong-key-987654"  # the key wins over the URL's
    # Without a key, the URL's user:password go as Basic auth, and nowhere else.
    monkeypatch.delenv("BOT_LLM_API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.api_key = None
    async with Embedder(url, "concepts") as embedder:
        await embedder.embed(["x"])
        assert "hunter2" not in repr(embedder) and "hunter2" not in embedder.endpoint
    assert server.authorizations[-1] == "Basic dXNlcjpodW50ZXIy"


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_server_errors_carry_the_servers_own_words(server: EmbedServer, api: str) -> None:
    async with Embedder(server.url, "no-such-model", api) as embedder:
        with pytest.raises(EmbedError, match='404: model "no-such-model" not found'):
            await embedder.embed(["x"])


async def test_an_unreachable_or_silent_server_is_an_embed_error(server: EmbedServer) -> None:
    async with Embedder(f"http://127.0.0.1:{free_port()}", "concepts") as embedder:
        with pytest.raises(EmbedError, match="cannot reach"):
            await embedder.embed(["x"])
    server.delay = 2.0
    async with Embedder(server.url, "concepts", timeout=0.2) as embedder:
        with pytest.raises(EmbedError, match=r"no answer within 0\.2 s"):
            await embedder.embed(["x"])


@needs_vec
async def test_embedding_is_incremental_and_search_becomes_hybrid(
    kb: KnowledgeBase, server: EmbedServer
) -> None:
    assert kb_db.load_vectors(kb.conn) is None
    chunks = kb.stats().chunks
    async with Embedder(server.url, "concepts", batch_size=8) as embedder:
        first = await embed_missing(kb.conn, embedder)
        assert (first.embedded, first.missing) == (chunks, chunks)
        assert (await embed_missing(kb.conn, embedder)).embedded == 0  # nothing new
        stats = kb.stats()
        assert (stats.embed_model, stats.embed_dim, stats.embedded) == ("concepts", 9, chunks)

        # "throttle" is in no document: lexical search finds nothing, the vectors find the cooldown.
        assert kb.search("throttle", 3) == []
        result = await retrieve(kb, "throttle", 3, embedder)
        assert result.mode == "hybrid" and result.note is None
        assert result.hits[0].source == "docs/cooldown.py"
        # Fused scores are reciprocal ranks: at most 2 / 61.
        assert 0 < result.hits[0].score <= 2 / 61

        # Both rankings agree on the reset question: it stays first.
        hits = (await retrieve(kb, "How can I reset a conversation?", 3, embedder)).hits
        assert (hits[0].source, hits[0].start, hits[0].end) == ("docs/faq.rst", 1, 9)

        # A changed file: its new chunks, and only they, need vectors.
        _append(Path("docs/community/rules.txt"), "\nNo spam.\n")
        add_paths(kb.conn, [Path("docs")], vectors_loaded=True)
        again = await embed_missing(kb.conn, embedder)
        assert again.embedded == 1
        count = kb.conn.execute("SELECT count(*) FROM chunks_vec").fetchone()[0]
        assert count == kb.stats().chunks


@needs_vec
async def test_another_model_replaces_every_vector(kb: KnowledgeBase, server: EmbedServer) -> None:
    server.models.add("other")
    kb_db.load_vectors(kb.conn)
    async with Embedder(server.url, "concepts") as embedder:
        await embed_missing(kb.conn, embedder)
    async with Embedder(server.url, "other") as embedder:
        report = await embed_missing(kb.conn, embedder)
    assert report.reset_from == "concepts" and report.embedded == kb.stats().chunks
    assert kb.embed_model == "other"


@needs_vec
async def test_vectors_of_another_size_are_refused(kb: KnowledgeBase) -> None:
    class Fake:
        model, api, url, batch_size = "concepts", "ollama", "http://127.0.0.1:1", 4

        def __init__(self, dim: int) -> None:
            self.dim = dim

        async def embed(self, texts: list[str]) -> list[list[float]]:
            return [[1.0] * self.dim for _ in texts]

    kb_db.load_vectors(kb.conn)
    kb.conn.execute("UPDATE chunks SET embedded = 1 WHERE id > (SELECT min(id) FROM chunks)")
    await embed_missing(kb.conn, Fake(4))
    kb.conn.execute("UPDATE chunks SET embedded = 0")
    with pytest.raises(KBError, match="returned 3-dimension vectors, the KB holds 4"):
        await embed_missing(kb.conn, Fake(3))


@needs_vec
async def test_without_an_embedding_server_search_stays_lexical_and_says_why(
    kb: KnowledgeBase, server: EmbedServer
) -> None:
    kb_db.load_vectors(kb.conn)
    async with Embedder(server.url, "concepts") as embedder:
        await embed_missing(kb.conn, embedder)
    server.stop()
    embedder = embedder_for(kb)
    assert embedder is not None and embedder.url == server.url
    async with embedder:
        result = await retrieve(kb, "How can I reset a conversation?", 3, embedder)
    assert result.mode == "lexical"
    assert result.note is not None and result.note.startswith("lexical search only: cannot reach")
    assert result.hits[0].source == "docs/faq.rst"
    assert set(result.metrics()) == {"mode", "hits", "latency_ms"}


async def test_a_kb_with_vectors_where_sqlite_vec_cannot_load_searches_lexically(
    kb: KnowledgeBase, server: EmbedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb_db.set_meta(kb.conn, "embed_model", "concepts")
    kb_db.set_meta(kb.conn, "embed_url", server.url)
    monkeypatch.setattr(kb_db, "load_vectors", lambda conn: "sqlite-vec is not installed")
    async with Embedder(server.url, "concepts") as embedder:
        result = await retrieve(kb, "reset conversation", 2, embedder, in_thread=True)
    assert result.mode == "lexical" and result.note == "sqlite-vec is not installed"
    assert result.hits[0].source == "docs/faq.rst"
    assert server.batches == []  # the question was not even embedded


async def test_a_kb_without_vectors_needs_no_embedder(kb: KnowledgeBase) -> None:
    assert embedder_for(kb) is None
    result = await retrieve(kb, "How do I write a persona?", 1)
    assert result.mode == "lexical" and result.note is None
    assert result.hits[0].location == "docs/faq.rst:17-32"
