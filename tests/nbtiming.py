"""pytest plugin: report each notebook's execution time and fail when one exceeds the limit.

Loaded with `-p nbtiming` (tests/ on PYTHONPATH). The limit is 60 s on 2 CPU cores,
overridable with NB_TIME_LIMIT_S.
"""

import os
from collections import defaultdict

import pytest

LIMIT_S = float(os.environ.get("NB_TIME_LIMIT_S", "60"))
_seconds: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    if not _seconds:
        return
    terminalreporter.section(f"notebook execution times (limit {LIMIT_S:.0f} s)")
    for path, seconds in sorted(_seconds.items()):
        flag = "  OVER THE LIMIT" if seconds > LIMIT_S else ""
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if any(seconds > LIMIT_S for seconds in _seconds.values()) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
