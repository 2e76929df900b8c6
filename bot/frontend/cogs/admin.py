"""The admin cog: ``/reset``, ``/stats``, ``/model`` and ``/persona`` (see or set the channel's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.frontend.places import Place

if TYPE_CHECKING:
    from bot.frontend.client import ChatBotMixin

NOT_ALLOWED = "Only members with Manage Server (or the bot's admins) may change this."


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
    if summary.get("persona"):
        lines.append(f"persona here      {summary['persona']}")
    for name, calls in sorted(summary.get("models", {}).items()):
        shown = ", ".join(f"{status} {count}" for status, count in sorted(calls.items()))
        lines.append(f"model {name:<11} {shown or 'no calls'}")
    return "```\n" + "\n".join(lines) + "\n```"


def may_administer(interaction: discord.Interaction[Any], admins: frozenset[int]) -> bool:
    """Manage Server in this guild, or listed in ``admins`` (the only way in a DM)."""
    user = interaction.user
    if user.id in admins:
        return True
    permissions = getattr(user, "guild_permissions", None)
    return bool(permissions is not None and permissions.manage_guild)


class Admin(commands.Cog):
    def __init__(self, bot: ChatBotMixin) -> None:
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
        name="stats", description="Show the bot's dedup, history, metrics and model figures"
    )
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        channel = interaction.channel_id or 0
        self.engine.log_command("stats", str(channel), str(interaction.user.id))
        summary = self.engine.summary()
        chosen = self.engine.personas.channel_persona(channel, _parent(interaction))
        summary["persona"] = chosen.name if chosen else None
        await interaction.response.send_message(format_stats(summary), ephemeral=True)

    @app_commands.command(name="model", description="Show this channel's model, or set it")
    @app_commands.describe(name="The model to use in this channel ('default' to follow routing)")
    async def model(self, interaction: discord.Interaction[Any], name: str | None = None) -> None:
        models = self.engine.models
        here, parent = interaction.channel_id or 0, _parent(interaction)
        current = models.channel_model(here)
        shown = current.name if current else f"{models.default.name} (routing default)"
        inherited = None if current or parent is None else models.channel_model(parent)
        if inherited is not None:
            shown = f"{inherited.name} (this thread's channel's)"
        await self._choose(
            interaction, name, "model", models.names(), shown, models.set_channel_model,
            back="This channel follows the routing again.", done="This channel now uses {}.",
        )  # fmt: skip

    @app_commands.command(name="persona", description="Show this channel's persona, or set it")
    @app_commands.describe(name="The persona for this channel ('default' to follow the rules)")
    async def persona(self, interaction: discord.Interaction[Any], name: str | None = None) -> None:
        personas = self.engine.personas
        here, parent = interaction.channel_id or 0, _parent(interaction)
        chosen = personas.channel_persona(here)
        shown = chosen.name if chosen else "none set (the rules, else the default prompt)"
        inherited = None if chosen or parent is None else personas.channel_persona(parent)
        if inherited is not None:
            shown = f"{inherited.name} (this thread's channel's)"
        await self._choose(
            interaction, name, "persona", personas.names(), shown, personas.set_channel_persona,
            back="This channel follows the persona rules again.",
            done="This channel now speaks as {}.",
        )  # fmt: skip

    async def _choose(
        self,
        interaction: discord.Interaction[Any],
        name: str | None,
        kind: str,
        names: list[str],
        shown: str,
        assign: Callable[[int, str | None], None],
        *,
        back: str,
        done: str,
    ) -> None:
        """Show the channel's choice of ``kind``, or (for admins) set it or go ``back``."""
        channel = interaction.channel_id or 0
        self.engine.log_command(kind, str(channel), str(interaction.user.id))
        choices = ", ".join(names) or "none configured"
        if name is None:
            text = f"{kind.capitalize()} here: {shown}. Choices: {choices}, or 'default'."
        elif not may_administer(interaction, frozenset(self.bot.components.settings.admins)):
            text = NOT_ALLOWED
        elif name == "default":
            assign(channel, None)
            text = back
        elif name not in names:
            text = f"No {kind} named {name!r}. Choices: {choices}."
        else:
            assign(channel, name)
            text = done.format(name)
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    @persona.autocomplete("name")
    async def _persona_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        names = [*self.engine.personas.names(), "default"]
        return [app_commands.Choice(name=n, value=n) for n in names if current in n][:25]

    @model.autocomplete("name")
    async def _model_names(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        names = [*self.engine.models.names(), "default"]
        return [app_commands.Choice(name=n, value=n) for n in names if current in n][:25]


def _parent(interaction: discord.Interaction[Any]) -> int | None:
    """The channel of the thread the command was used in, if it was."""
    return Place.of(interaction.channel).parent


async def setup(bot: commands.Bot) -> None:
    from bot.frontend.client import ChatBotMixin

    assert isinstance(bot, ChatBotMixin)
    await bot.add_cog(Admin(bot))
