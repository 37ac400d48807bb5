"""The demo tests check ports on loopback: re-allow loopback sockets, which the Home
Assistant test plugin's pytest-socket blocks (connections elsewhere stay blocked).
Each demo runs in a network guard of its own where one can run (root)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import allow_loopback_sockets
from tests.helpers.netguard import NetGuard
from tests.helpers.netguard import unavailable as netguard_unavailable


@pytest.fixture(autouse=True)
def _loopback_sockets() -> None:
    allow_loopback_sockets()


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[NetGuard | None]:
    """The demo's own guarded namespace, or None where no guard can run (not root)."""
    if netguard_unavailable() is not None:
        yield None
        return
    with NetGuard(tmp_path / "netguard") as netguard:
        yield netguard
