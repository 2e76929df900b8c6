"""Chat messages of either protocol read as one shape, and the record of a request the server got.

Ollama sends ``{"role", "content": str, "images": [base64, ...]}``; OpenAI sends ``content`` as a
string or a list of parts (``{"type": "text", "text"}``, ``{"type": "image_url", "image_url":
{"url"}}``). :func:`parse_turns` reads both as :class:`Turn` (role, text, images), so the answer to
the same conversation is the same whichever protocol carried it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["ollama", "openai"]
APIS: tuple[Api, ...] = ("ollama", "openai")
CallKind = Literal["chat", "embed"]

CHARS_PER_TOKEN = 4

_TEXT_PARTS = frozenset({"text", "input_text"})
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


@dataclass(frozen=True)
class Turn:
    """One message as the model reads it: its role, its text and its images (Ollama's base64
    strings, or OpenAI's image URLs — ``data:`` URLs as sent)."""

    role: str
    text: str
    images: tuple[str, ...] = ()


def _image_ref(part: Mapping[str, Any]) -> str:
    ref = part.get("image_url", part.get("image", ""))
    if isinstance(ref, Mapping):
        ref = ref.get("url", "")
    return ref if isinstance(ref, str) else ""


def parse_turn(message: Mapping[str, Any]) -> Turn:
    role = message.get("role")
    content = message.get("content")
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in _IMAGE_PARTS:
                images.append(_image_ref(part))
    raw_images = message.get("images")
    if isinstance(raw_images, list):
        images.extend(image if isinstance(image, str) else "" for image in raw_images)
    return Turn(role if isinstance(role, str) else "", "\n".join(texts), tuple(images))


def parse_turns(messages: Sequence[Mapping[str, Any]]) -> list[Turn]:
    return [parse_turn(message) for message in messages if isinstance(message, Mapping)]


def last_user_turn(turns: Sequence[Turn]) -> Turn:
    for turn in reversed(turns):
        if turn.role == "user":
            return turn
    return Turn("user", "")


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last ``user`` message (its text parts joined), ``""`` when there is none."""
    return last_user_turn(parse_turns(messages)).text


def prompt_tokens(turns: Sequence[Turn]) -> int:
    """A token count for the prompt: about four characters a token, at least one if any message."""
    if not turns:
        return 0
    return max(1, sum(len(turn.text) for turn in turns) // CHARS_PER_TOKEN)


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it, so a test can assert what a client sent.

    ``body`` is the whole JSON body as parsed (images included); ``authorized`` says whether an
    ``Authorization`` header came with it — its value is never kept.
    """

    api: Api
    kind: CallKind
    model: str
    body: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    stream: bool = False
    authorized: bool = False

    @property
    def turns(self) -> list[Turn]:
        return parse_turns(self.messages)

    @property
    def images(self) -> list[str]:
        """Every image in the messages, in order."""
        return [image for turn in self.turns for image in turn.images]

    def text(self) -> str:
        """All the text sent: the messages' texts (or the embedding inputs), one per line."""
        if self.kind == "embed":
            return "\n".join(self.inputs)
        return "\n".join(turn.text for turn in self.turns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "api": self.api,
            "kind": self.kind,
            "model": self.model,
            "stream": self.stream,
            "authorized": self.authorized,
            "messages": self.messages,
            "inputs": self.inputs,
            "images": len(self.images),
            "body": self.body,
        }
