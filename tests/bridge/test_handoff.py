"""The hand-off to a home torrent client against real daemons on loopback: a home
qbittorrent-nox (and transmission-daemon) rechecks a landed payload to 100 %, and only
then is the torrent removed from the seedbox's client (another qbittorrent-nox seeding
it); a corrupt byte is repaired by piece range and rechecked; with no repair possible
the step fails and the seedbox keeps its torrent; the home client, or the process
running the step, killed (SIGKILL) mid-recheck, and the step run again, completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from q4d_bridge.clients.base import Torrent
from q4d_bridge.clients.home import HomeClient, HomeQbittorrent, make_home_client
from q4d_bridge.clients.qbittorrent import QbittorrentClient
from q4d_bridge.config.model import ClientConfig, HomeClientConfig
from q4d_bridge.postprocess.base import Landed, StepError
from q4d_bridge.postprocess.cleanup import find
from q4d_bridge.postprocess.handoff import Handoff
from q4d_bridge.postprocess.plan import HandoffPlan, PostPlan
from q4d_bridge.transfer.errors import ErrorCode, TransferError
from q4d_bridge.transfer.verify import Range

from tests.conftest import allow_loopback_sockets
from tests.helpers.handoff import CopyRanges, Payload, corrupt, eventually, payload, seeding
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.seeder import PIECE_SIZE
from tests.seedbox.support import Transmission

pytestmark = pytest.mark.timeout(180)
KiB = 1024


async def no_sleep(_seconds: float) -> None:
    """Between client retries: a test need not wait out the backoff."""


def client_config(daemon: QBittorrent) -> ClientConfig:
    return ClientConfig("qbittorrent", daemon.url, daemon.username, daemon.password, True)


def home_config(daemon: QBittorrent | Transmission) -> HomeClientConfig:
    kind = "qbittorrent" if isinstance(daemon, QBittorrent) else "transmission"
    return HomeClientConfig(kind, daemon.url, daemon.username, daemon.password, recheck_timeout=60)


@pytest.fixture(scope="module")
def home_qbt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QBittorrent]:
    allow_loopback_sockets()  # module scope: before the per-test fixture allows them
    with QBittorrent(tmp_path_factory.mktemp("home")) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def seedbox_qbt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QBittorrent]:
    allow_loopback_sockets()  # module scope: before the per-test fixture allows them
    with QBittorrent(tmp_path_factory.mktemp("seedbox")) as daemon:
        yield daemon


@pytest.fixture
async def seedbox(seedbox_qbt: QBittorrent) -> AsyncIterator[RemovalWatch]:
    client = RemovalWatch(client_config(seedbox_qbt), sleep=no_sleep)
    yield client
    await client.close()


@pytest.fixture
async def home(home_qbt: QBittorrent) -> AsyncIterator[QbittorrentClient]:
    """The home daemon as a test looks at it (the step has its own client)."""
    client = QbittorrentClient(client_config(home_qbt), sleep=no_sleep)
    yield client
    await client.close()


class RemovalWatch(QbittorrentClient):
    """The seedbox's client, noting what the home client showed when it was asked to
    remove a torrent."""

    home: QbittorrentClient | None = None
    home_at_removal: list[Torrent | None]

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None:
        if self.home is not None:
            self.home_at_removal = [find(await self.home.torrents(), h) for h in hashes]
        await super().remove(hashes, delete_data=delete_data)


def landed(item: Payload, plan: HandoffPlan) -> Landed:
    return Landed(
        item_id="i1",
        name=item.name,
        hash=item.hash,
        seedbox="sb1",
        category=None,
        path=item.landed,
        root=item.landed.parent,
        plan=PostPlan(handoff=plan),
    )


def handoff(
    daemon: QBittorrent | Transmission,
    item: Payload,
    seedbox: QbittorrentClient,
    repair: CopyRanges | None = None,
    *,
    torrent: bytes | None = None,
    home_client: type[HomeClient] | None = None,
) -> Handoff:
    async def torrent_for(_landed: Landed) -> bytes | None:
        return item.torrent if torrent is None else torrent or None

    def make(config: HomeClientConfig) -> HomeClient:
        if home_client is not None:
            return home_client(ClientConfig(config.type, config.url, config.username,
                                            config.password, True), sleep=no_sleep)  # fmt: skip
        return make_home_client(config, sleep=no_sleep)

    return Handoff(
        {"home": home_config(daemon)},
        torrent_for=torrent_for,
        repair=repair or CopyRanges(item.seedbox_copy),
        seedbox_client=lambda sb: seedbox if sb == "sb1" else None,
        make_client=make,
    )


async def on_seedbox(seedbox: QbittorrentClient, item: Payload) -> Torrent | None:
    return find(await seedbox.torrents(), item.hash)


def unchanged(item: Payload) -> bool:
    return all(
        (item.landed / rel if rel else item.landed).read_bytes() == data
        for rel, data in item.files.items()
    )


async def test_rechecked_to_100_then_removed_from_the_seedbox(
    tmp_path: Path, home_qbt: QBittorrent, home: QbittorrentClient, seedbox: RemovalWatch
) -> None:
    item = payload(tmp_path, "Show.S01", [300 * KiB, 150 * KiB], seed=1)
    await seeding(seedbox, item)
    seedbox.home = home
    plan = HandoffPlan(client="home", category="tv", tags=("q4d",), remove_from_seedbox=True)

    detail = await handoff(home_qbt, item, seedbox).run(landed(item, plan))

    assert detail == "home qBittorrent checked it 100 %; removed from the seedbox with its data"
    (at_removal,) = seedbox.home_at_removal
    assert at_removal is not None and at_removal.progress == 1.0
    assert "checking" not in at_removal.state
    assert await on_seedbox(seedbox, item) is None

    async def deleted() -> bool | None:
        return True if not item.seedbox_copy.exists() else None

    await eventually(deleted, "the seedbox's data deleted")
    mine = find(await home.torrents(), item.hash)
    assert mine is not None and mine.category == "tv" and mine.tags == ("q4d",)
    assert Path(mine.content_path) == item.landed
    assert unchanged(item)

    async def started() -> Torrent | None:
        found = find(await home.torrents(), item.hash)
        return found if found is not None and "paused" not in found.state else None

    await eventually(started, "seeding at home")
    # again (a retry, a restart): confirmed once more, the seedbox's torrent gone already
    again = await handoff(home_qbt, item, seedbox).run(landed(item, plan))
    assert again == "home qBittorrent checked it 100 %; gone from the seedbox already"
    assert unchanged(item)


async def test_a_corrupt_byte_is_repaired_by_range_and_rechecked(
    tmp_path: Path, home_qbt: QBittorrent, home: QbittorrentClient, seedbox: RemovalWatch
) -> None:
    item = payload(tmp_path, "Film.2020.mkv", [5 * PIECE_SIZE + 1000], seed=2)
    await seeding(seedbox, item)
    seedbox.home = home
    corrupt(item.landed, 2 * PIECE_SIZE + 7)
    repair = CopyRanges(item.seedbox_copy)
    plan = HandoffPlan(client="home", remove_from_seedbox=True, delete_seedbox_data=False)

    detail = await handoff(home_qbt, item, seedbox, repair).run(landed(item, plan))

    assert detail == ("home qBittorrent checked it 100 % after 1 repair; removed from the seedbox")
    assert repair.calls == [[Range("", 2 * PIECE_SIZE, PIECE_SIZE)]]
    assert unchanged(item)
    assert await on_seedbox(seedbox, item) is None
    assert item.seedbox_copy.exists()  # delete_seedbox_data: false


class NoRepair(CopyRanges):
    """A repair that reaches the seedbox and changes nothing (its copy is bad too)."""

    async def __call__(self, landed: Landed, ranges: Sequence[Range]) -> None:
        self.calls.append(list(ranges))


async def test_no_repair_possible_fails_and_the_seedbox_keeps_its_torrent(
    tmp_path: Path, home_qbt: QBittorrent, home: QbittorrentClient, seedbox: RemovalWatch
) -> None:
    item = payload(tmp_path, "Album", [3 * PIECE_SIZE, 2 * PIECE_SIZE], seed=3)
    await seeding(seedbox, item)
    corrupt(item.landed / "part00.bin", 10)
    corrupt(item.landed / "extras" / "part01.bin", PIECE_SIZE + 10)
    plan = HandoffPlan(client="home", remove_from_seedbox=True)
    repair = NoRepair(item.seedbox_copy)

    with pytest.raises(StepError) as failed:
        await handoff(home_qbt, item, seedbox, repair).run(landed(item, plan))

    assert str(failed.value) == ("home qBittorrent: 2 of 5 pieces still missing after 2 repairs")
    assert not failed.value.transient
    assert len(repair.calls) == 2
    assert await on_seedbox(seedbox, item) is not None
    assert item.landed.is_dir()  # the home copy stays, as it landed

    # the seedbox unreachable for a repair: retried later
    class Unreachable(CopyRanges):
        async def __call__(self, landed: Landed, ranges: Sequence[Range]) -> None:
            raise TransferError(ErrorCode.CONNECTION, "connection refused")

    with pytest.raises(StepError) as failed:
        await handoff(home_qbt, item, seedbox, Unreachable(item.seedbox_copy)).run(
            landed(item, plan)
        )
    assert failed.value.transient
    assert "2 of 5 pieces missing; repairing them from the seedbox failed" in str(failed.value)
    assert await on_seedbox(seedbox, item) is not None


async def test_refusals_before_anything_is_added(
    tmp_path: Path, home_qbt: QBittorrent, home: QbittorrentClient, seedbox: RemovalWatch
) -> None:
    item = payload(tmp_path, "Doc.pdf", [20 * KiB], seed=4)
    plan = HandoffPlan(client="home", remove_from_seedbox=True)

    with pytest.raises(StepError, match=r"no \.torrent for Doc\.pdf") as failed:
        await handoff(home_qbt, item, seedbox, torrent=b"").run(landed(item, plan))
    assert not failed.value.transient

    renamed = item.landed.rename(item.landed.with_name("Doc (2).pdf"))
    moved = Landed("i1", item.name, item.hash, "sb1", None, renamed, renamed.parent,
                   PostPlan(handoff=plan))  # fmt: skip
    with pytest.raises(StepError, match=r"landed as 'Doc \(2\)\.pdf'"):
        await handoff(home_qbt, item, seedbox).run(moved)

    with pytest.raises(StepError, match="no home client 'elsewhere'"):
        await handoff(home_qbt, item, seedbox).run(landed(item, HandoffPlan(client="elsewhere")))
    assert find(await home.torrents(), item.hash) is None


class KilledMidRecheck(HomeQbittorrent):
    """The home daemon SIGKILLed as soon as it was asked to recheck."""

    daemon: QBittorrent

    async def recheck(self, info_hash: str) -> None:
        await super().recheck(info_hash)
        self.daemon.kill()


async def test_home_client_killed_mid_recheck_then_the_rerun_completes(
    tmp_path: Path, home_qbt: QBittorrent, home: QbittorrentClient, seedbox: RemovalWatch
) -> None:
    item = payload(tmp_path, "Show.S02", [400 * KiB, 100 * KiB], seed=5)
    await seeding(seedbox, item)
    seedbox.home = home
    plan = HandoffPlan(client="home", remove_from_seedbox=True)
    KilledMidRecheck.daemon = home_qbt
    try:
        with pytest.raises(StepError) as failed:
            await handoff(home_qbt, item, seedbox, home_client=KilledMidRecheck).run(
                landed(item, plan)
            )
    finally:
        home_qbt.start()
    assert failed.value.transient, failed.value
    assert "unreachable" in str(failed.value)
    assert await on_seedbox(seedbox, item) is not None
    assert unchanged(item)

    detail = await handoff(home_qbt, item, seedbox).run(landed(item, plan))

    assert detail.startswith("home qBittorrent checked it 100 %; removed from the seedbox")
    assert await on_seedbox(seedbox, item) is None
    assert unchanged(item)


@pytest.fixture
def home_transmission(tmp_path: Path) -> Iterator[Transmission]:
    with Transmission(tmp_path / "transmission") as daemon:
        yield daemon


async def test_transmission_at_home_repairs_and_confirms(
    tmp_path: Path, home_transmission: Transmission, seedbox: RemovalWatch
) -> None:
    item = payload(tmp_path, "Season", [3 * PIECE_SIZE + 5, 2 * PIECE_SIZE], seed=6)
    await seeding(seedbox, item)
    corrupt(item.landed / "extras" / "part01.bin", 3)
    repair = CopyRanges(item.seedbox_copy)
    plan = HandoffPlan(client="home", category="tv", tags=("q4d",), remove_from_seedbox=True)

    detail = await handoff(home_transmission, item, seedbox, repair).run(landed(item, plan))

    assert detail == (
        "home Transmission checked it 100 % after 1 repair; removed from the seedbox with its data"
    )
    # libtorrent pads the first file to a piece boundary (a BEP 47 pad file, not on
    # disk): the bad piece is the second file's first
    assert repair.calls == [[Range("extras/part01.bin", 0, PIECE_SIZE)]]
    assert unchanged(item)
    assert await on_seedbox(seedbox, item) is None


async def test_the_bridge_killed_mid_recheck_then_the_rerun_completes(
    tmp_path: Path, home_qbt: QBittorrent, home: QbittorrentClient, seedbox: RemovalWatch
) -> None:
    """The process running the step SIGKILLed while it waits for the home client's
    recheck: the seedbox keeps its torrent, the payload is intact, and the step run
    again finds the torrent at home, confirms it and only then removes it."""
    item = payload(tmp_path, "Show.S03", [300 * KiB], seed=7)
    await seeding(seedbox, item)
    (tmp_path / "t.torrent").write_bytes(item.torrent)
    login = {"url": home_qbt.url, "username": home_qbt.username, "password": home_qbt.password}
    args = {
        "home": login,
        "seedbox": {"url": seedbox.config.url, "username": seedbox.config.username,
                    "password": seedbox.config.password},
        "torrent": str(tmp_path / "t.torrent"), "landed": str(item.landed),
        "seedbox_copy": str(item.seedbox_copy), "hash": item.hash,
    }  # fmt: skip
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root / 'bridge'}{os.pathsep}{root}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.handoff_run", json.dumps(args)], cwd=root, env=env
    )
    try:
        # Once the home client lists it, the step is rechecking: it waits at least
        # `settle` (3 s) there before it believes a finished check.
        async def added() -> Torrent | None:
            assert proc.poll() is None, "the step ended before it was killed"
            return find(await home.torrents(), item.hash)

        await eventually(added, "the torrent added at home")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert await on_seedbox(seedbox, item) is not None
    assert unchanged(item)

    seedbox.home = home
    plan = HandoffPlan(client="home", remove_from_seedbox=True)
    detail = await handoff(home_qbt, item, seedbox).run(landed(item, plan))

    assert detail == "home qBittorrent checked it 100 %; removed from the seedbox with its data"
    (at_removal,) = seedbox.home_at_removal
    assert at_removal is not None and at_removal.progress == 1.0
    assert unchanged(item)
