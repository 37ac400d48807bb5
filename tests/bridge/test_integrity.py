"""Integrity end to end, per engine: the landed payload is checked against the torrent's
piece hashes (the .torrent from the seedbox's session folder or qBittorrent's export),
bad pieces are re-fetched by byte range, and a payload that stays bad fails; host keys
are pinned on first use only when configured; rules choose the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from q4d_bridge.config.model import SeedboxConfig
from q4d_bridge.models import ItemState
from q4d_bridge.transfer.engines.base import Engine, ProgressCallback, TransferRequest

from tests.bridge.test_e2e import ENGINES, Env, digest_tree, make_file, running_bridge
from tests.bridge.test_verify import PIECE, flip, mktorrent
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)
SIZES = {"e01.mkv": 40 * PIECE + 1000, "e02.mkv": 25 * PIECE, "subs/e01.srt": 3000}


class Corrupting:
    """The real engine, then a few flipped bits in what it landed (as a bad disk, RAM or
    a buggy tool would leave them), on the first run only."""

    def __init__(self, inner: Engine, flips: list[tuple[str, int]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.flips = flips

    def warm(self, seedbox: SeedboxConfig) -> None:
        self.inner.warm(seedbox)

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        await self.inner.fetch(request, on_progress)
        for rel, offset in self.flips:
            flip(request.target / rel if rel else request.target, offset)
        self.flips = []


class MendedAfter:
    """The real engine, reading a seedbox copy with flipped bits that are set right
    once it finished (a transient fault on the seedbox): what it landed is bad, and
    the repair reads the good bytes."""

    def __init__(self, inner: Engine, flips: list[tuple[Path, int]]) -> None:
        self.inner = inner
        self.name = inner.name
        self.flips = flips
        for path, offset in flips:
            flip(path, offset)

    def warm(self, seedbox: SeedboxConfig) -> None:
        self.inner.warm(seedbox)

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        await self.inner.fetch(request, on_progress)
        for path, offset in self.flips:
            flip(path, offset)
        self.flips = []


def season(remote: Path, session: Path) -> str:
    """A directory payload on the seedbox and its .torrent in the session folder."""
    payload = remote / "Show.S01"
    for n, (rel, size) in enumerate(SIZES.items()):
        make_file(payload / rel, size, seed=n + 20)
    session.mkdir(parents=True, exist_ok=True)
    tmp = session / "new.torrent"
    torrent = mktorrent(payload, tmp)
    tmp.rename(session / f"{torrent.info_hash.upper()}.torrent")
    return torrent.info_hash


def completed(env: Env) -> dict[str, Any]:
    (event,) = env.recorder.events("completed")
    return event


@ENGINES
async def test_corrupted_pieces_are_repaired_by_range(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    engine: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = tmp_path / "session"
    torrent_file = {"torrent_file": f"{session}/{{HASH}}.torrent"}
    # Bytes that rot on disk after the write are what a read-back catches: the SFTP
    # engine's pieces are hashed as they arrive unless stream_verify is off
    # (test_stream_verify.py covers bad bytes on the way).
    transfers = {"stream_verify": False}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine=engine, seedbox=torrent_file, transfers=transfers
    ) as env:
        info_hash = season(env.remote, session)
        # One bad byte inside e01, one in the piece that spans e01's end and e02's start.
        env.bridge.runner.engines[engine] = Corrupting(
            env.bridge.runner.engines[engine], [("e01.mkv", 5 * PIECE + 7), ("e02.mkv", 10)]
        )
        await env.complete("Show.S01", info_hash)
        await env.wait_settled(1)
    event = completed(env)
    assert (event["verified"], event["repaired_pieces"]) == ("pieces", 2)
    landed = env.library / "other" / "Show.S01"
    assert digest_tree(landed) == digest_tree(env.remote / "Show.S01")
    pieces = -(-sum(SIZES.values()) // PIECE)
    # Only the two bad pieces travel again: 2 x 32 KiB, not the 2 MiB payload.
    assert f"2 of {pieces} pieces failed their hash; re-fetching {2 * PIECE} bytes" in caplog.text


async def test_payload_that_stays_bad_fails_with_the_piece_count(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    session = tmp_path / "session"
    transfers = {"max_repairs": 2}
    torrent_file = {"torrent_file": f"{session}/{{HASH}}.torrent"}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", seedbox=torrent_file, transfers=transfers
    ) as env:
        info_hash = season(env.remote, session)
        flip(env.remote / "Show.S01" / "e02.mkv", 3 * PIECE)  # the seedbox's copy rotted
        await env.complete("Show.S01", info_hash)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
    assert (item.state, item.error_code) == (ItemState.FAILED, "verify_failed")
    assert (
        item.last_error
        == f"1 of {-(-sum(SIZES.values()) // PIECE)} pieces still fail their hash after 2 repair(s)"
    )
    assert not (env.library / "other" / "Show.S01").exists()  # never visible
    (failed,) = env.recorder.events("failed")
    assert failed["item"]["error"]["code"] == "verify_failed"


async def test_wrong_torrent_means_size_check_only(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    session = tmp_path / "session"
    torrent_file = {"torrent_file": f"{session}/{{HASH}}.torrent"}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", seedbox=torrent_file
    ) as env:
        info_hash = season(env.remote, session)
        other = "ab" * 20
        (session / f"{info_hash.upper()}.torrent").rename(session / f"{other.upper()}.torrent")
        await env.complete("Show.S01", other)
        await env.wait_settled(1)
    assert (completed(env)["verified"], completed(env)["repaired_pieces"]) == ("size", 0)
    assert f"the .torrent found has info-hash {info_hash}; size check only" in caplog.text


async def test_torrent_exported_from_qbittorrent(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    with QBittorrent(tmp_path / "qbt") as qbt:
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": qbt.password}  # fmt: skip
        async with running_bridge(
            tmp_path, mosquitto, sshd, engine="sftp", seedbox={"client": client}
        ) as env:
            info_hash = season(env.remote, tmp_path / "made")
            await add_torrent(qbt, tmp_path / "made" / f"{info_hash.upper()}.torrent", env.remote)
            env.bridge.runner.engines["sftp"] = MendedAfter(
                env.bridge.runner.engines["sftp"], [(env.remote / "Show.S01" / "e01.mkv", 99)]
            )
            await env.complete("Show.S01", info_hash)
            await env.wait_settled(1)
    assert (completed(env)["verified"], completed(env)["repaired_pieces"]) == ("pieces", 1)
    assert digest_tree(env.library / "other" / "Show.S01") == digest_tree(env.remote / "Show.S01")
    assert qbt.password not in caplog.text


async def add_torrent(qbt: QBittorrent, torrent: Path, save_path: Path) -> None:
    """Add a .torrent whose data is already in save_path, the way a user's client holds it."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, base_url=qbt.url) as http:
        login = await http.post(
            "/api/v2/auth/login", data={"username": qbt.username, "password": qbt.password}
        )
        assert await login.text() == "Ok."
        form = aiohttp.FormData()
        form.add_field("torrents", torrent.read_bytes(), filename=torrent.name)
        form.add_field("savepath", str(save_path))
        added = await http.post("/api/v2/torrents/add", data=form)
        assert await added.text() == "Ok."


@pytest.mark.parametrize("engine", ["rsync", "sftp"])
async def test_host_key_trusted_on_first_use_then_pinned(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    pin = tmp_path / "pinned" / "known_hosts"
    seedbox = {"known_hosts": str(pin), "trust_on_first_use": True}
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, seedbox=seedbox) as env:
        make_file(env.remote / "a.mkv", 2**20, seed=1)
        await env.complete("a.mkv", None)
        await env.wait_settled(1)
        assert env.items_in(ItemState.DONE)
    assert pin.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n"
    assert pin.stat().st_mode & 0o077 == 0

    # Pinned from now on: a seedbox showing another key is refused, not trusted again.
    pin.write_text(sshd.wrong_known_hosts.read_text())
    second = tmp_path / "second"
    second.mkdir()
    async with running_bridge(second, mosquitto, sshd, engine=engine, seedbox=seedbox) as env:
        make_file(env.remote / "b.mkv", 2**20, seed=2)
        await env.complete("b.mkv", None)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
    assert (item.state, item.error_code) == (ItemState.FAILED, "host_key_mismatch")


async def test_rule_chooses_the_engine(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    rules = [
        {"destination": "tv", "match": [{"field": "category", "is": "tv"}], "engine": "rsync"},
        {"destination": "movies", "match": [{"field": "category", "is": "movies"}]},
    ]
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=rules) as env:
        make_file(env.remote / "show.mkv", 2**20, seed=3)
        make_file(env.remote / "film.mkv", 2**20, seed=4)
        await env.complete("show.mkv", None, category="tv")
        await env.complete("film.mkv", None, category="movies")
        await env.wait_settled(2)
        engines = {i.name: i.engine for i in env.bridge.lifecycle.items.values()}
        assert env.items_in(ItemState.DONE) and len(env.items_in(ItemState.DONE)) == 2
    assert engines == {"show.mkv": "rsync", "film.mkv": "sftp"}
    published = {e["item"]["name"]: e["item"]["engine"] for e in env.recorder.events("completed")}
    assert published == engines
