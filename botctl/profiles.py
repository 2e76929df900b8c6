"""Re-export for tests that import ``free_port``/``SnakevizServer`` from the old path (now
:mod:`botctl.analyze.web`). To remove at merge."""

from botctl.analyze.web import SnakevizServer as SnakevizServer
from botctl.analyze.web import free_port as free_port
