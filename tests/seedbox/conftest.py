"""Seedbox-side tests: the hook runs as a real subprocess (as a torrent client runs it)
against real daemons on loopback: mosquitto, qbittorrent-nox, transmission-daemon,
rtorrent and deluged/deluge-web.

pytest-homeassistant-custom-component blocks every socket; here loopback is allowed
again (as in tests/bridge/conftest.py), connections elsewhere stay blocked.
"""

from __future__ import annotations

import importlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.services import LOOPBACK, Mosquitto
from tests.seedbox.installing import Home, fake, labelds
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


@pytest.fixture
def home(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Home]:
    """A HOME for install.sh with a few files of the user's own, and a directory for
    fake commands first on its PATH."""
    path = tmp_path / "home"
    (path / ".local" / "bin").mkdir(parents=True)
    (path / ".local" / "bin" / "my-tool").write_text("#!/bin/sh\n")
    (path / ".profile").write_text("# the user's own\n")
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    yield Home(path, fakebin, mosquitto.port)
    # A label daemon the test left running (its install's, found by its PID) is stopped.
    for pid in labelds(Home(path, fakebin, mosquitto.port)):
        os.kill(pid, signal.SIGTERM)


@pytest.fixture
def crontab(home: Home) -> Path:
    """A crontab command keeping the user's table in a file (no cron here to read it)."""
    table = home.fakebin / "crontab.txt"
    fake(
        home.fakebin / "crontab",
        f"""table="{table}"
case "$1" in
  -l) [ -f "$table" ] || {{ echo "no crontab for $USER" >&2; exit 1; }}; cat "$table" ;;
  -r) rm -f "$table" ;;
  -) cat > "$table" ;;
  *) exit 2 ;;
esac
""",
    )
    return table
