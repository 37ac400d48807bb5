"""The seedbox clean-up: a torrent (and its data, by default) removed from its seedbox's
client once its item is done (landed and verified), at once or when its ratio or its
seeding time reaches the plan's goal, whichever comes first. Never before: an item that
is not done, or has a post-processing step still to finish, is not looked at.

- `due` is the decision, pure.
- `Cleanup` is the step for `seedbox_cleanup: at_once`.
- `CleanupWatcher.run_once` looks at the done items with a goal every `INTERVAL`, reads
  each torrent's ratio and seeding time from its client, removes those due and records
  them (persistence/cleanups.py); a dry run lists what would go, and why.

Clients: qBittorrent, Transmission and Deluge report both figures. rTorrent reports a
ratio but keeps no seeding time: the time since it completed the torrent stands in. It
cannot delete data over XML-RPC either, so only `delete_data: false` works with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from ..clients.base import (
    ClientError,
    ClientErrorKind,
    ManagedTorrentClient,
    Torrent,
    TorrentClient,
)
from ..persistence.cleanups import Cleaned, CleanupRecords, Waiting
from .base import Landed, StepError
from .plan import CleanupPlan

_LOGGER = logging.getLogger(__name__)
INTERVAL = 600.0  # seconds between the watcher's looks: goals are hours or days away
GONE = "no longer on the seedbox"

SeedboxClients = Callable[[str], TorrentClient | None]  # a seedbox's id -> its client


def due(
    plan: CleanupPlan,
    ratio: float | None,
    seeding_time: float | None,
    now: float,
    *,
    completed_at: float | None = None,
) -> str | None:
    """Why the torrent goes now (`ratio 2.03 ≥ 2`), or None while it stays. A figure
    the client does not report (None) reaches no goal, except a missing seeding time:
    the time since the torrent completed (`completed_at`) stands in."""
    if plan.at_once:
        return "at once"
    if plan.ratio is not None and ratio is not None and ratio >= plan.ratio:
        return f"ratio {ratio:.2f} ≥ {plan.ratio:g}"
    if plan.seeding_time is not None:
        goal = duration(plan.seeding_time)
        if seeding_time is not None:
            if seeding_time >= plan.seeding_time:
                return f"seeding time {duration(seeding_time)} ≥ {goal}"
        elif completed_at is not None and now - completed_at >= plan.seeding_time:
            return f"complete for {duration(now - completed_at)} ≥ {goal}"
    return None


def duration(seconds: float) -> str:
    """`7d`, `1d 2h`, `3h 5m`, `42s`: the two largest units."""
    left = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        if len(parts) == 2 or (parts and not left):
            break
    return " ".join(parts)


def find(torrents: Iterable[Torrent], info_hash: str) -> Torrent | None:
    """The torrent listed under info_hash, or under another of its hashes."""
    wanted = info_hash.lower()
    for torrent in torrents:
        if wanted == torrent.hash.lower() or wanted in (a.lower() for a in torrent.aliases):
            return torrent
    return None


async def remove_from_seedbox(
    client: TorrentClient | None, seedbox: str, info_hash: str, *, delete_data: bool
) -> bool:
    """Remove the torrent from the seedbox's client: True if it was removed, False if
    it was gone already (a step run again after a crash finds it so). Failures as
    StepErrors, transient while the client is unreachable."""
    if not isinstance(client, ManagedTorrentClient):
        raise StepError(f"seedbox {seedbox} has no torrent client to remove {info_hash} from")
    try:
        torrent = find(await client.torrents(), info_hash)
        if torrent is None:
            return False
        await client.remove([torrent.hash], delete_data=delete_data)
    except ClientError as err:
        if err.kind is ClientErrorKind.NOT_FOUND:
            return False
        raise StepError(f"seedbox {seedbox}'s client: {err}", transient=err.transient) from err
    return True


class Cleanup:
    """`seedbox_cleanup: at_once`: the torrent leaves the seedbox as the item is done."""

    name = "cleanup"

    def __init__(self, seedbox_client: SeedboxClients) -> None:
        self.seedbox_client = seedbox_client

    async def run(self, landed: Landed) -> str:
        plan = landed.plan.cleanup
        if plan is None or not plan.at_once:
            return "waits for its goal"
        if landed.hash is None:
            raise StepError("no info-hash to find the torrent on the seedbox by")
        removed = await remove_from_seedbox(
            self.seedbox_client(landed.seedbox),
            landed.seedbox,
            landed.hash,
            delete_data=plan.delete_data,
        )
        if not removed:
            return GONE
        return "removed from the seedbox" + (" with its data" if plan.delete_data else "")


@dataclass(frozen=True, slots=True)
class Decision:
    """One torrent the watcher removed (or, in a dry run, would remove), and why."""

    item_id: str
    seedbox: str
    hash: str
    name: str
    reason: str
    removed: bool  # False in a dry run, for one gone already, or on an error
    error: str | None = None


class CleanupWatcher:
    def __init__(
        self,
        records: CleanupRecords,
        seedbox_client: SeedboxClients,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.seedbox_client = seedbox_client
        self.clock = clock

    async def run(self, interval: float = INTERVAL) -> None:
        """Look every `interval` seconds, forever (a bridge job)."""
        while True:
            await self.run_once()
            await asyncio.sleep(interval)

    async def run_once(self, dry_run: bool = False) -> list[Decision]:
        """One look at every done item with a goal: those due are removed and recorded
        (in a dry run: listed only). A seedbox whose client cannot be asked is passed
        over until the next look."""
        by_seedbox: dict[str, list[Waiting]] = {}
        for waiting in self.records.waiting():
            by_seedbox.setdefault(waiting.seedbox, []).append(waiting)
        decisions: list[Decision] = []
        for seedbox, items in by_seedbox.items():
            client = self.seedbox_client(seedbox)
            if not isinstance(client, ManagedTorrentClient):
                _LOGGER.warning("seedbox clean-up: seedbox %s has no torrent client", seedbox)
                continue
            try:
                torrents = await client.torrents()
            except ClientError as err:
                _LOGGER.warning("seedbox clean-up: seedbox %s: %s", seedbox, err)
                continue
            for item in items:
                decision = await self._one(client, item, torrents, dry_run)
                if decision is not None:
                    decisions.append(decision)
        return decisions

    async def _one(
        self, client: ManagedTorrentClient, item: Waiting, torrents: list[Torrent], dry_run: bool
    ) -> Decision | None:
        torrent = find(torrents, item.hash)
        now = self.clock()
        reason = (
            GONE if torrent is None
            else due(item.plan, torrent.ratio, torrent.seeding_time, now,
                     completed_at=torrent.completed_at)
        )  # fmt: skip
        if reason is None:
            return None
        decision = Decision(item.item_id, item.seedbox, item.hash, item.name, reason, False)
        if dry_run:
            return decision
        removed = torrent is not None
        if torrent is not None:
            try:
                await client.remove([torrent.hash], delete_data=item.plan.delete_data)
            except ClientError as err:
                if err.kind is not ClientErrorKind.NOT_FOUND:
                    _LOGGER.warning("seedbox clean-up of %s: %s", item.name, err)
                    return replace(decision, error=str(err))
                removed, reason = False, GONE
        self.records.record(
            Cleaned(item.item_id, item.seedbox, item.hash, now, reason, removed,
                    removed and item.plan.delete_data)
        )  # fmt: skip
        if removed:
            _LOGGER.info(
                "seedbox clean-up: %s removed from %s (%s)", item.name, item.seedbox, reason
            )
        return Decision(item.item_id, item.seedbox, item.hash, item.name, reason, removed)
