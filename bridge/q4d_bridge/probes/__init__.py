"""The tests Home Assistant's configuration flows run before saving an entry: an SSH
link to a seedbox (ssh.py), its torrent client (client.py), a destination folder
(destination.py), a Sonarr or Radarr instance (arr.py) and a home torrent client
(home_client.py). Each tries for real, within a
time limit, and leaves nothing behind; a failure is a `ProbeError` with a precise code
(base.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..config.model import Config
from .arr import arr_target, probe_arr
from .base import TIMEOUT, ProbeError
from .client import client_target, probe_client
from .destination import destination_target, probe_destination
from .home_client import home_client_target, probe_home_client
from .ssh import probe_ssh, ssh_target

KINDS = ("ssh", "client", "destination", "arr", "home_client")


async def run(kind: str, value: Any, config: Config, *, within: float = TIMEOUT) -> dict[str, Any]:
    """The findings of one test of `value` (settings, or `{"id": ...}` of an entry of
    the running configuration), or a ProbeError; `within` (seconds) bounds what goes over the
    network or to the disk."""
    if kind == "destination":
        destination = destination_target(value, config)
        work = probe_destination(destination, config.transfers.min_free_space)
    elif not isinstance(value, dict):
        raise ProbeError("invalid", f"a {kind} test takes a mapping of settings")
    elif kind == "ssh":
        work = probe_ssh(ssh_target(value, config))
    elif kind == "arr":
        work = probe_arr(arr_target(value, config))
    elif kind == "home_client":
        work = probe_home_client(home_client_target(value, config))
    else:
        work = probe_client(client_target(value, config))
    try:
        async with asyncio.timeout(within):
            return await work
    except TimeoutError:
        raise ProbeError("timeout", f"no answer within {within:g} s") from None


__all__ = ["KINDS", "TIMEOUT", "ProbeError", "run"]
