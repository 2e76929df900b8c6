"""``botctl run``: the bot on Discord or in the sandbox, stopped in order, with its figures."""

from botctl.run.report import Banner, RunReport
from botctl.run.session import run

__all__ = ["Banner", "RunReport", "run"]
