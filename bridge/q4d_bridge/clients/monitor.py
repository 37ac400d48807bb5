"""Polls each seedbox's torrent client for its stats and runs the periodic
reconciliation pass (what a pass does is handed in)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config.model import SeedboxConfig
from .base import ClientError, ClientStats, ManagedTorrentClient, Torrent, TorrentClient

_LOGGER = logging.getLogger(__name__)
FIRST_RECONCILE_DELAY = 10.0  # let the broker deliver what it kept for us first
POLL_TIMEOUT = 20.0  # longer than an adapter's own retries of one call (1 + 2 + 4 s)


async def _version(client: TorrentClient) -> str | None:
    return await client.version() if isinstance(client, ManagedTorrentClient) else None


async def _torrents(client: TorrentClient) -> list[Torrent] | None:
    return await client.torrents() if isinstance(client, ManagedTorrentClient) else None


@dataclass(slots=True)
class ClientStatus:
    type: str
    reachable: bool | None = None  # None: not asked yet
    stats: ClientStats | None = None
    error: str | None = None
    checked_at: float | None = None
    version: str | None = None  # asked once per time it becomes reachable
    # every torrent (dispatch: pending bytes, duplicates)
    torrents: list[Torrent] | None = None

    def as_dict(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "type": self.type,
            "version": self.version,
            "reachable": self.reachable,
            "free_space": stats.free_space if stats else None,
            "active_downloads": stats.active_downloads if stats else None,
            "download_rate": stats.download_rate if stats else None,
            "upload_rate": stats.upload_rate if stats else None,
            "torrents": stats.torrents if stats else None,
            "error": self.error,
            "checked_at": self.checked_at,
        }


class ClientMonitor:
    def __init__(
        self,
        seedboxes: Mapping[str, SeedboxConfig],
        clients: Mapping[str, TorrentClient],
        *,
        on_change: Callable[[], None],
    ) -> None:
        """seedboxes and clients: the bridge's live mappings; a client that joins or is
        replaced while the bridge runs is announced with `track` (Bridge.apply)."""
        self.seedboxes = seedboxes
        self.clients = clients
        self.on_change = on_change
        self.status = {
            sb: ClientStatus(client.type if (client := seedboxes[sb].client) else "")
            for sb in clients
        }
        self._next_poll: dict[str, float] = {}
        self._next_pass: dict[str, float] = {}
        self._changed = asyncio.Event()

    def track(self, seedbox: str) -> None:
        """A seedbox's client joined or was replaced: a fresh status, polled at once."""
        client = self.seedboxes[seedbox].client
        self.status[seedbox] = ClientStatus(client.type if client else "")
        self.untrack(seedbox, keep_status=True)

    def untrack(self, seedbox: str, *, keep_status: bool = False) -> None:
        """A seedbox's client left (or is replaced): no more polls or passes of it."""
        if not keep_status:
            self.status.pop(seedbox, None)
        self._next_poll.pop(seedbox, None)
        self._next_pass.pop(seedbox, None)
        self._changed.set()

    async def refresh(self, seedboxes: Iterable[str]) -> None:
        """Poll these clients now, together, each within POLL_TIMEOUT."""
        await asyncio.gather(*(self.poll(sb) for sb in seedboxes if sb in self.clients))

    async def poll(self, seedbox: str) -> None:
        client = self.clients[seedbox]
        status = self.status[seedbox]
        try:
            async with asyncio.timeout(POLL_TIMEOUT):
                status.stats = await client.stats()
                if status.reachable is not True:
                    status.version = await _version(client)
                status.torrents = await _torrents(client)
            status.reachable, status.error = True, None
        except Exception as err:  # a client's failure must not stop polling
            if isinstance(err, TimeoutError):
                err = ClientError(f"no answer within {POLL_TIMEOUT:g} s")
            if not isinstance(err, ClientError):
                _LOGGER.exception("seedbox %s: torrent client poll failed", seedbox)
            if status.reachable is not False:
                _LOGGER.warning("seedbox %s: torrent client unreachable: %s", seedbox, err)
            status.reachable, status.error = False, str(err)
        status.checked_at = time.time()
        self.on_change()

    async def run(self, reconcile: Callable[[str], Awaitable[object]]) -> None:
        """Poll every client on its interval, and run `reconcile` (a pass) on each
        seedbox's reconcile interval, forever. A client is first polled when it is
        seen (at start, or when it joins), its first pass FIRST_RECONCILE_DELAY later."""
        while True:
            self._changed.clear()
            now = time.monotonic()
            for sb in self.clients:
                if sb not in self._next_poll:
                    self._next_poll[sb] = now
                    if self.seedboxes[sb].reconcile.interval > 0:
                        self._next_pass[sb] = now + FIRST_RECONCILE_DELAY
            # Each await may see a client leave or be replaced (untrack): what is due
            # is checked again after it, and a schedule it dropped is not brought back.
            for sb, due in list(self._next_poll.items()):
                if now >= due and self._next_poll.get(sb) == due:
                    await self.poll(sb)
                    client = self.seedboxes[sb].client if sb in self.seedboxes else None
                    if self._next_poll.get(sb) == due:
                        self._next_poll[sb] = now + (client.poll_interval if client else 30.0)
            for sb, due in list(self._next_pass.items()):
                if now >= due and self._next_pass.get(sb) == due:
                    try:
                        await reconcile(sb)
                    except Exception:  # the next pass may do better; never stop polling
                        _LOGGER.exception("seedbox %s: reconciliation failed", sb)
                    if self._next_pass.get(sb) == due:
                        self._next_pass[sb] = now + self.seedboxes[sb].reconcile.interval
            wake = min([*self._next_poll.values(), *self._next_pass.values()], default=now + 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.1, wake - time.monotonic()))
