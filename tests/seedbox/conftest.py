"""Seedbox-side tests: the hook runs as a real subprocess (as a torrent client runs it)
against real daemons on loopback: mosquitto, qbittorrent-nox, transmission-daemon,
rtorrent and deluged/deluge-web.

pytest-homeassistant-custom-component blocks every socket; here loopback is allowed
again (as in tests/bridge/conftest.py), connections elsewhere stay blocked.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.services import LOOPBACK, Mosquitto
from tests.seedbox.support import (
    SEEDBOX_ID,
    Seedbox,
    Subscriber,
    Transmission,
    make_torrent,
    need,
    torrent_hash,
)

LOOPBACK_HOSTS = ["127.0.0.1", "::1", "localhost"]


def _allow_loopback() -> None:
    # Imported by name: pytest-socket ships no type information.
    pytest_socket = importlib.import_module("pytest_socket")
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(LOOPBACK_HOSTS, allow_unix_socket=True)


@pytest.fixture(scope="session", autouse=True)
def _loopback_sockets_for_session_fixtures() -> Iterator[None]:
    _allow_loopback()
    yield


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    _allow_loopback()


@pytest.fixture
def seedbox(tmp_path: Path, mosquitto: Mosquitto) -> Seedbox:
    root = tmp_path / "seedbox"
    root.mkdir()
    return Seedbox(
        root=root,
        port=mosquitto.port,
        mqtt={"host": LOOPBACK, "port": mosquitto.port, "seedbox_id": SEEDBOX_ID},
        hook={"outbox": root / "outbox", "log_file": root / "hook.log", "timeout": 3},
    )


@pytest.fixture
def subscribe(mosquitto: Mosquitto) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(*topics: str) -> Subscriber:
        sub = Subscriber(mosquitto.port, *topics)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def torrent(tmp_path: Path) -> tuple[Path, bytes, str]:
    """A 256 KiB payload, its .torrent (made by mktorrent) and its info-hash."""
    data = tmp_path / "data" / "Show.S01E01.mkv"
    data.parent.mkdir()
    data.write_bytes(os.urandom(256 * 1024))
    raw = make_torrent(data, tmp_path / "show.torrent")
    return data, raw, torrent_hash(raw)


@pytest.fixture
def transmission(tmp_path: Path) -> Iterator[Transmission]:
    need("transmission-daemon")
    with Transmission(tmp_path / "transmission") as daemon:
        yield daemon
