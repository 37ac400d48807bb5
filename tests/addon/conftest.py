"""The add-on's tests talk to a fake Supervisor, Mosquitto and sshd on loopback: re-allow
loopback sockets for each test, which the Home Assistant test plugin's pytest-socket
blocks (connections elsewhere stay blocked). The add-on image's figures (its size, its
cold start) are printed at the end of the run, as tests/container's are."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import allow_loopback_sockets
from tests.helpers import podman

if TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter

# podman.measure names of the add-on's figures; tests/container's conftest prints the rest
PREFIX = "add-on "


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    allow_loopback_sockets()


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    figures = {k: v for k, v in podman.MEASUREMENTS.items() if k.startswith(PREFIX)}
    if figures:
        terminalreporter.section("add-on measurements")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")
