"""A Discord-compatible REST API and gateway on 127.0.0.1, for the real discord.py client.

:class:`DiscordServer` composes the parts (see ``server.py`` for what each module does). The rest of
the sandbox imports from here: ``from botctl.sandbox.discord_server import DiscordServer``.
"""

from botctl.sandbox.discord_server.common import MAX_CONTENT
from botctl.sandbox.discord_server.control import Traffic
from botctl.sandbox.discord_server.messages import NewAttachment
from botctl.sandbox.discord_server.ratelimit import RateLimits
from botctl.sandbox.discord_server.recorder import (
    Listener,
    RecordedEdit,
    RecordedInteractionResponse,
    RecordedMessage,
    RecordedTyping,
)
from botctl.sandbox.discord_server.server import DiscordServer

__all__ = [
    "MAX_CONTENT",
    "DiscordServer",
    "Listener",
    "NewAttachment",
    "RateLimits",
    "RecordedEdit",
    "RecordedInteractionResponse",
    "RecordedMessage",
    "RecordedTyping",
    "Traffic",
]
