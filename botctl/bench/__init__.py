"""``botctl bench``: measure, on this machine, the performance table the bot was built to win.

Every figure is a ratio or a count measured in one run, variants interleaved round by round and the
medians kept, so drift in CPU frequency or a noisy neighbour hits every variant alike. Budgets are
reported as pass/fail lines (:mod:`botctl.bench.budgets`), never asserted.

Modules: :mod:`~botctl.bench.dedup` (LLM calls with and without dedup), :mod:`~botctl.bench.history`
(the channel LRU against a list LRU and lru-dict), :mod:`~botctl.bench.metrics_io` (batched metrics
writes), :mod:`~botctl.bench.e2e` (sandbox messages per second against a bare discord.py bot) and
:mod:`~botctl.bench.suite` (the rows of ``botctl bench``). ``benchmarks/`` (``make bench``) runs
these with more rounds, plus the rows that need a profiler, strace or a fresh interpreter.
"""
