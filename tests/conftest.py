"""Shared pytest fixtures."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.helpers.netguard import NetGuard  # noqa: E402
from tests.helpers.netguard import unavailable as netguard_unavailable  # noqa: E402
from tests.helpers.services import Mosquitto, SshServer  # noqa: E402

if TYPE_CHECKING:
    from tests.helpers.seeder import Seeder

LOOPBACK_HOSTS = ["127.0.0.1", "::1", "localhost"]


def allow_loopback_sockets() -> None:
    """Re-allow loopback sockets where pytest-socket blocks them (the Home Assistant
    test plugin blocks every socket); connections elsewhere stay blocked."""
    try:  # optional plugin; imported dynamically because it ships no type information
        pytest_socket = importlib.import_module("pytest_socket")
    except ImportError:
        return
    pytest_socket.enable_socket()
    pytest_socket.socket_allow_hosts(LOOPBACK_HOSTS, allow_unix_socket=True)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh, non-persistent mosquitto broker on 127.0.0.1 (per test)."""
    allow_loopback_sockets()
    with Mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """One sshd (SFTP, pubkey auth for the current user) for the whole session."""
    allow_loopback_sockets()
    with SshServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def seeder(tmp_path: Path) -> Iterator[Seeder]:
    """A seeding peer and its tracker on 127.0.0.1 (tests/helpers/seeder.py): a torrent
    client can download what `seeder.seed(...)` returns, by magnet or by .torrent."""
    pytest.importorskip("libtorrent")  # the venv's bindings; imported only when used
    from tests.helpers.seeder import Seeder

    allow_loopback_sockets()
    with Seeder(tmp_path / "seeder") as running:
        yield running


@pytest.fixture
def netguard(tmp_path: Path) -> Iterator[NetGuard]:
    """A guarded network namespace (tests/helpers/netguard.py): commands run in it with
    netguard.argv(); every name lookup and every packet beyond loopback is recorded."""
    reason = netguard_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with NetGuard(tmp_path / "netguard") as guard:
        yield guard
