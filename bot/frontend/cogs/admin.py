"""The admin cog: ``/reset`` clears the channel's history, ``/stats`` shows the bot's figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

if TYPE_CHECKING:
    from bot.frontend.client import ChatBot


def format_stats(summary: dict[str, Any]) -> str:
    """The ``get_summary()`` figures as a short code block."""
    cache = summary.get("cache_stats", {})
    dedup = cache.get("deduplication", {})
    history = cache.get("history_cache", {})
    batch = summary.get("batch_logging", {})
    lines = [
        f"LLM requests      {dedup.get('requests', 0)}",
        f"saved by dedup    {dedup.get('saved_calls', 0)}",
        f"in flight         {dedup.get('pending_requests', 0)}",
        f"history channels  {history.get('channels', 0)}",
        f"history hit rate  {history.get('hit_rate', 0.0):.1f} %",
        f"metrics pending   {batch.get('pending_events', 0)}",
        f"metrics written   {batch.get('events_written', 0)} in {batch.get('flushes', 0)} flushes",
    ]
    return "```\n" + "\n".join(lines) + "\n```"


class Admin(commands.Cog):
    def __init__(self, bot: ChatBot) -> None:
        self.bot = bot
        self.engine = bot.engine

    @app_commands.command(name="reset", description="Forget this channel's conversation")
    async def reset(self, interaction: discord.Interaction[Any]) -> None:
        channel = str(interaction.channel_id)
        self.engine.log_command("reset", channel, str(interaction.user.id))
        existed = self.engine.reset(channel)
        text = "History cleared." if existed else "There was no history here."
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(
        name="stats", description="Show the bot's dedup, history and metrics figures"
    )
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        self.engine.log_command("stats", str(interaction.channel_id), str(interaction.user.id))
        await interaction.response.send_message(format_stats(self.engine.summary()), ephemeral=True)


async def setup(bot: commands.Bot) -> None:
    from bot.frontend.client import ChatBot

    assert isinstance(bot, ChatBot)
    await bot.add_cog(Admin(bot))
