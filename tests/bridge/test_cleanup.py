"""The seedbox clean-up: the pure decision; the watcher against a real qbittorrent-nox
seeding (a seeding time past a tiny goal, a ratio above 0 after a local peer took the
torrent): a dry run lists what would go and why, removes nothing; the real run removes
and records, and never touches an item that is not done, or still in a step; the
`at_once` step, idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from q4d_bridge.clients.base import Torrent
from q4d_bridge.clients.qbittorrent import QbittorrentClient
from q4d_bridge.config.model import ClientConfig
from q4d_bridge.models import Item, ItemState, StepState, StepStatus
from q4d_bridge.persistence.cleanups import CleanupRecords
from q4d_bridge.persistence.rows import ITEM_COLUMNS, item_to_row
from q4d_bridge.persistence.store import Store
from q4d_bridge.postprocess.base import Landed, StepError
from q4d_bridge.postprocess.cleanup import GONE, Cleanup, CleanupWatcher, due, find
from q4d_bridge.postprocess.plan import CleanupPlan, PostPlan

from tests.helpers.handoff import Payload, eventually, leech, payload, seeding
from tests.helpers.qbittorrent import QBittorrent

pytestmark = pytest.mark.timeout(120)
KiB = 1024
DAY = 86400.0


@pytest.mark.parametrize(
    ("plan", "ratio", "seeding_time", "completed_at", "reason"),
    [
        (CleanupPlan(at_once=True), None, None, None, "at once"),
        (CleanupPlan(ratio=2), 2.031, 10, None, "ratio 2.03 ≥ 2"),
        (CleanupPlan(ratio=2), 1.99, 10, None, None),
        (CleanupPlan(ratio=1.5), None, None, None, None),  # no ratio reported: never
        (CleanupPlan(seeding_time=7 * DAY), 0.1, 7 * DAY + 7200, None, "seeding time 7d 2h ≥ 7d"),
        (CleanupPlan(seeding_time=7 * DAY), 0.1, 6 * DAY, 0.0, None),  # reported: no stand-in
        (CleanupPlan(seeding_time=3600), None, None, 1000.0 - 3700, "complete for 1h 1m ≥ 1h"),
        (CleanupPlan(seeding_time=3600), None, None, 1000.0 - 60, None),
        (CleanupPlan(seeding_time=3600), None, None, None, None),
        # whichever comes first
        (CleanupPlan(ratio=2, seeding_time=60), 0.5, 61, None, "seeding time 1m 1s ≥ 1m"),
        (CleanupPlan(ratio=2, seeding_time=60), 2.5, 1, None, "ratio 2.50 ≥ 2"),
        (CleanupPlan(ratio=0), 0.0, 0, None, "ratio 0.00 ≥ 0"),
    ],
)
def test_due(
    plan: CleanupPlan,
    ratio: float | None,
    seeding_time: float | None,
    completed_at: float | None,
    reason: str | None,
) -> None:
    assert due(plan, ratio, seeding_time, 1000.0, completed_at=completed_at) == reason


@pytest.fixture
def seedbox_qbt(tmp_path: Path) -> Iterator[QBittorrent]:
    with QBittorrent(tmp_path / "seedbox-qbt") as daemon:
        yield daemon


@pytest.fixture
async def client(seedbox_qbt: QBittorrent) -> AsyncIterator[QbittorrentClient]:
    config = ClientConfig(
        "qbittorrent", seedbox_qbt.url, seedbox_qbt.username, seedbox_qbt.password, True
    )
    adapter = QbittorrentClient(config)
    yield adapter
    await adapter.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "q4d.db")
    yield opened
    opened.close()


def add_item(
    store: Store,
    item_id: str,
    info_hash: str,
    plan: CleanupPlan,
    state: ItemState = ItemState.DONE,
    step: str | None = None,
) -> None:
    """An item as the lifecycle leaves it; `step`: a post-processing step still running
    (the item is then `processing`)."""
    item = Item(
        id=item_id, event_id=f"e-{item_id}", seedbox="sb1", hash=info_hash, name=item_id,
        remote_path=f"/seed/{item_id}", destination="tv", local_path=f"/lib/{item_id}",
        category=None, tags=(), type_code=None, size=1, state=state, finished_at=1.0,
        plan=PostPlan(cleanup=plan),
    )  # fmt: skip
    if step is not None:
        item.state = ItemState.PROCESSING
        item.steps = (StepStatus(step, StepState.RUNNING, 1),)
    row = item_to_row(item)
    with store.transaction() as db:
        db.execute(f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)


async def listed(client: QbittorrentClient, item: Payload) -> Torrent | None:
    return find(await client.torrents(), item.hash)


async def test_the_watcher_by_seeding_time_and_ratio(
    tmp_path: Path, seedbox_qbt: QBittorrent, client: QbittorrentClient, store: Store
) -> None:
    by_time = payload(tmp_path / "a", "Old.Show", [64 * KiB], seed=11)
    by_ratio = payload(tmp_path / "b", "Shared.Film", [200 * KiB, 60 * KiB], seed=12)
    not_yet = payload(tmp_path / "c", "Fresh.Show", [64 * KiB], seed=13)
    unfinished = payload(tmp_path / "d", "Busy.Show", [64 * KiB], seed=14)
    for item in (by_time, by_ratio, not_yet, unfinished):
        await seeding(client, item)
    # a local peer takes one from the seedbox: its ratio goes above 0
    await asyncio.to_thread(leech, by_ratio.torrent, seedbox_qbt.peer_port, tmp_path / "peer")

    async def figures() -> Torrent | None:
        timed, shared = await listed(client, by_time), await listed(client, by_ratio)
        assert timed is not None and shared is not None
        ready = (timed.seeding_time or 0) >= 1 and (shared.ratio or 0) >= 0.5
        return shared if ready else None

    shared = await eventually(figures, "a seeding time and a ratio reported")
    assert shared.ratio is not None and shared.ratio > 0
    add_item(store, "by_time", by_time.hash, CleanupPlan(seeding_time=1))
    add_item(store, "by_ratio", by_ratio.hash, CleanupPlan(ratio=0.5, delete_data=False))
    add_item(store, "not_yet", not_yet.hash, CleanupPlan(ratio=100, seeding_time=30 * DAY))
    # goals reached, but not done (transferring) or still in a post-processing step
    add_item(store, "moving", unfinished.hash, CleanupPlan(seeding_time=1), ItemState.VERIFYING)
    add_item(store, "in_step", unfinished.hash, CleanupPlan(seeding_time=1), step="handoff")
    add_item(store, "vanished", "ab" * 20, CleanupPlan(ratio=1))
    records = CleanupRecords(store)
    watcher = CleanupWatcher(records, lambda sb: client if sb == "sb1" else None)

    listing = await watcher.run_once(dry_run=True)

    reasons = {d.item_id: d.reason for d in listing}
    assert reasons.keys() == {"by_time", "by_ratio", "vanished"}
    assert reasons["by_time"].startswith("seeding time ") and reasons["by_time"].endswith("≥ 1s")
    assert reasons["by_ratio"].startswith("ratio ") and reasons["by_ratio"].endswith(" ≥ 0.5")
    assert reasons["vanished"] == GONE
    assert not any(d.removed for d in listing)
    for item in (by_time, by_ratio, not_yet, unfinished):
        assert await listed(client, item) is not None
    assert records.cleaned("by_time") is None

    done = await watcher.run_once()

    assert {(d.item_id, d.removed) for d in done} == {
        ("by_time", True),
        ("by_ratio", True),
        ("vanished", False),
    }
    assert await listed(client, by_time) is None and await listed(client, by_ratio) is None
    assert await listed(client, not_yet) is not None
    assert await listed(client, unfinished) is not None
    cleaned = records.cleaned("by_ratio")
    assert cleaned is not None and cleaned.removed and not cleaned.data_deleted
    assert cleaned.reason.startswith("ratio ") and cleaned.reason.endswith(" ≥ 0.5")
    assert by_ratio.seedbox_copy.exists()  # delete_data: false

    async def deleted() -> bool | None:
        return True if not by_time.seedbox_copy.exists() else None

    await eventually(deleted, "the data of the one removed with its data")
    vanished = records.cleaned("vanished")
    assert vanished is not None and not vanished.removed and vanished.reason == GONE
    # recorded: not looked at again
    assert await watcher.run_once(dry_run=True) == []


async def test_a_seedbox_without_a_client_is_passed_over(store: Store) -> None:
    add_item(store, "x", "cd" * 20, CleanupPlan(ratio=0))
    assert await CleanupWatcher(CleanupRecords(store), lambda _sb: None).run_once() == []
    assert CleanupRecords(store).cleaned("x") is None


async def test_at_once_step_removes_and_is_idempotent(
    tmp_path: Path, client: QbittorrentClient
) -> None:
    item = payload(tmp_path, "Now.Show", [64 * KiB], seed=15)
    await seeding(client, item)
    landed = Landed("n1", item.name, item.hash, "sb1", None, item.landed, item.landed.parent,
                    PostPlan(cleanup=CleanupPlan(at_once=True)))  # fmt: skip
    step = Cleanup(lambda sb: client if sb == "sb1" else None)

    assert await step.run(landed) == "removed from the seedbox with its data"
    assert await listed(client, item) is None
    assert await step.run(landed) == GONE
    assert item.landed.exists()  # the home copy is never touched

    elsewhere = Landed("n2", item.name, item.hash, "sb2", None, item.landed, item.landed.parent,
                       PostPlan(cleanup=CleanupPlan(at_once=True)))  # fmt: skip
    with pytest.raises(StepError, match="seedbox sb2 has no torrent client"):
        await step.run(elsewhere)
