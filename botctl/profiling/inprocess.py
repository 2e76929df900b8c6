"""Re-export for ``botctl/commands/run.py`` and tests until they import :mod:`botctl.profile.inprocess`."""

from botctl.profile.inprocess import (
    CPROFILE_ENV as CPROFILE_ENV,
)
from botctl.profile.inprocess import (
    profiling_session as profiling_session,
)
