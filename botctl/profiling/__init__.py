"""Profiling the bot: in-process hooks (cProfile, tracemalloc) and the py-spy and memray runners."""
