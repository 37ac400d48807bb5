"""For the hand-off and clean-up tests: a payload a real seedbox client seeds from data
already there (no download), a landed copy of it, the repair the transfer layer does
(byte ranges copied again from the seedbox's copy), and a leecher that takes a torrent
from a client on loopback so the client's ratio rises."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from q4d_bridge.clients.base import ManagedTorrentClient, NewTorrent, Torrent
from q4d_bridge.postprocess.base import Landed
from q4d_bridge.postprocess.cleanup import find
from q4d_bridge.transfer.verify import Range

from tests.helpers.seeder import make_payload, make_torrent
from tests.helpers.services import LOOPBACK

LEECH_TIMEOUT = 30.0


@dataclass(frozen=True)
class Payload:
    name: str
    seedbox_copy: Path  # the file or folder the seedbox client seeds
    landed: Path  # the library's copy
    files: dict[str, bytes]
    torrent: bytes
    hash: str  # v1


def payload(root: Path, name: str, sizes: Sequence[int], seed: int = 0) -> Payload:
    """Random data at root/seedbox/name, its .torrent (no trackers) and a landed copy at
    root/library/name."""
    files = make_payload(root / "seedbox", name, sizes, seed)
    source = root / "seedbox" / name
    landed = root / "library" / name
    landed.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, landed)
    else:
        shutil.copyfile(source, landed)
    torrent = make_torrent(source)
    import libtorrent as lt

    info_hash = str(lt.torrent_info(torrent).info_hashes().v1)
    return Payload(name, source, landed, files, torrent, info_hash)


async def eventually[T](
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30
) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := await probe()) is not None:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def seeding(client: ManagedTorrentClient, item: Payload) -> Torrent:
    """The payload added to the seedbox client from its data, once checked complete."""
    await client.add(NewTorrent(torrent_file=item.torrent, save_path=str(item.seedbox_copy.parent)))

    async def complete() -> Torrent | None:
        found = find(await client.torrents(), item.hash)
        return found if found is not None and found.complete else None

    return await eventually(complete, f"{item.name} seeding")


class CopyRanges:
    """A repair as SeedboxSession.fetch_ranges does it, from a local copy of the seedbox's
    payload; it keeps the ranges it was given."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.calls: list[list[Range]] = []

    async def __call__(self, landed: Landed, ranges: Sequence[Range]) -> None:
        self.calls.append(list(ranges))
        for rng in ranges:
            with (self.source / rng.rel if rng.rel else self.source).open("rb") as handle:
                handle.seek(rng.offset)
                data = handle.read(rng.length)
            with (landed.path / rng.rel if rng.rel else landed.path).open("r+b") as handle:
                handle.seek(rng.offset)
                handle.write(data)


def corrupt(path: Path, offset: int) -> None:
    """One byte flipped in place."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def leech(torrent: bytes, peer_port: int, workdir: Path) -> None:
    """Download the torrent from the client listening on 127.0.0.1:peer_port, with a
    libtorrent session in this process (offline: no DHT, LSD, UPnP, NAT-PMP, trackers)."""
    import libtorrent as lt

    session: Any = lt.session(
        {
            "listen_interfaces": f"{LOOPBACK}:0",
            "enable_dht": False,
            "dht_bootstrap_nodes": "",
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "alert_mask": lt.alert_category.error,
        }
    )
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = str(workdir)
    params.trackers = []
    params.flags = (params.flags | lt.torrent_flags.override_trackers) & ~lt.torrent_flags.paused
    handle = session.add_torrent(params)
    handle.connect_peer((LOOPBACK, peer_port))
    deadline = time.monotonic() + LEECH_TIMEOUT
    while not handle.status().is_seeding:
        if time.monotonic() > deadline:
            raise AssertionError(f"the leecher got {handle.status().progress:.0%}")
        time.sleep(0.1)
