"""Old home of :mod:`botctl.profile`, kept until ``botctl/commands/run.py`` imports the new path.

To remove at merge (with ``botctl/profiling/inprocess.py``).
"""
