"""botctl: run, measure and profile the botctl Discord LLM bot."""

__version__ = "0.1.0"
