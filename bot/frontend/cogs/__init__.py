"""One cog per file, each with ``async def setup(bot)``."""
