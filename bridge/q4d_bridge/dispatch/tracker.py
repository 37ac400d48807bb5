"""Follows every add request from its seedbox client to the library: the client's
progress while it downloads, then the queue item that brings it home (linked at intake
by info-hash, persistence/store.py), until it landed or failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from ..clients.base import Torrent
from ..clients.monitor import ClientMonitor
from ..models import Item
from ..persistence.requests import DispatchRecords
from ..persistence.store import Message
from .requests import OPEN_STATES, Request, RequestState

_LOGGER = logging.getLogger(__name__)
GONE_AFTER = 2  # polls without the torrent on its client before the request fails
PRUNE_INTERVAL = 600.0
NUDGE_DELAY = 0.5
LISTING_GRACE = 10.0  # a request added this recently and not listed yet is not gone
TERMINAL = frozenset({RequestState.LANDED, RequestState.FAILED})


class RequestAnnouncer(Protocol):
    def request(self, request: Request) -> None: ...

    def removal_message(self, item_id: str) -> Message: ...

    def outbox_pending(self) -> None: ...


class RequestTracker:
    def __init__(
        self,
        records: DispatchRecords,
        monitor: ClientMonitor,
        announcer: RequestAnnouncer,
        *,
        interval: float,
        retention: float,
        busy: Callable[[str], bool] = lambda _request_id: False,
    ) -> None:
        self.records = records
        self.monitor = monitor
        self.announcer = announcer
        self.interval = interval
        self.retention = retention
        self.busy = busy  # an add still in flight: its client may not list it yet
        self._soon = asyncio.Event()
        self.active: dict[str, Request] = {
            r.id: r for r in records.requests([*OPEN_STATES, RequestState.COMPLETED])
        }

    def shown(self) -> list[Request]:
        """The requests standing in the queue: no item yet, or failed before one."""
        failed = [
            r
            for r in self.records.requests([RequestState.FAILED])
            if r.item_id is None and not r.retracted
        ]
        return [*(r for r in self.active.values() if r.item_id is None), *failed]

    def track(self, request: Request) -> None:
        if request.state in TERMINAL:
            self.active.pop(request.id, None)
        else:
            self.active[request.id] = request
        if request.item_id is None:
            self.announcer.request(request)

    def counts(self) -> dict[str, int]:
        phases = {"requested": 0, "downloading": 0}
        for request in self.active.values():
            if request.item_id is not None:
                continue
            if request.state in (RequestState.REQUESTED, RequestState.ADDED):
                phases["requested"] += 1
            else:
                phases["downloading"] += 1
        return phases

    # --- the queue item ----------------------------------------------------------------

    def item_changed(self, item: Item) -> None:
        """Every committed item change (Lifecycle observer)."""
        if item.request_id is None:
            return
        request = self.active.get(item.request_id)
        if request is None:
            return
        first = request.item_id is None
        if not request.follow(item, time.time()) and not first:
            return
        # the item now stands in the queue for it: retract the request's own entry
        messages = [self.announcer.removal_message(request.id)] if first else []
        self.records.save(request, messages)
        if messages:
            self.announcer.outbox_pending()
        if request.state in TERMINAL:
            self.active.pop(request.id, None)
        _LOGGER.info("request %s %r: %s", request.id, request.name, request.state.value)

    def relink(self, items: Iterable[Item]) -> None:
        """After a restart: items admitted while their request's update was not saved."""
        for item in items:
            self.item_changed(item)

    # --- the seedbox client ------------------------------------------------------------

    def nudge(self) -> None:
        """A torrent was just added: look at its client soon, not a whole interval later."""
        self._soon.set()

    async def run(self) -> None:
        pruned = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._soon.wait()
                    await asyncio.sleep(NUDGE_DELAY)  # the client lists what it was given
            self._soon.clear()
            await self.poll()
            if time.monotonic() - pruned > PRUNE_INTERVAL:
                pruned = time.monotonic()
                self.prune()

    async def poll(self) -> None:
        waiting = [r for r in self.active.values() if r.open and not self.busy(r.id)]
        if not waiting:
            return
        await self.monitor.refresh({r.seedbox for r in waiting})
        now = time.time()
        for request in waiting:
            status = self.monitor.status.get(request.seedbox)
            if status is None or not status.reachable or status.torrents is None:
                continue
            torrent = next((t for t in status.torrents if t.hash in request.hashes), None)
            if self._update(request, torrent, now):
                self.records.save(request)
                self.announcer.request(request)

    def _update(self, request: Request, torrent: Torrent | None, now: float) -> bool:
        if torrent is None:
            if request.state is RequestState.REQUESTED:
                return False  # recovery re-adds it (Dispatcher.recover)
            if now - request.updated_at < LISTING_GRACE:
                return False  # qBittorrent lists an add a moment after it answered
            request.missing_polls += 1
            if request.missing_polls < GONE_AFTER:
                return False
            request.fail("removed", "removed from the seedbox's client before it completed", now)
            self.active.pop(request.id, None)
            _LOGGER.warning(
                "request %s %r: gone from %s", request.id, request.name, request.seedbox
            )
            return True
        request.missing_polls = 0
        before = (request.state, request.progress, request.size, request.name,
                  request.seedbox_state, request.rate > 0)  # fmt: skip
        request.seedbox_state = torrent.state
        # the clients list no rate for one torrent: the bytes it gained since the last poll
        done = int(torrent.size * torrent.progress) if torrent.size else 0
        if request.polled_at is not None and now > request.polled_at:
            request.rate = max(0.0, (done - request.bytes_done) / (now - request.polled_at))
        request.polled_at = now
        if torrent.size:
            request.size = torrent.size
            request.bytes_done = int(torrent.size * torrent.progress)
        request.name = request.name or torrent.name
        request.progress = round(100.0 * torrent.progress, 1)
        request.state = RequestState.COMPLETED if torrent.complete else RequestState.DOWNLOADING
        if before == (request.state, request.progress, request.size, request.name,
                      request.seedbox_state, request.rate > 0):  # fmt: skip
            return False
        request.updated_at = now
        return True

    # --- old entries --------------------------------------------------------------------

    def prune(self, now: float | None = None) -> int:
        """Retract failed requests that never reached the queue, after the retention
        the queue's own finished items get."""
        cutoff = (time.time() if now is None else now) - self.retention
        old = [
            r
            for r in self.records.requests([RequestState.FAILED])
            if r.item_id is None and r.updated_at < cutoff and not r.retracted
        ]
        for request in old:
            request.retracted = True
            self.records.save(request, [self.announcer.removal_message(request.id)])
        if old:
            self.announcer.outbox_pending()
        return len(old)
