"""A message's attachments for the model: text files inlined with their name, images for a vision
model, and a short note for anything left out (never a silent drop).

Read with the bot's one HTTP session, all of a message's files at once, each bounded in time and
bytes (the size Discord announces is checked first, then the bytes actually read); a file that
cannot be read (an HTTP error, a timeout) is left out with a note saying why.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import aiohttp
import discord

__all__ = ["MAX_IMAGES", "Attached", "read_attachments"]

MAX_TEXT_BYTES = 64 * 1024
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGES = 4
READ_TIMEOUT = 10.0
_TEXT_SUFFIXES = frozenset(
    [
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".py",
        ".json",
        ".csv",
        ".tsv",
        ".log",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".xml",
        ".html",
        ".htm",
        ".css",
        ".js",
        ".ts",
        ".sql",
        ".sh",
        ".c",
        ".h",
        ".cpp",
        ".java",
        ".go",
        ".rs",
        ".rb",
        ".php",
        ".kt",
        ".swift",
        ".lua",
        ".r",
        ".tex",
    ]
)
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass(slots=True)
class Attached:
    texts: list[str] = field(default_factory=list)  # "[file NAME]\n…" blocks for the question
    images: list[str] = field(default_factory=list)  # base64, for a vision model
    names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def _kind(attachment: discord.Attachment) -> str:
    name = attachment.filename.lower()
    content_type = (attachment.content_type or mimetypes.guess_type(name)[0] or "").split(";")[0]
    if content_type in _IMAGE_TYPES:
        return "image"
    if content_type.startswith("text/") or PurePosixPath(name).suffix in _TEXT_SUFFIXES:
        return "text"
    return "other"


async def _read(session: aiohttp.ClientSession, url: str, cap: int) -> bytes | None:
    """The bytes at ``url``, or ``None`` past ``cap`` bytes; raises on a failure or a timeout."""
    async with asyncio.timeout(READ_TIMEOUT), session.get(url) as response:
        if response.status != 200:
            raise aiohttp.ClientResponseError(
                response.request_info, (), status=response.status, message="not found"
            )
        body = bytearray()
        async for piece in response.content.iter_chunked(64 * 1024):
            body += piece
            if len(body) > cap:
                return None
        return bytes(body)


def _failure(name: str, error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientResponseError):
        return f"{name}: could not be downloaded (HTTP {error.status})"
    if isinstance(error, TimeoutError):
        return f"{name}: could not be downloaded within {READ_TIMEOUT:g} s"
    return f"{name}: could not be downloaded"


async def read_attachments(
    session: aiohttp.ClientSession,
    attachments: Sequence[discord.Attachment],
    *,
    vision: bool,
) -> Attached:
    """What the model gets of ``attachments``, in their order. The files are read at once, each
    within ``READ_TIMEOUT``: a message waits for its slowest attachment, not for their sum."""
    out = Attached()
    notes: list[str | None] = []  # per attachment: why it is left out, or None to read it
    reads: list[tuple[int, str, Awaitable[bytes | None]]] = []
    images = 0
    for attachment in attachments:
        name = attachment.filename
        out.names.append(name)
        kind = _kind(attachment)
        cap = MAX_IMAGE_BYTES if kind == "image" else MAX_TEXT_BYTES
        if kind == "other":
            notes.append(f"{name}: not a text file or an image")
        elif kind == "image" and not vision:
            notes.append(f"{name}: no model here can see images")
        elif kind == "image" and images >= MAX_IMAGES:
            notes.append(f"{name}: at most {MAX_IMAGES} images a message")
        elif attachment.size > cap:
            notes.append(f"{name}: larger than {cap // 1024} KB")
        else:
            images += kind == "image"
            reads.append((len(notes), kind, _read(session, attachment.url, cap)))
            notes.append(None)
    results = await asyncio.gather(*(read for _, _, read in reads), return_exceptions=True)
    texts: dict[int, str] = {}
    for (index, kind, _), result in zip(reads, results, strict=True):
        name = out.names[index]
        cap = MAX_IMAGE_BYTES if kind == "image" else MAX_TEXT_BYTES
        if isinstance(result, aiohttp.ClientError | OSError | TimeoutError):
            notes[index] = _failure(name, result)
        elif isinstance(result, BaseException):
            raise result
        elif result is None:
            notes[index] = f"{name}: larger than {cap // 1024} KB"
        elif kind == "image":
            out.images.append(base64.b64encode(result).decode("ascii"))
        elif b"\x00" in result:
            notes[index] = f"{name}: not a text file"
        else:
            try:
                texts[index] = f"[file {name}]\n{result.decode('utf-8')}"
            except UnicodeDecodeError:
                notes[index] = f"{name}: not UTF-8 text"
    out.texts = [texts[i] for i in sorted(texts)]
    out.notes = [note for note in notes if note is not None]
    return out
