"""What a bare `pytest` at the repository root runs, and where the rest of the suite is.

pyproject's testpaths is tests/unit alone: what needs neither root nor the lab, so a bare
`pytest` on any checkout changes nothing on the machine. The summary then says how to run the
rest."""

from __future__ import annotations

import pytest

THE_REST = """\
a bare `pytest` runs tests/unit: what needs neither root nor the lab. The rest of the suite:
  sudo make root-test   tests/root: real interfaces, nftables, another user (no lab; seconds)
  make app-test         app/tests, in the app's own environment (.venv-app)
  sudo make lab-test    tests/lab: boots the lab's 10 hosts from fresh, converges, tests (~25 min)
  sudo make test        all of it, lint first (~30 min)"""


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    if config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        terminalreporter.section("the rest of the suite")
        for line in THE_REST.splitlines():
            terminalreporter.write_line(line)
