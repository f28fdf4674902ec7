"""Tests that need root but no lab: real network interfaces, nftables' own checker, commands run
as another user. `sudo make root-test` (and `make test`) runs them; without root every one of
them fails, saying so, never skips. They change nothing outside what they create and remove."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "tests/root needs root (it creates network interfaces, asks nftables to check rules "
            "and runs commands as another user): run `sudo make root-test`"
        )
