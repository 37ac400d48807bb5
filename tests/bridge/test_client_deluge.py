"""The Deluge adapter against a real deluged behind deluge-web (JSON-RPC): reading
torrents and stats, labels through the Label plugin (enabled on first need), q4d's
status tags folded onto the one label, adding and steering torrents, and each failure
as its error kind."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.clients import make_client
from q4d_bridge.clients.base import ClientError, ClientErrorKind, NewTorrent, Torrent
from q4d_bridge.clients.deluge import DelugeClient, status_label, torrent
from q4d_bridge.clients.deluge_rpc import answer_json, json_url, rpc_error, without_credentials
from q4d_bridge.clients.metainfo import parse_torrent_file
from q4d_bridge.clients.reconcile import missed_completions
from q4d_bridge.config.model import ClientConfig, ReconcileConfig

from tests.bridge.test_e2e import digest_tree, make_file, running_bridge
from tests.bridge.test_metainfo import build_torrent
from tests.bridge.test_nodes import command
from tests.bridge.test_verify import mktorrent
from tests.helpers.services import Mosquitto, SshServer, free_port
from tests.seedbox.support import Deluge, DelugeWeb, need

pytestmark = pytest.mark.timeout(120)


def config(url: str, password: str = "deluge") -> ClientConfig:
    return ClientConfig("deluge", url, None, password, verify_tls=True)


class Sleeps(list[float]):
    """Records the waits between retries instead of waiting; `then[n]` runs at the
    n-th wait (a daemon started again, say)."""

    def __init__(self, then: dict[int, Callable[[], None]] | None = None) -> None:
        super().__init__()
        self.then = then or {}

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if action := self.then.get(len(self)):
            await asyncio.to_thread(action)


@pytest.fixture
def deluge(tmp_path: Path) -> Iterator[Deluge]:
    need("deluged")
    need("deluge-web")
    services = Deluge(tmp_path / "deluge")
    services.start()
    try:
        yield services
    finally:
        services.stop()


async def until(client: DelugeClient, info_hash: str, test: Any, what: str) -> Torrent:
    for _ in range(100):
        found = {t.hash: t for t in await client.torrents()}.get(info_hash)
        if found is not None and test(found):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_torrents_labels_and_steering(deluge: Deluge, tmp_path: Path) -> None:
    web = DelugeWeb(deluge.url)  # the test's own session, to look behind the adapter
    web("core.set_config", {"download_location": str(deluge.downloads)})
    web("web.disconnect")  # the adapter connects the web UI to its daemon itself
    seeded = tmp_path / "seeded"
    make_file(seeded / "Show.S01E01.mkv", 2**20, seed=1)
    meta = mktorrent(seeded / "Show.S01E01.mkv", tmp_path / "show.torrent")
    h = meta.info_hash
    # The url without /json works too (http://host:8112).
    client = make_client(config(deluge.url.removesuffix("/json")))
    assert isinstance(client, DelugeClient)
    try:
        assert (await client.version()).startswith("2.")
        # A .torrent whose data is there: Deluge checks it and seeds. Its label needs
        # the Label plugin, off in a new Deluge: enabled on the way.
        assert "Label" not in web("core.get_enabled_plugins")
        await client.add(
            NewTorrent(
                torrent_file=(tmp_path / "show.torrent").read_bytes(),
                category="TV Shows",
                save_path=str(seeded),
            )
        )
        assert "Label" in web("core.get_enabled_plugins")
        done = await until(client, h, lambda t: t.complete, "the check")
        assert (done.name, done.category, done.tags) == ("Show.S01E01.mkv", "tv_shows", ())
        assert done.content_path == str(seeded / "Show.S01E01.mkv")
        assert (done.size, done.progress, done.state) == (2**20, 1.0, "Seeding")
        assert done.tracker == "http://127.0.0.1:9/announce"
        assert [t.hash for t in await client.completed_torrents()] == [h]

        stats = await client.stats()
        assert (stats.torrents, stats.active_downloads) == (1, 0)
        assert stats.free_space is not None and stats.free_space > 0
        assert stats.download_rate >= 0 and stats.upload_rate >= 0

        # q4d's status tags are the label, as q4d-labeld writes it; reconciliation
        # then knows the torrent was handled.
        await client.add_tags([h.upper()], ["q4d:DONE"])
        assert web("core.get_torrent_status", h, ["label"])["label"] == "q4d_done"
        (labelled,) = await client.torrents()
        assert (labelled.category, labelled.tags) == ("q4d_done", ("q4d:DONE",))
        assert labelled.completed_at is not None
        now = labelled.completed_at + 60
        unlabelled = dataclasses.replace(labelled, category=None, tags=())
        for candidate, missed in ((labelled, []), (unlabelled, [h])):
            events = missed_completions("sb1", "deluge", [candidate], set(), ReconcileConfig(), now)
            assert [e.hash for e in events] == missed
        await client.remove_tags([h], ["q4d:QUEUED"])  # not its label: left alone
        assert (await client.torrents())[0].tags == ("q4d:DONE",)
        await client.remove_tags([h], ["q4d:DONE", "q4d:FAILED"])
        assert (await client.torrents())[0].category is None
        for tags in (["sonarr"], ["q4d:QUEUED", "q4d:DONE"]):
            with pytest.raises(ClientError) as refused:
                await client.add_tags([h], tags)
            assert refused.value.kind is ClientErrorKind.REFUSED

        await client.set_category([h], "movies")
        assert (await client.torrents())[0].category == "movies"
        await client.set_category([h], None)
        assert (await client.torrents())[0].category is None

        await client.pause([h])
        await until(client, h, lambda t: t.state == "Paused", "pause")
        assert [t.hash for t in await client.completed_torrents()] == [h]  # still complete
        await client.resume([h])
        await until(client, h, lambda t: t.state == "Seeding", "resume")

        with pytest.raises(ClientError, match="state folder") as no_export:
            await client.export_torrent(h)
        assert no_export.value.kind is ClientErrorKind.REFUSED

        # A magnet waits for its metadata (none comes: no peers, no DHT), paused here.
        magnet = "ab" * 20
        await client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{magnet}&dn=Film"))
        waiting = await until(client, magnet, lambda t: True, "the magnet")
        assert not waiting.complete and waiting.progress < 1.0
        await client.pause([magnet])
        await until(client, magnet, lambda t: t.state == "Paused", "the magnet paused")
        assert [t.hash for t in await client.completed_torrents()] == [h]
        with pytest.raises(ClientError, match="already in session") as twice:
            await client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{magnet}"))
        assert twice.value.kind is ClientErrorKind.REFUSED
        await client.remove([magnet], delete_data=False)
        assert [t.hash for t in await client.torrents()] == [h]

        # Unknown torrents: NOT_FOUND, after the known ones were handled.
        ghost = "f" * 40
        for call in (
            client.pause([ghost]),
            client.remove([ghost], delete_data=False),
            client.set_category([h, ghost], "tv"),
            client.add_tags([ghost], ["q4d:DONE"]),
        ):
            with pytest.raises(ClientError, match=ghost) as unknown:
                await call
            assert unknown.value.kind is ClientErrorKind.NOT_FOUND
        assert (await client.torrents())[0].category == "tv"

        for bad in (NewTorrent(torrent_file=b"not bencode"), NewTorrent()):
            with pytest.raises(ClientError) as refused:
                await client.add(bad)
            assert refused.value.kind is ClientErrorKind.REFUSED

        # An expired web session is renewed; a web UI that lost its daemon reconnects.
        assert client._rpc._http is not None
        client._rpc._http.cookie_jar.clear()
        web("web.disconnect")
        assert (await client.stats()).torrents == 1
        await client.remove([h], delete_data=True)
        assert await client.torrents() == []
        assert not (seeded / "Show.S01E01.mkv").exists()
    finally:
        await client.close()


async def test_wrong_password(deluge: Deluge) -> None:
    client = DelugeClient(config(deluge.url, password="wrong"))
    try:
        with pytest.raises(ClientError, match="refused the login") as refused:
            await client.stats()
    finally:
        await client.close()
    assert refused.value.kind is ClientErrorKind.AUTH and "wrong" not in str(refused.value)
    # Not deluge-web's JSON-RPC; credentials in the url stay out of the message.
    url = deluge.url.replace("http://", "http://me:s3cret@").replace("/json", "/deluge")
    astray = DelugeClient(config(url))
    try:
        with pytest.raises(ClientError, match=r"HTTP 404, not a JSON-RPC answer") as lost:
            await astray.stats()
    finally:
        await astray.close()
    assert lost.value.kind is ClientErrorKind.REFUSED
    assert "/deluge/json" in str(lost.value) and "s3cret" not in str(lost.value)


async def test_daemon_down_and_web_down(deluge: Deluge) -> None:
    client = DelugeClient(config(deluge.url))
    try:
        assert (await client.stats()).torrents == 0
        deluge.stop_daemon()  # the web UI stays, without a daemon
        with pytest.raises(ClientError) as down:
            for _ in range(50):  # deluge-web notices the lost connection in a moment
                await client.stats()
                await asyncio.sleep(0.1)
        assert down.value.kind is ClientErrorKind.UNREACHABLE, down.value
        assert "daemon is not running" in str(down.value)
    finally:
        await client.close()

    slept = Sleeps()
    unused = DelugeClient(config(f"http://127.0.0.1:{free_port()}/json"), sleep=slept)
    try:
        with pytest.raises(ClientError) as gone:
            await unused.torrents()
    finally:
        await unused.close()
    assert gone.value.kind is ClientErrorKind.UNREACHABLE and slept == [1, 2, 4]
    assert str(gone.value).startswith(
        "Deluge torrent list: gave up after 4 attempts: Deluge unreachable at http://127.0.0.1:"
    )


async def unreachable(call: Awaitable[Any], slept: Sleeps, waits: list[float]) -> str:
    slept.clear()
    with pytest.raises(ClientError) as err:
        await call
    assert err.value.kind is ClientErrorKind.UNREACHABLE, err.value
    assert slept == waits
    return str(err.value)


async def test_unreachable_is_retried_then_given_up(deluge: Deluge) -> None:
    """Every call but the stats is tried again after 1, 2 and 4 s while deluged, or
    deluge-web, is down; then it fails with what was tried."""
    slept = Sleeps()
    client = DelugeClient(config(deluge.url), sleep=slept)
    h = "ab" * 20
    try:
        await client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{h}", paused=True))
        deluge.stop_daemon()
        message = await unreachable(client.torrents(), slept, [1, 2, 4])
        assert message.startswith("Deluge torrent list: gave up after 4 attempts: ")
        assert "its daemon is not running" in message
        deluge.stop()  # deluge-web too
        where = f"Deluge unreachable at {deluge.url}: ClientConnectorError"
        for what, call in [
            ("version", client.version),
            ("pause", lambda: client.pause([h])),
            ("resume", lambda: client.resume([h])),
            ("set label", lambda: client.set_category([h], "tv")),
            ("set label", lambda: client.add_tags([h], ["q4d:DONE"])),
            ("remove tags", lambda: client.remove_tags([h], ["q4d:DONE"])),
            ("remove", lambda: client.remove([h], delete_data=False)),
            (f"add {'cd' * 20}", lambda: client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{'cd' * 20}"))),
        ]:  # fmt: skip
            message = await unreachable(call(), slept, [1, 2, 4])
            assert message.startswith(f"Deluge {what}: gave up after 4 attempts: {where}")
        # Not retried: the stats (the monitor's next poll is the retry), and an add
        # whose info-hash is not known here (nothing to look for before sending it again).
        await unreachable(client.stats(), slept, [])
        await unreachable(client.add(NewTorrent(torrent_file=b"not bencode")), slept, [])
        with pytest.raises(ClientError) as refused:  # nothing a retry would change
            await client.export_torrent(h)
        assert refused.value.kind is ClientErrorKind.REFUSED and slept == []
    finally:
        await client.close()


def forget_sessions(deluge: Deluge) -> None:
    """deluge-web's web.conf (a version object, then the values) without its sessions."""
    conf = deluge.config / "web.conf"
    decoder, text = json.JSONDecoder(), conf.read_text()
    version, end = decoder.raw_decode(text)
    values, _ = decoder.raw_decode(text, end)
    assert values["sessions"]
    conf.write_text(json.dumps(version) + json.dumps(values | {"sessions": {}}))


async def test_back_during_the_retries(
    deluge: Deluge, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """deluged back during the retries: deluge-web is connected to it again. deluge-web
    back too: it forgot the session, so the retry logs in again."""
    caplog.set_level(logging.INFO, logger="q4d_bridge")
    slept = Sleeps({2: deluge.start_daemon})
    client = DelugeClient(config(deluge.url), sleep=slept)
    posted: list[str] = []
    post = client._rpc.post

    async def recorded(method: str, params: list[Any]) -> dict[str, Any]:
        posted.append(method)
        return await post(method, params)

    client._rpc.post = recorded  # type: ignore[method-assign]
    # A .torrent: deluged keeps it across a restart (a magnet without its metadata not).
    make_file(tmp_path / "Kept.mkv", 2**16, seed=2)
    h = mktorrent(tmp_path / "Kept.mkv", tmp_path / "k.torrent").info_hash
    try:
        await client.add(
            NewTorrent(torrent_file=(tmp_path / "k.torrent").read_bytes(), paused=True)
        )
        deluge.stop_daemon()
        caplog.clear()
        assert (await client.version()).startswith("2.")
        assert slept == [1, 2]
        assert "connected it to its daemon" in caplog.text
        await until(client, h, lambda t: True, "deluged to load its state again")

        # deluge-web keeps its sessions in web.conf across a restart; one that expired
        # meanwhile, or was never saved (deluge-web killed), is gone.
        deluge.stop()
        forget_sessions(deluge)
        slept.clear()
        slept.then = {1: deluge.start}
        posted.clear()
        await client.set_category([h], "tv")
        assert slept == [1]
        assert posted[:3] == ["web.connected", "web.connected", "auth.login"]
        assert [t.category for t in await client.torrents()] == ["tv"]
    finally:
        await client.close()


async def test_an_add_or_removal_whose_answer_was_lost(deluge: Deluge, tmp_path: Path) -> None:
    """The add arrived, its answer did not: the retry finds the torrent, labels it, and
    does not send it again (Deluge would refuse it as already in session). Likewise a
    removal: the torrent already gone is no NOT_FOUND."""
    raw = build_torrent(tmp_path / "hybrid", "hybrid")
    meta = parse_torrent_file(raw)
    assert meta.v1 is not None and meta.v2 is not None
    slept = Sleeps()
    client = DelugeClient(config(deluge.url), sleep=slept)
    sent: list[str] = []
    post = client._rpc.post

    async def lossy(method: str, params: list[Any]) -> dict[str, Any]:
        answer = await post(method, params)
        if method in ("core.add_torrent_file", "core.remove_torrents"):
            sent.append(method)
            if sent.count(method) == 1:
                raise ClientError(f"Deluge unreachable at {deluge.url}: the answer was lost")
        return answer

    client._rpc.post = lossy  # type: ignore[method-assign]
    try:
        await client.add(
            NewTorrent(torrent_file=raw, category="tv", save_path=str(tmp_path), paused=True)
        )
        assert sent == ["core.add_torrent_file"] and slept == [1]
        (added,) = await client.torrents()
        # A hybrid: Deluge on libtorrent 2 lists it under its v2 hash cut to 40 digits
        # (on libtorrent 1.2, which reads v1 only, under its v1 hash); looked for under both.
        assert added.hash in (meta.v1, meta.v2[:40])
        assert (added.name, added.category) == ("Show", "tv")

        await client.remove([added.hash], delete_data=False)
        assert sent == ["core.add_torrent_file", "core.remove_torrents", "core.remove_torrents"]
        assert slept == [1, 1] and await client.torrents() == []
    finally:
        await client.close()


async def test_a_deluge_node_in_the_bridge(
    deluge: Deluge,
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Node stats in the state, and a completed torrent no event announced found by a
    rescan, routed by its Deluge label and checked piece by piece against the .torrent
    in Deluge's state folder (its web API exports none)."""
    remote = tmp_path / "seedbox"  # running_bridge's seedbox root
    make_file(remote / "missed.mkv", 3 * 2**20, seed=7)
    h = mktorrent(remote / "missed.mkv", tmp_path / "missed.torrent").info_hash
    adder = DelugeClient(config(deluge.url))
    try:
        torrent_file = (tmp_path / "missed.torrent").read_bytes()
        await adder.add(NewTorrent(torrent_file=torrent_file, category="tv", save_path=str(remote)))
        await until(adder, h, lambda t: t.complete, "the check")
    finally:
        await adder.close()
    client = {"type": "deluge", "url": deluge.url, "password": "deluge", "poll_interval": 1}
    seedbox = {
        "client": client,
        "reconcile": {"interval": 0},
        "torrent_file": str(deluge.config / "state" / "{hash}.torrent"),
    }
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", seedbox=seedbox) as env:
        node = await env.recorder.wait_for(
            lambda: (n := env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"])["reachable"]
            and n,
            30, "node stats",
        )  # fmt: skip
        assert (node["torrents"], node["active_downloads"], node["error"]) == (1, 0, None)
        first = await command(env, "rescan")
        assert (first["result"]["count"], first["result"]["names"]) == (1, ["missed.mkv"])
        await env.wait_settled(1)
        (event,) = env.recorder.events("completed")
        assert event["verified"] == "pieces"
        # Deluge's refusal to export is no news when the state folder is configured.
        warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [m for m in warned if "export failed" in m]
        assert digest_tree(env.library / "tv" / "missed.mkv") == digest_tree(remote / "missed.mkv")
        again = await command(env, "rescan")
        assert again["result"]["count"] == 0


# --- without a daemon --------------------------------------------------------------------


def test_torrent_from_status() -> None:
    status = {
        "name": "Film", "state": "Downloading", "is_finished": False, "label": "",
        "download_location": "/home/me/dl/", "total_wanted": 1000, "total_remaining": 250,
        "completed_time": 0, "tracker": "", "trackers": [{"url": "udp://t.example:1337"}],
    }  # fmt: skip
    t = torrent("AB" * 20, status)
    assert (t.hash, t.progress, t.complete, t.completed_at) == ("ab" * 20, 0.75, False, None)
    assert (t.content_path, t.tracker, t.category, t.tags) == (
        "/home/me/dl/Film", "udp://t.example:1337", None, ()
    )  # fmt: skip
    # Everything there but not finished (a check): still not complete. Deluge's own
    # progress would say 100 in Error, so it is not used.
    assert torrent("ab" * 20, status | {"total_remaining": 0}).progress < 1.0
    finished = torrent("ab" * 20, status | {"is_finished": True, "completed_time": 1_700_000_000})
    assert (finished.complete, finished.completed_at) == (True, 1_700_000_000.0)
    # Q4D classic's bare labels, and q4d-labeld's, read as the status tags they are.
    assert torrent("ab" * 20, status | {"label": "nope"}).tags == ("NOPE",)
    assert torrent("ab" * 20, status | {"label": "q4d_queued"}).tags == ("q4d:QUEUED",)
    assert torrent("ab" * 20, status | {"label": "tv"}).tags == ()


def test_status_tags_map_onto_the_label() -> None:
    assert [status_label(t) for t in ("q4d:DONE", "q4d:FAILED", "QUEUED", "NOPE")] == [
        "q4d_done", "q4d_failed", "queued", "nope",
    ]  # fmt: skip
    with pytest.raises(ClientError, match="no tags") as refused:
        status_label("sonarr")
    assert refused.value.kind is ClientErrorKind.REFUSED


def test_errors_and_answers() -> None:
    failure = (
        "Failure: [Failure instance: Traceback (failure with no frames): <class "
        "'deluge.error.InvalidTorrentError'>: torrent_id ab not in session.\n]"
    )
    gone = rpc_error("core.remove_torrent", {"message": failure, "code": 4})
    assert (gone.kind, str(gone)) == (
        ClientErrorKind.NOT_FOUND, "Deluge core.remove_torrent: torrent_id ab not in session."
    )  # fmt: skip
    label = failure.replace("InvalidTorrentError", "WrappedException").replace(
        "torrent_id ab not in session.", "Unknown Torrent\nTraceback (most recent call last):"
    )
    assert rpc_error("label.set_torrent", {"message": label, "code": 4}).kind is (
        ClientErrorKind.NOT_FOUND
    )
    assert rpc_error("x.y", {"message": "Unknown method", "code": 2}).kind is (
        ClientErrorKind.REFUSED
    )
    lost = failure.replace(
        "deluge.error.InvalidTorrentError", "twisted.internet.error.ConnectionLost"
    )
    assert rpc_error("core.x", {"message": lost, "code": 4}).transient
    assert json_url("http://h:8112") == json_url("http://h:8112/json/") == "http://h:8112/json"
    assert json_url("https://box.example.com/deluge/") == "https://box.example.com/deluge/json"
    assert (
        without_credentials("https://me:pw@box.example.com/json") == "https://box.example.com/json"
    )
    assert answer_json(200, b'{"result": 1, "error": null, "id": 1}')["result"] == 1
    for status, body in ((200, b"<html>"), (404, b"Not Found"), (200, b"[]")):
        with pytest.raises(ValueError, match=f"HTTP {status}, not a JSON-RPC answer"):
            answer_json(status, body)
