"""Bridge tests talk to real daemons on loopback.

pytest-homeassistant-custom-component blocks every socket for every test; here sockets
are allowed again, but connections still only to loopback (pytest-socket's host filter),
which keeps these tests inside the network rules by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_socket

from tests.helpers.configs import bridge_config

LOOPBACK = ["127.0.0.1", "::1", "localhost"]


def _allow_loopback() -> None:
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(LOOPBACK, allow_unix_socket=True)


@pytest.fixture(scope="session", autouse=True)
def _loopback_sockets_for_session_fixtures() -> Iterator[None]:
    _allow_loopback()
    yield


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    _allow_loopback()


@pytest.fixture
def raw(tmp_path: Path) -> dict[str, Any]:
    """A valid bridge config as YAML would give it, its key files written."""
    key, known = tmp_path / "key", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("h")
    return bridge_config(tmp_path / "data", tmp_path / "lib", key=key, known_hosts=known)
