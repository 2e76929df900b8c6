"""The one exception type of the CLI: a user error with a one-line message and an exit code.

Commands raise :class:`BotctlError`; ``botctl.main.main`` catches it once, prints its message on
stderr and exits with its code. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class BotctlError(Exception):
    """A user error: a one-line message that says what to do, and the exit code (1 by default)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
