"""Seedbox torrent clients really downloading over loopback from a local seeder
(tests/helpers/seeder.py): each of the four clients gets torrents through the bridge's
adapter (`add`), by magnet link and by .torrent, `torrents()` is polled until they are
complete, and what is on disk must be the payload byte for byte.

Per client, the torrents download side by side: Transmission decides whom it wants
pieces from only every 10 s (its rechoke timer), so one after the other would wait that
out each time.

  * single file by magnet: libtorrent clients find the seeder by the magnet's peer
    hint alone (no tracker in it); Transmission and rTorrent ignore x.pe and go
    through the tracker;
  * folder (with a nested file) by .torrent: every client through the tracker;
  * hybrid (v1 + v2) folder by magnet: the libtorrent clients with both hashes;
    rTorrent only with the v1 one (it refuses a magnet with a v2 hash) and writes the
    v1 padding out as files (.pad/…); Transmission 3 refuses hybrid torrents.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from q4d_bridge.clients import make_client
from q4d_bridge.clients.base import (
    ClientError,
    ClientErrorKind,
    ManagedTorrentClient,
    NewTorrent,
    Torrent,
)
from q4d_bridge.config.model import ClientConfig

from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.seeder import MiB, Seeded, Seeder
from tests.seedbox.support import Deluge, RTorrent, Transmission, need

pytestmark = pytest.mark.timeout(120)
DOWNLOAD_TIMEOUT = 60.0
POLL = 0.25
CATEGORY = "tv"


@dataclass
class Leecher:
    """A client daemon on loopback, the bridge's adapter to it, and where it saves."""

    kind: str
    client: ManagedTorrentClient
    downloads: Path

    @property
    def libtorrent(self) -> bool:
        """libtorrent-rasterbar inside: reads x.pe, knows BitTorrent v2."""
        return self.kind in ("qbittorrent", "deluge")


@dataclass
class Case:
    what: str
    seeded: Seeded
    new: NewTorrent
    listed_as: str  # the hash the client lists it under


@contextmanager
def daemon(kind: str, workdir: Path) -> Iterator[tuple[ClientConfig, Path]]:
    """The client daemon of that kind, started, and stopped by PID whatever happens."""
    if kind == "qbittorrent":
        need("qbittorrent-nox")
        with QBittorrent(workdir) as qbt:
            yield ClientConfig(kind, qbt.url, qbt.username, qbt.password, True), qbt.downloads
    elif kind == "transmission":
        need("transmission-daemon")
        with Transmission(workdir) as tr:
            yield ClientConfig(kind, tr.url, tr.username, tr.password, True), tr.downloads
    elif kind == "deluge":
        need("deluged")
        need("deluge-web")
        deluge = Deluge(workdir)
        try:
            deluge.start()
            yield ClientConfig(kind, deluge.url, None, deluge.password, True), deluge.downloads
        finally:
            deluge.stop()
    else:
        need("rtorrent")
        rt = RTorrent(workdir)
        try:
            rt.start()
            yield ClientConfig(kind, rt.url, None, None, True), rt.downloads
        finally:
            rt.stop()


@pytest.fixture(params=["qbittorrent", "transmission", "deluge", "rtorrent"])
async def leecher(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Leecher]:
    kind: str = request.param
    with daemon(kind, tmp_path / kind) as (config, downloads):
        client: Any = make_client(config)
        try:
            yield Leecher(kind, client, downloads)
        finally:
            await client.close()


async def download_all(leecher: Leecher, cases: list[Case], seeder: Seeder) -> dict[str, float]:
    """Adds every case, then polls (bounded) until each is listed complete with the
    payload on disk; returns the seconds each took from its add."""
    added: dict[str, float] = {}
    for case in cases:
        added[case.what] = time.monotonic()
        await leecher.client.add(case.new)
    took: dict[str, float] = {}
    found: dict[str, Torrent | None] = {}
    deadline = time.monotonic() + DOWNLOAD_TIMEOUT
    for _ in range(int(DOWNLOAD_TIMEOUT / POLL) + 1):
        listed = {t.hash: t for t in await leecher.client.torrents()}
        for case in cases:
            got = found[case.what] = listed.get(case.listed_as)
            # Complete is not enough: Transmission's write cache may hold the last
            # blocks for a moment longer.
            fresh = case.what not in took and got is not None and got.complete
            if fresh and not case.seeded.differences(Path(got.content_path)):
                took[case.what] = time.monotonic() - added[case.what]
        if len(took) == len(cases) or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL)
    missing = [
        f"{case.what}: {found.get(case.what)}; on disk: "
        + str(case.seeded.differences(Path(t.content_path)) if (t := found.get(case.what)) else "-")
        for case in cases
        if case.what not in took
    ]
    assert not missing, (
        f"{leecher.kind} did not finish in {DOWNLOAD_TIMEOUT:.0f} s: {missing}; "
        f"the tracker saw: {seeder.announces}"
    )
    return took


async def test_download(leecher: Leecher, seeder: Seeder) -> None:
    single = seeder.seed("Show.S01E01.mkv", [4 * MiB], seed=1)
    folder = seeder.seed("Season 1", [3 * MiB, MiB + 4321], seed=2)
    hybrid = seeder.seed("Film (2024)", [3 * MiB, 512 * 1024 + 1], hybrid=True, seed=3)
    assert hybrid.info_hash_v2 is not None and hybrid.short_v2 is not None
    save = str(leecher.downloads)
    magnet = single.magnet_uri(tracker=False) if leecher.libtorrent else single.magnet
    cases = [
        Case("magnet", single, NewTorrent(magnet=magnet, category=CATEGORY, save_path=save),
             single.info_hash),
        Case(".torrent", folder,
             NewTorrent(torrent_file=folder.torrent, category=CATEGORY, save_path=save),
             folder.info_hash),
    ]  # fmt: skip
    if leecher.libtorrent:
        # Listed under the v2 hash cut to 40 digits, not the v1 one.
        new = NewTorrent(magnet=hybrid.magnet_uri(tracker=False), category=CATEGORY, save_path=save)
        cases.append(Case("hybrid magnet", hybrid, new, hybrid.short_v2))
    elif leecher.kind == "rtorrent":
        with pytest.raises(ClientError, match="did not take the magnet") as refused:
            await leecher.client.add(NewTorrent(magnet=hybrid.magnet, save_path=save))
        assert refused.value.kind is ClientErrorKind.REFUSED
        new = NewTorrent(magnet=hybrid.magnet_uri(v2=False), category=CATEGORY, save_path=save)
        cases.append(Case("hybrid magnet (v1 only)", hybrid, new, hybrid.info_hash))
    elif (await leecher.client.version()).startswith("3."):
        # Transmission 3.00 predates BitTorrent v2: "invalid or corrupt torrent file".
        with pytest.raises(ClientError) as refused:
            await leecher.client.add(NewTorrent(torrent_file=hybrid.torrent, save_path=save))
        assert refused.value.kind is ClientErrorKind.REFUSED
    else:  # Transmission 4 reads hybrid torrents (not installed here: not measured)
        new = NewTorrent(magnet=hybrid.magnet, category=CATEGORY, save_path=save)
        cases.append(Case("hybrid magnet", hybrid, new, hybrid.info_hash))

    took = await download_all(leecher, cases, seeder)

    for case in cases:
        got = {t.hash: t for t in await leecher.client.torrents()}[case.listed_as]
        assert got.category == CATEGORY, (case.what, got)
        assert Path(got.content_path) == leecher.downloads / case.seeded.name, (case.what, got)
        # rTorrent knows no pad files: it writes the hybrid's v1 padding out as files,
        # and counts them in the torrent's size.
        pads = list((Path(got.content_path) / ".pad").glob("*"))
        assert bool(pads) == (case.seeded is hybrid and leecher.kind == "rtorrent")
        padding = sum(pad.stat().st_size for pad in pads)
        assert got.size == case.seeded.size + padding, (case.what, got)
    # pytest -rA (or -s) shows how long each took
    print(f"{leecher.kind}: " + ", ".join(f"{what} {s:.1f} s" for what, s in took.items()))


def test_seeder_tracker_and_magnet(seeder: Seeder) -> None:
    """What the helper hands out: a magnet with every part, and a tracker that answers
    with the seeder's address (compact) and turns unknown torrents away."""
    import urllib.request
    from urllib.parse import quote_from_bytes

    import fastbencode

    seeded = seeder.seed("Clip.mkv", [MiB], hybrid=True)
    assert seeded.info_hash_v2 is not None
    assert seeded.magnet == (
        f"magnet:?xt=urn:btih:{seeded.info_hash}&xt=urn:btmh:1220{seeded.info_hash_v2}"
        f"&dn=Clip.mkv&tr={quote(seeder.tracker_url, safe='')}&x.pe=127.0.0.1:{seeder.port}"
    )
    assert seeded.source.read_bytes() == seeded.files[""]

    def announce(info_hash: bytes) -> dict[bytes, Any]:
        query = f"info_hash={quote_from_bytes(info_hash)}&port=6881&left=0&compact=1"
        with urllib.request.urlopen(f"{seeder.tracker_url}?{query}", timeout=5) as answer:
            decoded: dict[bytes, Any] = fastbencode.bdecode(answer.read())
        return decoded

    peers = announce(bytes.fromhex(seeded.info_hash))[b"peers"]
    assert peers == bytes([127, 0, 0, 1]) + seeder.port.to_bytes(2, "big")
    assert announce(bytes.fromhex(seeded.info_hash_v2)[:20])[b"peers"] == peers
    assert b"failure reason" in announce(b"\x01" * 20)
    assert [a.port for a in seeder.announces] == [6881, 6881, 6881]
