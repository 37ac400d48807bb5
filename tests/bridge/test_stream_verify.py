"""Piece hashes checked while the SFTP engine writes (transfer/streaming.py), against a
real sshd: a good payload lands verified with nothing read back, a byte bad on the
seedbox is found in the stream and repaired by range, pieces straddling files and an
excluded file are handled, and a resumed transfer (in process, and after kill -9 of a
bridge process) trusts nothing hashed before.

Read-back is counted where every read-back byte passes: verify._stream, which yields
each block bad_pieces hashes (file reads, and zeros for padding or missing files)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config, SeedboxConfig
from q4d_bridge.models import ItemState
from q4d_bridge.postprocess.plan import PostPlan
from q4d_bridge.transfer import verify
from q4d_bridge.transfer.bandwidth import Bandwidth
from q4d_bridge.transfer.engines.base import Engine, ProgressCallback, TransferRequest
from q4d_bridge.transfer.engines.sftp import JOURNAL_DIR, SftpEngine
from q4d_bridge.transfer.landing import staging_dir
from q4d_bridge.transfer.payload import RemoteEntry
from q4d_bridge.transfer.pipeline import Job, Landed, run_transfer
from q4d_bridge.transfer.remote import SeedboxSession
from q4d_bridge.transfer.streaming import PieceStream, PieceTally, StreamSlot
from q4d_bridge.transfer.verify import TorrentInfo, bad_pieces

from tests.bridge.test_crash import online_count
from tests.bridge.test_e2e import digest_tree
from tests.bridge.test_verify import flip
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import Recorder, publish, recording
from tests.helpers.services import Mosquitto, SshServer
from tests.helpers.torrents import random_file, torrent_of

pytestmark = pytest.mark.timeout(60)
PIECE = 16 * 1024


class ReadBack:
    """Bytes the read-back check hashed, counted."""

    def __init__(self) -> None:
        self.bytes = 0


@pytest.fixture
def read_back(monkeypatch: pytest.MonkeyPatch) -> ReadBack:
    counted = ReadBack()
    original = verify._stream

    def counting(*args: Any) -> Iterator[bytes]:
        for block in original(*args):
            counted.bytes += len(block)
            yield block

    monkeypatch.setattr(verify, "_stream", counting)
    return counted


class Quiet:
    def __init__(self) -> None:
        self.done = 0

    def phase(self, state: ItemState, remote: RemoteEntry) -> None:
        pass

    def progress(self, done: int) -> None:
        self.done = done

    def heartbeat(self) -> None:
        pass


class CancelHalfWay(Quiet):
    """Cancels the attempt from its own progress report, so a busy machine cannot let
    the whole payload through before the test gets to run."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.attempt: asyncio.Future[object] | None = None

    def progress(self, done: int) -> None:
        super().progress(done)
        if done >= self.at and self.attempt is not None:
            self.attempt.cancel()


class AfterFetch:
    """The real engine, then `then()` once it returned (before the check)."""

    def __init__(self, inner: Engine, then: Any) -> None:
        self.inner, self.name, self.then = inner, inner.name, then

    def warm(self, seedbox: SeedboxConfig) -> None:
        self.inner.warm(seedbox)

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        await self.inner.fetch(request, on_progress)
        self.then()


def config_for(tmp_path: Path, sshd: SshServer, **transfers: Any) -> Config:
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key,
        known_hosts=sshd.known_hosts, ssh_port=sshd.port, user=sshd.user,
    )  # fmt: skip
    raw["transfers"].update(min_free_space=0, max_repairs=1, **transfers)
    # Small chunks over three connections: a piece's blocks arrive out of order.
    raw["transfers"]["sftp"] = {"connections": 3, "chunk_size": "64KiB", "max_requests": 4}
    return parse_config(raw)


async def transfer(
    config: Config,
    remote: Path,
    data: bytes,
    *,
    exclude: tuple[str, ...] = (),
    wrap: Any = None,
    reporter: Quiet | None = None,
) -> Landed:
    seedbox = config.seedboxes["sb1"]
    session = SeedboxSession(seedbox)
    engine = SftpEngine(config.transfers.sftp, Bandwidth(config.transfers.bandwidth_limit))
    library = config.data_dir.parent / "library" / "other"

    async def lookup() -> TorrentInfo:
        return TorrentInfo.from_bytes(data)

    job = Job(
        "item1", seedbox, str(remote), library, library / remote.name,
        max_repairs=config.transfers.max_repairs,
        stream_verify=config.transfers.stream_verify, plan=PostPlan(exclude=exclude),
    )  # fmt: skip
    try:
        return await run_transfer(
            job, session=session, engine=wrap(engine) if wrap else engine,
            reporter=reporter or Quiet(), torrent=lookup,
        )  # fmt: skip
    finally:
        await session.close()
        await engine.close()


def season(root: Path) -> Path:
    """Files whose ends fall inside pieces, so pieces straddle two or three files."""
    payload = root / "Show.S01"
    for n, size in enumerate([5 * PIECE + 1234, 700, 3 * PIECE - 5, 9 * PIECE + 77]):
        random_file(payload / f"e{n}.mkv", size, seed=n)
    return payload


async def test_good_payload_lands_with_nothing_read_back(
    tmp_path: Path, sshd: SshServer, read_back: ReadBack
) -> None:
    remote = random_file(tmp_path / "seedbox" / "film.mkv", 3 * 2**20 + 999, seed="f")
    config = config_for(tmp_path, sshd)
    landed = await transfer(config, remote, torrent_of(remote, piece_size=PIECE))
    assert (landed.verified, landed.repaired_pieces) == ("pieces", 0)
    final = tmp_path / "library" / "other" / "film.mkv"
    assert final.read_bytes() == remote.read_bytes()
    assert read_back.bytes == 0


async def test_streaming_off_reads_the_payload_back(
    tmp_path: Path, sshd: SshServer, read_back: ReadBack
) -> None:
    """The switch is real: off, the whole payload is hashed from disk (the counter works)."""
    remote = random_file(tmp_path / "seedbox" / "film.mkv", 2**20 + 3, seed="g")
    config = config_for(tmp_path, sshd, stream_verify=False)
    landed = await transfer(config, remote, torrent_of(remote, piece_size=PIECE))
    assert landed.verified == "pieces"
    assert read_back.bytes == remote.stat().st_size


@pytest.mark.parametrize("kind", ["v1", "hybrid"])  # hybrid: BEP 47 padding files
async def test_bad_seedbox_byte_is_found_while_streaming_and_repaired(
    tmp_path: Path, sshd: SshServer, read_back: ReadBack, kind: str
) -> None:
    """The seedbox serves a bad byte in e2 during the transfer (then the good one): the
    stream fails that piece, the repair re-fetches its ranges, and only the repaired
    piece is read back."""
    payload = season(tmp_path / "seedbox")
    data = torrent_of(payload, kind, piece_size=PIECE)  # type: ignore[arg-type]
    bad = payload / "e2.mkv"
    flip(bad, PIECE + 10)
    config = config_for(tmp_path, sshd)
    landed = await transfer(
        config, payload, data, wrap=lambda inner: AfterFetch(inner, lambda: flip(bad, PIECE + 10))
    )
    assert (landed.verified, landed.repaired_pieces) == ("pieces", 1)
    assert digest_tree(tmp_path / "library" / "other" / "Show.S01") == digest_tree(payload)
    assert read_back.bytes == PIECE  # the repaired piece's re-check, nothing else


async def test_straddling_pieces_and_an_excluded_file(
    tmp_path: Path, sshd: SshServer, read_back: ReadBack
) -> None:
    """e1 (700 bytes, inside one piece shared with e0 and e2) stays on the seedbox: the
    one piece that holds it is checked as before (its excluded bytes fetched apart),
    every other piece in the stream."""
    payload = season(tmp_path / "seedbox")
    data = torrent_of(payload, piece_size=PIECE)
    config = config_for(tmp_path, sshd)
    landed = await transfer(config, payload, data, exclude=("e1.mkv",))
    assert (landed.verified, landed.repaired_pieces) == ("pieces", 0)
    landed_tree = digest_tree(tmp_path / "library" / "other" / "Show.S01")
    assert landed_tree == {k: v for k, v in digest_tree(payload).items() if k != "e1.mkv"}
    assert read_back.bytes == PIECE


async def test_excluded_file_with_a_bad_byte_beside_it_is_repaired(
    tmp_path: Path, sshd: SshServer, read_back: ReadBack
) -> None:
    """The piece shared with the excluded file is bad on the way: found by the read-back
    (not the stream), repaired; a bad streamed piece elsewhere is repaired too."""
    payload = season(tmp_path / "seedbox")
    data = torrent_of(payload, piece_size=PIECE)
    flips = [(payload / "e2.mkv", 20), (payload / "e3.mkv", 4 * PIECE)]
    for path, offset in flips:
        flip(path, offset)

    def restore() -> None:
        for path, offset in flips:
            flip(path, offset)

    config = config_for(tmp_path, sshd)
    landed = await transfer(
        config, payload, data, exclude=("e1.mkv",), wrap=lambda inner: AfterFetch(inner, restore)
    )
    assert (landed.verified, landed.repaired_pieces) == ("pieces", 2)
    landed_tree = digest_tree(tmp_path / "library" / "other" / "Show.S01")
    assert landed_tree == {k: v for k, v in digest_tree(payload).items() if k != "e1.mkv"}


async def test_resumed_transfer_rechecks_what_was_there_before(
    tmp_path: Path, sshd: SshServer, read_back: ReadBack
) -> None:
    """A transfer stopped half-way (as by a crash: the new attempt has a new hasher),
    then a byte of what it had written rots in staging. The resumed attempt hashes
    what it fetches as it arrives and reads back only pieces it did not see whole:
    the rotten byte is found and repaired."""
    size = 4 * 2**20
    remote = random_file(tmp_path / "seedbox" / "film.mkv", size, seed="r")
    data = torrent_of(remote, piece_size=PIECE)
    config = config_for(tmp_path, sshd, bandwidth_limit=size // 2)  # about 2 s for the whole
    reporter = CancelHalfWay(size // 2)
    attempt = asyncio.ensure_future(transfer(config, remote, data, reporter=reporter))
    reporter.attempt = attempt
    with pytest.raises(asyncio.CancelledError):
        await attempt
    stage = staging_dir(tmp_path / "library" / "other", "item1")
    journal = stage / JOURNAL_DIR / hashlib.sha1(b"").hexdigest()
    done_chunks = {int(n) for n in journal.read_text().split()}
    assert 0 < len(done_chunks) < size // 2**16
    rotten = random.Random(1).choice(sorted(done_chunks)) * 2**16 + 100
    torrent = TorrentInfo.from_bytes(data)
    assert rotten // PIECE not in bad_pieces(stage / "film.mkv", torrent)
    flip(stage / "film.mkv", rotten)
    assert rotten // PIECE in bad_pieces(stage / "film.mkv", torrent)
    read_back.bytes = 0

    landed = await transfer(config_for(tmp_path, sshd), remote, data)
    assert (landed.verified, landed.repaired_pieces) == ("pieces", 1)
    assert (tmp_path / "library" / "other" / "film.mkv").read_bytes() == remote.read_bytes()
    # Read back: the pieces already in staging (and the repaired one), not the rest.
    journaled = len(done_chunks) * 2**16
    assert journaled + PIECE <= read_back.bytes <= journaled + 6 * 2**16 + PIECE


def test_tally_in_any_order_with_padding_matches_the_read_back(tmp_path: Path) -> None:
    """Blocks of a hybrid torrent (padding files) fed in random order, one bad: the
    tally settles every piece, and agrees with bad_pieces."""
    payload = season(tmp_path)
    torrent = TorrentInfo.from_bytes(torrent_of(payload, "hybrid", piece_size=PIECE))
    flip(payload / "e3.mkv", 2 * PIECE + 3)
    blocks = [
        (f.rel, offset, (payload / f.rel).read_bytes()[offset : offset + 5000])
        for f in torrent.files
        if not f.padding
        for offset in range(0, f.length, 5000)
    ]
    random.Random(7).shuffle(blocks)
    tally = PieceTally(torrent)
    for rel, offset, block in blocks:
        tally.feed(rel, offset, block)
    settled = tally.settled()
    assert sorted(settled.bad) == bad_pieces(payload, torrent)
    assert len(settled.bad) == 1
    assert settled.good | settled.bad == set(range(len(torrent.pieces)))
    assert tally.held_bytes == 0


def test_tally_trusts_only_what_it_saw_whole(tmp_path: Path) -> None:
    """A missing block, a block written twice and a piece dropped for memory: none of
    those pieces is settled either way."""
    payload = random_file(tmp_path / "f.bin", 8 * PIECE, seed=2)
    torrent = TorrentInfo.from_bytes(torrent_of(payload, piece_size=PIECE))
    content = payload.read_bytes()
    tally = PieceTally(torrent, hold_limit=PIECE)
    half = PIECE // 2
    for offset in range(0, len(content), half):
        if offset == 1 * PIECE:  # piece 1 misses its first half
            continue
        tally.feed("", offset, content[offset : offset + half])
        if offset == 2 * PIECE:  # piece 2 gets its first half twice
            tally.feed("", offset, content[offset : offset + half])
    assert 1 not in tally.good | tally.bad
    assert 2 not in tally.good | tally.bad
    assert tally.good == {0, 3, 4, 5, 6, 7}
    dropping = PieceTally(torrent, hold_limit=PIECE)
    dropping.feed("", 5 * PIECE + half, content[5 * PIECE + half : 6 * PIECE])
    dropping.feed("", 6 * PIECE + 1, content[6 * PIECE + 1 : 7 * PIECE])  # over the limit
    dropping.feed("", 6 * PIECE, content[6 * PIECE : 6 * PIECE + 1])
    dropping.feed("", 5 * PIECE, content[5 * PIECE : 5 * PIECE + half])
    assert dropping.settled().good == {5}
    assert dropping.held_bytes == 0
    # Overlapping out-of-order blocks: the count of bytes seen reaches the piece's
    # size with a gap left; the piece is not settled, and holds nothing afterwards.
    overlapping = PieceTally(torrent)
    overlapping.feed("", 3 * PIECE + 100, content[3 * PIECE + 100 : 4 * PIECE])
    overlapping.feed("", 3 * PIECE + 50, content[3 * PIECE + 50 : 3 * PIECE + 150])
    overlapping.feed("", 3 * PIECE, content[3 * PIECE : 3 * PIECE + 10])
    assert overlapping.settled().good | overlapping.settled().bad == set()
    assert overlapping.held_bytes == 0


class SlowTally(PieceTally):
    def feed(self, rel: str, offset: int, data: bytes) -> None:
        time.sleep(0.001)
        super().feed(rel, offset, data)


async def test_attempt_cancelled_while_hashing_leaves_no_worker(tmp_path: Path) -> None:
    """Cancelled while waiting for the worker to hash a long queue: close() stops it
    without hashing the rest, and it is gone when close() returns."""
    payload = random_file(tmp_path / "f.bin", 64 * PIECE, seed=3)
    torrent = TorrentInfo.from_bytes(torrent_of(payload, piece_size=PIECE))
    content = payload.read_bytes()
    slot = StreamSlot()
    stream = PieceStream(SlowTally(torrent), queue_limit=len(content) * 100)
    slot.attach(stream)
    for _ in range(20):  # a second of work for the worker
        for offset in range(0, len(content), PIECE):
            slot.written("", offset, content[offset : offset + PIECE])
    finishing = asyncio.ensure_future(slot.finish())
    await asyncio.sleep(0)
    finishing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await finishing
    await slot.close()
    assert not stream.thread.is_alive()
    assert stream.processed < stream.submitted
    assert await slot.finish() is None


async def test_kill_9_then_resume_rechecks_what_the_dead_process_hashed(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """The bridge process is killed mid-transfer (its in-memory hashes die with it), a
    byte it had written and journaled rots in staging, and the restarted bridge must
    find it: the item lands repaired and byte-identical, verified by pieces."""
    remote, library, session = tmp_path / "seedbox", tmp_path / "library", tmp_path / "session"
    size, chunk = 32 * 2**20, 2**20  # transfers.sftp.chunk_size
    source = random_file(remote / "film.mkv", size, seed="k")
    data = torrent_of(source, piece_size=256 * 1024)
    info_hash = TorrentInfo.from_bytes(data).info_hash
    session.mkdir()
    (session / f"{info_hash.upper()}.torrent").write_bytes(data)
    config = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user, remote_root=str(remote),
    )  # fmt: skip
    config["seedboxes"][0].update(engine="sftp", torrent_file=f"{session}/{{HASH}}.torrent")
    config["transfers"].update(max_concurrent=1, bandwidth_limit="8MiB", min_free_space=0)
    bridge = BridgeProcess(tmp_path / "proc", config)
    event = {"v": 1, "event_id": "ev-1", "path": str(source), "hash": info_hash}

    def progress(rec: Recorder) -> int:
        items = [m.json() for m in rec.on("q4d/bridge/test/item/") if m.payload]
        return max((i["bytes_done"] for i in items), default=0)

    async with recording(mosquitto.port) as rec:
        bridge.start()
        try:
            await rec.wait_for(lambda: online_count(rec) >= 1, 20, "bridge online")
            await publish(
                mosquitto.port, [("q4d/seedbox/sb1/completed", json.dumps(event).encode())]
            )
            await rec.wait_for(lambda: progress(rec) >= size * 0.4, 30, "40% transferred")
            bridge.kill()
            (stage,) = (library / "other" / ".q4d-partial").iterdir()
            journal = stage / JOURNAL_DIR / hashlib.sha1(b"").hexdigest()
            done_chunks = sorted(int(n) for n in journal.read_text().split("\n")[:-1])
            assert done_chunks
            flip(stage / "film.mkv", done_chunks[len(done_chunks) // 2] * chunk + 4321)
            bridge.start()
            await rec.wait_for(lambda: rec.events("completed"), 60, "completion after restart")
        finally:
            bridge.stop()
    (completed,) = rec.events("completed")
    assert (completed["verified"], completed["repaired_pieces"]) == ("pieces", 1)
    assert (library / "other" / "film.mkv").read_bytes() == source.read_bytes()
