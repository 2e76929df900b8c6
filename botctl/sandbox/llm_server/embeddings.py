"""Deterministic embeddings: a hashed bag of words, L2-normalised.

Each lower-cased word adds ±1 to one of ``dims`` coordinates, both picked by a hash of the word
(feature hashing), so texts that share words point the same way and unrelated texts are nearly
orthogonal: enough for hybrid-search tests to rank meaningfully, with no model. A text with no word
hashes as a whole, so no vector is ever zero.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
import struct
from collections.abc import Sequence

DEFAULT_DIMS = 64

_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=65536)
def _slot(word: str, dims: int) -> tuple[int, float]:
    digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dims, 1.0 if (value >> 63) & 1 else -1.0


def embed_text(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    """The unit vector of ``text`` in ``dims`` dimensions."""
    vector = [0.0] * dims
    words = _WORD.findall(text.lower()) or [text]
    for word in words:
        index, sign = _slot(word, dims)
        vector[index] += sign
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:
        # Every word cancelled out: fall back to the whole text's own slot.
        index, sign = _slot(text, dims)
        vector[index], norm = sign, 1.0
    return [x / norm for x in vector]


def embed_texts(texts: Sequence[str], dims: int = DEFAULT_DIMS) -> list[list[float]]:
    return [embed_text(text, dims) for text in texts]


def to_base64(vector: Sequence[float]) -> str:
    """The vector as OpenAI's ``encoding_format: "base64"`` sends it: little-endian float32."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity (the vectors here are unit length, so this is their dot product)."""
    return sum(x * y for x, y in zip(a, b, strict=True))
