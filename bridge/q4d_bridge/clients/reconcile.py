"""Reconciliation: completed torrents on a seedbox that no event ever announced (a hook
that did not fire, an outbox lost with the host, a broker that dropped events) become
completion events, admitted like any other."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..config.model import Config, ReconcileConfig
from ..intake.decode import Rejected, accept
from ..intake.intake import Intake
from ..lifecycle.machine import Lifecycle
from ..models import CompletionEvent, Label
from .base import ClientError, Torrent, TorrentClient
from .monitor import ClientMonitor

_LOGGER = logging.getLogger(__name__)
# In a periodic pass, a torrent that completed this recently probably has its hook's
# event still on the way: it is left for the next pass rather than raced.
SETTLE = 60.0

# A torrent carrying one of these was handled already, whatever the bridge remembers:
# the label daemon's names (q4d:DONE, ...) and Q4D's bare ones.
_LABELS = (Label.QUEUED.value, Label.DONE.value, Label.FAILED.value, "NOPE")
HANDLED_LABELS = frozenset({*_LABELS, *(f"q4d:{label}" for label in _LABELS)})


def missed_completions(
    seedbox: str,
    client: str,
    torrents: Iterable[Torrent],
    known_hashes: set[str],
    config: ReconcileConfig,
    now: float,
    settle: float = 0.0,
) -> list[CompletionEvent]:
    events = []
    for torrent in torrents:
        info_hash = torrent.hash.lower()
        if not torrent.complete or info_hash in known_hashes:
            continue
        if HANDLED_LABELS.intersection(torrent.tags) or torrent.category in HANDLED_LABELS:
            continue
        if torrent.completed_at is None or now - torrent.completed_at > config.max_age:
            continue
        if now - torrent.completed_at < settle:
            continue
        if config.categories and torrent.category not in config.categories:
            continue
        if config.tags and not set(config.tags).intersection(torrent.tags):
            continue
        events.append(
            CompletionEvent(
                event_id=f"reconcile-{info_hash}",
                seedbox=seedbox,
                path=torrent.content_path,
                name=torrent.name,
                hash=info_hash,
                client=client,
                category=torrent.category,
                tags=torrent.tags,
                tracker=torrent.tracker,
                size=torrent.size,
                completed_at=torrent.completed_at,
            )
        )
    return events


class Reconciler:
    """Asks each seedbox's torrent client for what no event announced, and admits it."""

    def __init__(
        self,
        config: Config,
        clients: Mapping[str, TorrentClient],
        monitor: ClientMonitor,
        lifecycle: Lifecycle,
        intake: Intake,
    ) -> None:
        self.config = config
        self.clients = clients
        self.monitor = monitor
        self.lifecycle = lifecycle
        self.intake = intake
        self._rejected: set[str] = set()  # reported once per info-hash per run

    async def reconcile(self, seedbox_id: str, settle: float = SETTLE) -> dict[str, Any]:
        """Enqueue completed torrents the torrent client has and no event announced
        (leaving those completed in the last `settle` seconds to their own events)."""
        seedbox, client = self.config.seedboxes.get(seedbox_id), self.clients.get(seedbox_id)
        if seedbox is None or client is None:  # removed meanwhile (Bridge.apply)
            return {"enqueued": [], "error": "no torrent client configured"}
        try:
            torrents = await client.completed_torrents()
        except ClientError as err:
            _LOGGER.warning("seedbox %s: reconciliation skipped: %s", seedbox_id, err)
            return {"enqueued": [], "error": str(err)}
        if self.config.seedboxes.get(seedbox_id) is not seedbox:
            # removed or changed while its client answered (Bridge.apply): the answer is
            # the old client's; the changed seedbox's next pass asks its new one
            return {"enqueued": [], "error": "the seedbox's configuration changed meanwhile"}
        items = self.lifecycle.items.values()
        known = {i.hash.lower() for i in items if i.seedbox == seedbox_id and i.hash}
        kind = seedbox.client.type if seedbox.client else "unknown"
        missed = missed_completions(
            seedbox_id, kind, torrents, known, seedbox.reconcile, time.time(), settle
        )
        enqueued = []
        for event in missed:
            outcome = accept(event, seedboxes=self.config.seedboxes, routing=self.config.routing)
            if isinstance(outcome, Rejected):
                if event.hash not in self._rejected:
                    self._rejected.add(event.hash or "")
                    self.intake.reject(f"reconcile/{seedbox_id}", event.path.encode(), outcome)
                continue
            item = self.intake.admit(outcome)
            if item is not None:
                enqueued.append(item.id)
        if enqueued:
            _LOGGER.warning(
                "seedbox %s: reconciliation found %d completed torrent(s) no event announced",
                seedbox_id, len(enqueued),
            )  # fmt: skip
        return {"enqueued": enqueued, "error": None}

    async def rescan(self, seedbox_id: str | None) -> dict[str, Any]:
        """A pass now, for one seedbox or every one, after a fresh poll of its client;
        asked for (a command, lost events), so nothing is left to settle."""
        targets = [seedbox_id] if seedbox_id else list(self.config.seedboxes)
        results: dict[str, Any] = {}
        for sb in targets:
            if sb not in self.clients:
                results[sb] = {"enqueued": [], "error": "no torrent client configured"}
                continue
            await self.monitor.poll(sb)
            results[sb] = await self.reconcile(sb, settle=0.0)
        # In total, so that a UI can say "2 missed completions queued" or "none".
        names = [self.lifecycle.items[i].name for r in results.values() for i in r["enqueued"]]
        return {"seedboxes": results, "count": len(names), "names": names}
