"""The add-on's tests talk to a fake Supervisor, Mosquitto and sshd on loopback: re-allow
loopback sockets for each test, which the Home Assistant test plugin's pytest-socket
blocks (connections elsewhere stay blocked)."""

from __future__ import annotations

import pytest

from tests.conftest import allow_loopback_sockets


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    allow_loopback_sockets()
