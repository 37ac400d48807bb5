"""Dispatch against two real torrent clients on loopback, qBittorrent and Transmission:
dry run against a real add, duplicates by hash (v1, v2, hybrid) and by name across both
clients, a client skipped with its reason, ten adds landing where the scores say, and
bad input refused with nothing half-added."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.clients import make_client
from q4d_bridge.clients.base import NewTorrent, TorrentClient
from q4d_bridge.clients.metainfo import parse_torrent_file
from q4d_bridge.clients.monitor import ClientMonitor
from q4d_bridge.clients.qbittorrent import torrent_id
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.dispatch import tracker as tracker_module
from q4d_bridge.dispatch.dispatcher import AddRequest, Dispatcher, DispatchError
from q4d_bridge.dispatch.requests import Request, RequestState
from q4d_bridge.dispatch.tracker import RequestTracker
from q4d_bridge.persistence.requests import DispatchRecords
from q4d_bridge.persistence.store import Message, Store

from tests.helpers.configs import bridge_config
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.torrents import random_file, torrent_of
from tests.seedbox.support import Transmission

pytestmark = pytest.mark.timeout(180)


class Announced:
    """Stands in for the publisher: what the tracker would put on MQTT."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def request(self, request: Any) -> None:
        self.requests.append((request.id, request.state.value))

    def removal_message(self, item_id: str) -> Message:
        return Message(f"item/{item_id}", b"", retain=True)

    def outbox_pending(self) -> None:
        pass


@dataclass
class Desk:
    config: Config
    clients: dict[str, TorrentClient]
    store: Store
    dispatcher: Dispatcher
    tracker: RequestTracker

    async def add(self, **fields: Any) -> dict[str, Any]:
        return await self.dispatcher.add(AddRequest(source="mqtt", **fields))

    async def preview(self, **fields: Any) -> dict[str, Any]:
        return await self.dispatcher.add(AddRequest(**fields), dry_run=True)

    async def hashes(self, seedbox: str) -> set[str]:
        return {t.hash for t in await self.clients[seedbox].torrents()}  # type: ignore[attr-defined]

    async def listed(self, seedbox: str, info_hash: str) -> None:
        """qBittorrent adds in the background: wait until it lists the torrent."""
        for _ in range(100):
            if info_hash in await self.hashes(seedbox):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{seedbox} never listed {info_hash}")


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[tuple[QBittorrent, Transmission]]:
    with QBittorrent(tmp_path / "qbt") as qbt, Transmission(tmp_path / "tr") as tr:
        yield qbt, tr


@contextlib.asynccontextmanager
async def desk(
    tmp_path: Path,
    daemons: tuple[QBittorrent, Transmission],
    dispatch: dict[str, Any] | None = None,
    **client_settings: dict[str, Any],
) -> AsyncIterator[Desk]:
    qbt, tr = daemons
    key = tmp_path / "id_test"
    key.write_text("not used: no SSH here\n")
    raw = bridge_config(tmp_path / "data", tmp_path / "library", key=key, known_hosts=key)
    base = raw["seedboxes"][0]
    raw["seedboxes"] = [
        {**base, "id": "qbt", "client": {
            "type": "qbittorrent", "url": qbt.url, "username": qbt.username,
            "password": qbt.password, "min_free": 0, **client_settings.get("qbt", {})}},
        {**base, "id": "tr", "client": {
            "type": "transmission", "url": tr.url, "username": tr.username,
            "password": tr.password, "min_free": 0, **client_settings.get("tr", {})}},
    ]  # fmt: skip
    raw["classic"] = {"enabled": False}
    raw["dispatch"] = {"size_estimate": "1GiB", **(dispatch or {})}
    config = parse_config(raw)
    assert config.seedboxes["qbt"].client is not None
    clients = {sb: make_client(c.client) for sb, c in config.seedboxes.items() if c.client}
    store = Store(tmp_path / "data" / "q4d.sqlite3")
    monitor = ClientMonitor(config.seedboxes, clients, on_change=lambda: None)
    records = DispatchRecords(store)
    tracker = RequestTracker(records, monitor, Announced(), interval=1, retention=3600)
    dispatcher = Dispatcher(config, clients, monitor, records, tracker, {})
    tracker.busy = dispatcher.busy
    try:
        yield Desk(config, clients, store, dispatcher, tracker)
    finally:
        for client in clients.values():
            await client.close()
        store.close()


def magnet(info_hash: str, name: str | None = None) -> str:
    return f"magnet:?xt=urn:btih:{info_hash}" + (f"&dn={name}" if name else "")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scores(decision: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    return {c["seedbox"]: (c["score"], c["reason_code"]) for c in decision["clients"]}


async def test_dry_run_decides_like_a_real_add_and_adds_nothing(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission]
) -> None:
    payload = random_file(tmp_path / "src" / "Film.2024.1080p.mkv", 300_000, 1)
    raw = torrent_of(payload)
    async with desk(tmp_path, daemons, tr={"weight": 2.0}) as d:
        preview = (await d.preview(torrent=b64(raw), category="movies"))["decision"]
        assert preview["dry_run"] and preview["outcome"] == "dry_run"
        assert preview["chosen"] == "tr"  # the same free disk, twice the weight
        assert preview["size"] == 300_000 and not preview["size_estimated"]
        assert {c["seedbox"]: c["type"] for c in preview["clients"]} == {
            "qbt": "qbittorrent",
            "tr": "transmission",
        }
        assert all(c["reachable"] and c["version"] for c in preview["clients"])
        assert await d.hashes("tr") == set()
        assert d.dispatcher.records.decisions(10) == []
        assert d.dispatcher.records.requests() == []

        added = await d.add(torrent=b64(raw), category="movies")
        decision, request = added["decision"], added["request"]
        assert decision["chosen"] == "tr" and decision["outcome"] == "added"
        assert scores(decision).keys() == scores(preview).keys()
        assert request["state"] == "added" and request["seedbox"] == "tr"
        assert request["info_hash"] in await d.hashes("tr")
        (kept,) = d.dispatcher.records.decisions(10)
        assert kept["id"] == decision["id"] and kept["request_id"] == request["id"]
        (stored,) = d.dispatcher.records.requests()
        assert stored.state is RequestState.ADDED
        assert stored.torrent_file is None  # the client has it: not kept twice

        # no peer has its data: it stays on the seedbox downloading, and is followed there
        await d.tracker.poll()
        assert d.tracker.active[request["id"]].state is RequestState.DOWNLOADING


@pytest.mark.parametrize("kind", ["v1", "v2", "hybrid"])
async def test_duplicates_by_every_hash_across_clients(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission], kind: str
) -> None:
    payload = random_file(tmp_path / "src" / f"Show.S01E0{len(kind)}.mkv", 200_000, kind)
    raw = torrent_of(payload, kind)  # type: ignore[arg-type]
    async with desk(tmp_path, daemons, qbt={"dispatch": False}) as d:
        # already on qBittorrent (which takes no new torrents, but still counts)
        await d.clients["qbt"].add(NewTorrent(torrent_file=raw))  # type: ignore[attr-defined]
        info = parse_torrent_file(raw)
        await d.listed("qbt", torrent_id(NewTorrent(torrent_file=raw)) or "")
        spellings = []
        if info.v1:
            spellings.append({"magnet": magnet(info.v1)})
        if info.v2:
            spellings.append({"magnet": f"magnet:?xt=urn:btmh:1220{info.v2}"})
        spellings.append({"torrent": b64(raw)})
        for spelling in spellings:
            with pytest.raises(DispatchError) as refused:
                await d.add(**spelling)
            assert refused.value.code == "duplicate"
            assert (
                "by hash" in refused.value.message and "qbt's qbittorrent" in refused.value.message
            )
        assert await d.hashes("tr") == set()
        outcomes = [x["outcome"] for x in d.dispatcher.records.decisions(10)]
        assert outcomes == ["duplicate"] * len(spellings)


async def test_duplicates_by_name_and_by_request(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker_module, "LISTING_GRACE", 0.0)
    async with desk(tmp_path, daemons) as d:
        first = await d.add(magnet=magnet("1" * 40, "Movie.Title.2024.2160p"), seedbox="qbt")
        assert first["request"]["seedbox"] == "qbt"
        with pytest.raises(DispatchError) as by_name:
            await d.add(magnet=magnet("2" * 40, "movie title 2024 2160p"), seedbox="tr")
        assert by_name.value.code == "duplicate"
        assert by_name.value.message.startswith("already known by name: 'Movie.Title.2024.2160p'")
        with pytest.raises(DispatchError) as by_hash:
            await d.add(magnet=magnet("1" * 40))
        assert "by hash" in by_hash.value.message
        # a failed request does not count: its torrent may be tried again
        await d.clients["qbt"].remove(["1" * 40], delete_data=True)  # type: ignore[attr-defined]
        for _ in range(2):  # gone for GONE_AFTER polls
            await d.tracker.poll()
        (request,) = d.dispatcher.records.requests()
        assert request.state is RequestState.FAILED and request.error_code == "removed"
        again = await d.add(magnet=magnet("1" * 40, "Movie.Title.2024.2160p"))
        assert again["request"]["state"] == "added"


async def test_a_client_that_cannot_take_it_is_skipped_with_its_reason(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission]
) -> None:
    async with desk(
        tmp_path, daemons, qbt={"min_free": "1000000GiB"}, tr={"max_downloads": 1}
    ) as d:
        first = await d.add(magnet=magnet("a" * 40, "One"))
        decision = first["decision"]
        assert decision["chosen"] == "tr"
        reasons = {c["seedbox"]: c for c in decision["clients"]}
        assert reasons["qbt"]["reason_code"] == "below_min_free"
        assert "min_free is 976.6 TiB" in reasons["qbt"]["reason"]
        assert reasons["tr"]["reason_code"] == "eligible"
        # Transmission now has its one download: nobody can take the next one
        with pytest.raises(DispatchError) as refused:
            await d.add(magnet=magnet("b" * 40, "Two"))
        assert refused.value.code == "no_eligible_client"
        assert "qbt: below min free space" in refused.value.message
        assert "tr: at max downloads: 1 of 1" in refused.value.message
        assert {r.info_hash for r in d.dispatcher.records.requests()} == {"a" * 40}


async def test_ten_adds_land_where_the_scores_say(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission]
) -> None:
    # Free space is the same disk for both; what each still has to download decides.
    weights = {"download_weight": 0, "bandwidth_weight": 0, "size_estimate": "4GiB"}
    async with desk(tmp_path, daemons, dispatch=weights, tr={"weight": 1.5}) as d:
        placed = []
        for n in range(10):
            decision = (await d.add(magnet=magnet(f"{n + 1:040x}", f"Ten.{n}")))["decision"]
            eligible = {sb: s for sb, (s, why) in scores(decision).items() if why == "eligible"}
            assert decision["chosen"] == max(eligible, key=lambda sb: eligible[sb] or 0)
            placed.append(decision["chosen"])
        pending = [c["pending_bytes"] for c in decision["clients"]]
        assert all(p is not None for p in pending)
        assert set(placed) == {"qbt", "tr"}  # the weight shifts the balance, not all of it
        assert placed.count("tr") > placed.count("qbt")
        for seedbox in ("qbt", "tr"):
            wanted = {f"{n + 1:040x}" for n, sb in enumerate(placed) if sb == seedbox}
            assert await d.hashes(seedbox) == wanted


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"magnet": "magnet:?dn=nothing"}, "invalid_torrent", "no xt=urn:btih or urn:btmh"),
        (
            {"magnet": "magnet:?xt=urn:btih:1234"},
            "invalid_torrent",
            "neither 40 hex digits nor 32 base32",
        ),
        ({"magnet": "http://127.0.0.1:9/x"}, "invalid_torrent", "magnet"),
        ({"torrent": b64(b"<html>login</html>")}, "invalid_torrent", "not a .torrent file"),
        ({"torrent": "not base64!"}, "invalid_torrent", "base64"),
        (
            {"torrent": b64(b"d" + b"0" * (10 * 1024 * 1024))},
            "invalid_torrent",
            "more than the 8 MiB",
        ),
        (
            {"url": "http://127.0.0.1:9/closed.torrent"},
            "invalid_torrent",
            "fetching the .torrent failed",
        ),
        (
            {"magnet": magnet("c" * 40), "category": "nope"},
            "unknown_category",
            "the rules route movies, tv",
        ),
        ({"magnet": magnet("c" * 40), "seedbox": "nowhere"}, "unknown_seedbox", "known: qbt, tr"),
        ({}, "invalid_torrent", "exactly one"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_half_added(
    tmp_path: Path,
    daemons: tuple[QBittorrent, Transmission],
    fields: dict[str, Any],
    code: str,
    message: str,
) -> None:
    async with desk(tmp_path, daemons) as d:
        with pytest.raises(DispatchError) as refused:
            await d.add(**fields)
        assert refused.value.code == code
        assert message in refused.value.message
        assert d.dispatcher.records.requests() == []
        assert await d.hashes("qbt") == await d.hashes("tr") == set()


async def test_an_unreachable_client_is_not_chosen(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission]
) -> None:
    _qbt, tr = daemons
    async with desk(tmp_path, daemons) as d:
        tr.stop()
        decision = (await d.add(magnet=magnet("d" * 40, "Down")))["decision"]
        assert decision["chosen"] == "qbt"
        assert scores(decision)["tr"] == (None, "unreachable")
        with pytest.raises(DispatchError) as refused:
            await d.add(magnet=magnet("e" * 40, "Only.Tr"), seedbox="tr")
        assert refused.value.code == "no_eligible_client"
        assert "tr: unreachable:" in refused.value.message
        assert {r.info_hash for r in d.dispatcher.records.requests()} == {"d" * 40}


async def test_requests_a_crash_caught_before_the_answer_are_added_on_the_next_start(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission]
) -> None:
    def recorded(d: Desk, info_hash: str, seedbox: str) -> Request:
        """What an add commits before it asks the client (then the bridge died)."""
        decision = {"id": f"d-{info_hash[:6]}", "at": 1.0, "outcome": "added"}
        request = Request(
            id=info_hash[:16], created_at=1.0, updated_at=1.0, source="mqtt", category=None,
            name=f"Crash.{info_hash[:4]}", info_hash=info_hash, v1=info_hash, v2=None,
            seedbox=seedbox, size=None, state=RequestState.REQUESTED, decision_id=decision["id"],
            magnet=magnet(info_hash),
        )  # fmt: skip
        d.dispatcher.records.record(decision, request, keep=10)
        return request

    async with desk(tmp_path, daemons) as before:
        lost = recorded(before, "7" * 40, "tr")  # never reached Transmission
        arrived = recorded(before, "8" * 40, "qbt")  # reached qBittorrent, the answer did not
        await before.clients["qbt"].add(NewTorrent(magnet=magnet("8" * 40)))  # type: ignore[attr-defined]
        await before.listed("qbt", "8" * 40)
    async with desk(tmp_path, daemons) as after:
        assert set(after.tracker.active) == {lost.id, arrived.id}
        await after.dispatcher.recover()
        assert {r.id: r.state for r in after.dispatcher.records.requests()} == {
            lost.id: RequestState.ADDED,
            arrived.id: RequestState.ADDED,
        }
        await after.listed("tr", "7" * 40)
        assert await after.hashes("qbt") == {"8" * 40}  # not added twice
        assert await after.hashes("tr") == {"7" * 40}


async def test_a_client_refusing_the_add_fails_the_request_and_adds_nothing(
    tmp_path: Path, daemons: tuple[QBittorrent, Transmission]
) -> None:
    payload = random_file(tmp_path / "src" / "Only.V2.mkv", 100_000, "v2")
    raw = torrent_of(payload, "v2")  # Transmission 3 reads no BitTorrent v2
    async with desk(tmp_path, daemons) as d:
        with pytest.raises(DispatchError) as refused:
            await d.add(torrent=b64(raw), seedbox="tr")
        assert refused.value.code == "client_error"
        assert refused.value.message.startswith("tr: ")
        (request,) = d.dispatcher.records.requests()
        assert (request.state, request.error_code) == (RequestState.FAILED, "client_error")
        assert request.torrent_file is None
        (decision,) = d.dispatcher.records.decisions(10)
        assert decision["outcome"] == "failed" and decision["error"]["code"] == "client_error"
        assert await d.hashes("tr") == set()
        assert request.id not in d.tracker.active
        # not a duplicate of itself: the same torrent may go elsewhere
        again = await d.add(torrent=b64(raw), seedbox="qbt")
        assert again["request"]["state"] == "added"
