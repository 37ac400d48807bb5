"""Polls each seedbox's torrent client for its stats and runs the periodic
reconciliation pass; the orchestrator supplies what a pass does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..config.model import SeedboxConfig
from .base import Node, NodeError, NodeStats

_LOGGER = logging.getLogger(__name__)
FIRST_RECONCILE_DELAY = 10.0  # let the broker deliver what it kept for us first


@dataclass(slots=True)
class NodeStatus:
    reachable: bool | None = None  # None: not asked yet
    stats: NodeStats | None = None
    error: str | None = None
    checked_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "reachable": self.reachable,
            "free_space": stats.free_space if stats else None,
            "active_downloads": stats.active_downloads if stats else None,
            "download_rate": stats.download_rate if stats else None,
            "upload_rate": stats.upload_rate if stats else None,
            "torrents": stats.torrents if stats else None,
            "error": self.error,
            "checked_at": self.checked_at,
        }


class NodeMonitor:
    def __init__(
        self,
        seedboxes: Mapping[str, SeedboxConfig],
        nodes: Mapping[str, Node],
        *,
        reconcile: Callable[[str], Awaitable[object]],
        on_change: Callable[[], None],
    ) -> None:
        self.seedboxes = seedboxes
        self.nodes = nodes
        self.reconcile = reconcile
        self.on_change = on_change
        self.status = {sb: NodeStatus() for sb in nodes}

    async def poll(self, seedbox: str) -> None:
        node = self.nodes[seedbox]
        status = self.status[seedbox]
        try:
            status.stats = await node.stats()
            status.reachable, status.error = True, None
        except Exception as err:  # a client's failure must not stop polling
            if not isinstance(err, NodeError):
                _LOGGER.exception("seedbox %s: torrent client poll failed", seedbox)
            if status.reachable is not False:
                _LOGGER.warning("seedbox %s: torrent client unreachable: %s", seedbox, err)
            status.reachable, status.error = False, str(err)
        status.checked_at = time.time()
        self.on_change()

    async def run(self) -> None:
        now = time.monotonic()
        next_poll = dict.fromkeys(self.nodes, now)
        next_pass = {
            sb: now + FIRST_RECONCILE_DELAY
            for sb in self.nodes
            if self.seedboxes[sb].reconcile.interval > 0
        }
        while True:
            now = time.monotonic()
            for sb, due in next_poll.items():
                if now >= due:
                    await self.poll(sb)
                    client = self.seedboxes[sb].client
                    next_poll[sb] = now + (client.poll_interval if client else 30.0)
            for sb, due in next_pass.items():
                if now >= due:
                    try:
                        await self.reconcile(sb)
                    except Exception:  # the next pass may do better; never stop polling
                        _LOGGER.exception("seedbox %s: reconciliation failed", sb)
                    next_pass[sb] = now + self.seedboxes[sb].reconcile.interval
            wake = min([*next_poll.values(), *next_pass.values()])
            await asyncio.sleep(max(0.1, wake - time.monotonic()))
