"""Housekeeping: history older than `history_retention` leaves the store (and MQTT), and
the destinations' free space is read for the state."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .intake.sequence import Sequences
from .lifecycle.machine import Lifecycle
from .mqtt.publisher import Publisher
from .persistence.store import Store
from .transfer.pipeline import DiskFree

PRUNE_INTERVAL = 600.0
SPACE_POLL = 30.0  # seconds between free-space readings of the destinations


class Housekeeping:
    def __init__(
        self,
        store: Store,
        lifecycle: Lifecycle,
        publisher: Publisher,
        sequences: Sequences,
        *,
        retention: float,
        destinations: Callable[[], Mapping[str, Path]],  # as configured now (Bridge.apply)
        disk_free: DiskFree,
        state_changed: Callable[[], None],
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.publisher = publisher
        self.sequences = sequences
        self.retention = retention
        self.destinations = destinations
        self.disk_free = disk_free
        self.state_changed = state_changed
        self.free_space: dict[str, int | None] = {}
        self._space_used = asyncio.Event()

    def prune(self) -> None:
        removed = self.store.prune(self.retention, removal=self.publisher.removal_message)
        self.lifecycle.forget(removed)
        for item_id in removed:
            self.publisher.item_removed(item_id)
        self.sequences.prune(time.time())

    async def run_pruner(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            self.prune()

    def space_used(self) -> None:
        """A payload landed: read the free space again now."""
        self._space_used.set()

    async def watch_space(self) -> None:
        """Free space of each destination for the state, read off the event loop (a
        hung network mount must not stall the bridge)."""
        while True:
            free = await asyncio.to_thread(self._free_all, self.destinations())
            if free != self.free_space:
                self.free_space = free
                self.state_changed()
            self._space_used.clear()
            with contextlib.suppress(TimeoutError):
                # a landed payload changes it at once; anything else, within SPACE_POLL
                await asyncio.wait_for(self._space_used.wait(), SPACE_POLL)

    def _free_all(self, roots: Mapping[str, Path]) -> dict[str, int | None]:
        return {name: self._free(root) for name, root in roots.items()}

    def _free(self, root: Path) -> int | None:
        """Bytes free where a destination lives (None while it does not exist yet)."""
        try:
            return self.disk_free(root)
        except OSError:
            return None
