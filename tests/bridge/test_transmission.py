"""The Transmission adapter against a real transmission-daemon on loopback (RPC with
basic auth, offline): torrents and their labels as category and tags, stats, adding and
steering, the refusals and error kinds, the session-id exchange across a restart; the
HTTP answers a daemon or a proxy can give, from a stand-in server; and the bridge with
Transmission as a seedbox's client (node stats, reconciliation, piece verification
from the .torrent Transmission keeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from q4d_bridge.clients import make_client
from q4d_bridge.clients.base import ClientError, ClientErrorKind, NewTorrent, Torrent
from q4d_bridge.clients.transmission import TransmissionClient
from q4d_bridge.clients.transmission_rpc import rpc_url
from q4d_bridge.config.model import ClientConfig
from q4d_bridge.models import ItemState

from tests.bridge.test_e2e import digest_tree, make_file, running_bridge
from tests.bridge.test_nodes import command
from tests.helpers.services import LOOPBACK, Mosquitto, SshServer, free_port
from tests.seedbox.support import Transmission, TransmissionRpc, make_torrent, torrent_hash

pytestmark = pytest.mark.timeout(120)
# Transmission writes a name's <>:"\|?* as "_" on disk.
HOSTILE = 'Show "Pilot": 1|2.mkv'
HOSTILE_ON_DISK = "Show _Pilot__ 1_2.mkv"


def config(daemon: Transmission, **changes: Any) -> ClientConfig:
    fields: dict[str, Any] = {
        "type": "transmission", "url": daemon.url, "username": daemon.username,
        "password": daemon.password, "verify_tls": True,
    }  # fmt: skip
    return ClientConfig(**(fields | changes))


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Transmission]:
    with Transmission(tmp_path / "transmission") as running:
        yield running


@pytest.fixture
async def client(daemon: Transmission) -> AsyncIterator[TransmissionClient]:
    adapter = make_client(config(daemon))
    assert isinstance(adapter, TransmissionClient)
    yield adapter
    await adapter.close()


def made(tmp_path: Path, rel: str, size: int, seed: int) -> tuple[Path, bytes, str]:
    """A payload in tmp_path/data and its .torrent (bytes, info-hash)."""
    payload = tmp_path / "data" / rel
    if rel.endswith("/"):
        for n in range(2):
            make_file(payload / f"e0{n}.mkv", size + n, seed=seed + n)
    else:
        make_file(payload, size, seed=seed)
    raw = make_torrent(payload, tmp_path / f"{seed}.torrent")
    return payload, raw, torrent_hash(raw)


async def until[T](probe: Callable[[], Awaitable[T]], what: str, timeout: float = 30) -> T:
    for _ in range(int(timeout / 0.1)):
        if result := await probe():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def torrent(client: TransmissionClient, info_hash: str) -> Torrent | None:
    return next((t for t in await client.torrents() if t.hash == info_hash), None)


async def complete(client: TransmissionClient, info_hash: str) -> Torrent:
    async def done() -> Torrent | None:
        found = await torrent(client, info_hash)
        return found if found and found.complete and found.state == "seeding" else None

    return await until(done, f"torrent {info_hash} complete")


def labels(daemon: Transmission, info_hash: str) -> list[str]:
    found = TransmissionRpc(daemon)("torrent-get", ids=[info_hash], fields=["labels"])
    return list(found["torrents"][0]["labels"])


# --- against transmission-daemon ------------------------------------------------------


async def test_torrents_labels_and_stats(
    tmp_path: Path, daemon: Transmission, client: TransmissionClient
) -> None:
    assert (await client.version()).startswith(("3.", "4."))
    single, raw, single_hash = made(tmp_path, "Film.2024.mkv", 300_000, 1)
    folder, raw2, folder_hash = made(tmp_path, "Show.S01/", 100_000, 2)
    await client.add(NewTorrent(torrent_file=raw, category="movies", save_path=str(single.parent)))
    await client.add(NewTorrent(torrent_file=raw2, save_path=str(folder.parent)))
    # No peer will ever send it: a download that stays at 0.
    await client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{'ab' * 20}&dn=Nothing"))

    film = await complete(client, single_hash)
    assert (film.name, film.category, film.tags, film.size, film.tracker) == (
        "Film.2024.mkv", "movies", ("movies",), 300_000, "127.0.0.1"
    )  # fmt: skip
    assert film.content_path == str(single) and film.progress == 1.0
    # Its data was there when it was added: complete since then.
    assert film.completed_at is not None and abs(film.completed_at - single.stat().st_mtime) < 60
    show = await complete(client, folder_hash)
    assert (show.content_path, show.size, show.category, show.tags) == (
        str(folder), 200_001, None, ()
    )  # fmt: skip
    magnet = await torrent(client, "ab" * 20)
    assert magnet is not None and not magnet.complete and magnet.state == "downloading"
    assert {t.hash for t in await client.completed_torrents()} == {single_hash, folder_hash}

    stats = await client.stats()
    assert (stats.torrents, stats.active_downloads) == (3, 1)
    assert stats.free_space is not None and stats.free_space > 0
    assert stats.download_rate >= 0 and stats.upload_rate >= 0

    # Tags are all the labels, the category is the first one.
    await client.add_tags([single_hash, folder_hash], ["q4d:QUEUED", "hd", "hd", " "])
    assert labels(daemon, single_hash) == ["movies", "q4d:QUEUED", "hd"]
    assert labels(daemon, folder_hash) == ["q4d:QUEUED", "hd"]
    await client.remove_tags([single_hash, folder_hash], ["q4d:QUEUED"])
    assert labels(daemon, single_hash) == ["movies", "hd"]
    await client.set_category([single_hash, folder_hash], "tv")
    assert labels(daemon, single_hash) == ["tv", "movies", "hd"]
    assert labels(daemon, folder_hash) == ["tv", "hd"]
    await client.set_category([folder_hash], "hd")  # already a tag: it moves first
    assert labels(daemon, folder_hash) == ["hd", "tv"]
    await client.set_category([single_hash], None)
    assert labels(daemon, single_hash) == ["movies", "hd"]
    relabelled = await torrent(client, single_hash)
    assert relabelled is not None and (relabelled.category, relabelled.tags) == (
        "movies", ("movies", "hd")
    )  # fmt: skip
    with pytest.raises(ClientError) as err:
        await client.add_tags([single_hash], ["a,b"])
    assert err.value.kind is ClientErrorKind.REFUSED and "','" in str(err.value)


async def test_a_name_written_differently_on_disk(
    tmp_path: Path, client: TransmissionClient
) -> None:
    """Transmission keeps `"` and `:` in the name and writes `_` on disk: the content
    path is the one on disk (as the hook sends it)."""
    data = tmp_path / "data"
    make_file(data / "src" / HOSTILE, 200_000, seed=3)
    raw = make_torrent(data / "src" / HOSTILE, tmp_path / "hostile.torrent")
    (data / "src" / HOSTILE).rename(data / HOSTILE_ON_DISK)
    await client.add(NewTorrent(torrent_file=raw, save_path=str(data)))
    found = await complete(client, torrent_hash(raw))
    assert (found.name, found.content_path) == (HOSTILE, str(data / HOSTILE_ON_DISK))


async def test_steering_and_refusals(
    tmp_path: Path, daemon: Transmission, client: TransmissionClient
) -> None:
    one, raw1, hash1 = made(tmp_path, "one.mkv", 100_000, 4)
    two, raw2, hash2 = made(tmp_path, "two.mkv", 100_000, 5)
    await client.add(NewTorrent(torrent_file=raw1, save_path=str(one.parent), paused=True))
    await client.add(NewTorrent(torrent_file=raw2, save_path=str(two.parent)))
    await complete(client, hash2)
    paused = await torrent(client, hash1)
    assert paused is not None and paused.state == "stopped"

    await client.resume([hash1.upper()])
    await complete(client, hash1)
    await client.pause([hash1, hash2])

    async def stopped() -> bool:
        return {t.state for t in await client.torrents()} == {"stopped"}

    await until(stopped, "both stopped", 10)
    await client.resume([hash2])

    missing = "cd" * 20
    for call in (
        client.pause([hash1, missing]),
        client.remove([missing], delete_data=True),
        client.add_tags([missing], ["x"]),
        client.set_category([hash1, missing], "tv"),
        client.export_torrent(missing),
    ):
        with pytest.raises(ClientError) as err:
            await call
        assert err.value.kind is ClientErrorKind.NOT_FOUND
        assert str(err.value) == f"Transmission has no torrent {missing}"
    assert labels(daemon, hash1) == []  # nothing changed for the torrent that is there

    # An empty list names no torrent (to Transmission it would mean all of them), and
    # only info-hashes are sent (`recently-active` means something to Transmission).
    await client.remove([], delete_data=True)
    await client.pause([])
    assert len(await client.torrents()) == 2
    with pytest.raises(ClientError) as err:
        await client.remove(["recently-active"], delete_data=True)
    assert err.value.kind is ClientErrorKind.REFUSED and "not a v1 info-hash" in str(err.value)

    # .torrent export: Transmission names its file, it cannot send it.
    with pytest.raises(ClientError) as err:
        await client.export_torrent(hash1)
    kept = daemon.workdir / "config" / "torrents" / f"{hash1}.torrent"
    assert err.value.kind is ClientErrorKind.REFUSED
    assert str(err.value) == (
        f"Transmission's RPC cannot send .torrent files; this one is {kept} on the seedbox: "
        f"set seedboxes[].torrent_file (e.g. {kept.parent}/{{hash}}.torrent) to read it over SSH"
    )
    assert kept.read_bytes() == raw1

    # Adding: what it is given is checked; a torrent it has already is no error.
    for wrong, says in (
        (NewTorrent(), "exactly one"),
        (NewTorrent(magnet="magnet:?xt=urn:btih:" + "ef" * 20, torrent_file=raw1), "exactly one"),
        (NewTorrent(magnet="/etc/passwd"), "not a magnet link"),
        (NewTorrent(torrent_file=b"not bencode"), "invalid or corrupt torrent file"),
    ):
        with pytest.raises(ClientError) as err:
            await client.add(wrong)
        assert err.value.kind is ClientErrorKind.REFUSED and says in str(err.value)
    await client.add(NewTorrent(torrent_file=raw1, category="tv"))
    assert labels(daemon, hash1) == ["tv"]

    await client.remove([hash1], delete_data=False)
    await client.remove([hash2], delete_data=True)
    assert await client.torrents() == []
    assert one.exists()
    await until(lambda: asyncio.sleep(0, not two.exists()), "the data deleted", 10)


async def test_session_renewed_after_a_restart_then_unreachable(daemon: Transmission) -> None:
    sleeps = Sleeps()
    client = TransmissionClient(config(daemon), sleep=sleeps)
    try:
        await client.version()
        before = client._rpc.session_id
        daemon.stop()
        daemon.start()
        assert (await client.stats()).torrents == 0  # a 409 hands out the new session id
        assert client._rpc.session_id not in ("", before) and sleeps == []
        daemon.stop()
        # stats are not retried (the monitor's next poll is the retry) ...
        with pytest.raises(ClientError) as err:
            await client.stats()
        assert err.value.kind is ClientErrorKind.UNREACHABLE and sleeps == []
        # ... everything else is, after 1, 2 and 4 s
        with pytest.raises(ClientError) as err:
            await client.torrents()
        assert sleeps == [1, 2, 4]
        assert err.value.kind is ClientErrorKind.UNREACHABLE
        assert str(err.value).startswith(
            f"Transmission at {LOOPBACK}:{daemon.port} (torrent-get): gave up after 4 "
            "attempts: Transmission unreachable: ClientConnectorError"
        )
        # Export needs no retries: it says at once where the .torrent could come from.
        with pytest.raises(ClientError) as err:
            await client.export_torrent("ab" * 20)
        assert err.value.kind is ClientErrorKind.REFUSED and sleeps == [1, 2, 4]
        assert "set seedboxes[].torrent_file" in str(err.value)
    finally:
        await client.close()


@pytest.mark.parametrize(("username", "password"), [("q4d", "wrong"), (None, None)])
async def test_a_refused_login(
    daemon: Transmission, username: str | None, password: str | None
) -> None:
    client = TransmissionClient(config(daemon, username=username, password=password))
    try:
        with pytest.raises(ClientError) as err:
            await client.stats()
    finally:
        await client.close()
    assert err.value.kind is ClientErrorKind.AUTH
    assert str(err.value) == "Transmission login failed (check username/password)"


# --- answers from a stand-in server ---------------------------------------------------


# A fresh response each time: aiohttp sends a Response object once.
Answer = Callable[[], web.Response]


class StandIn:
    """An HTTP server answering each POST with the next of `answers` (the last one
    again and again)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {"headers": dict(request.headers), "body": await request.json(), "path": request.path}
        )
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is hang_up:
            assert request.transport is not None
            request.transport.close()
        return answer()


@pytest.fixture
async def stand_in() -> AsyncIterator[Callable[..., Awaitable[StandIn]]]:
    runners: list[web.AppRunner] = []

    async def serve(*answers: Answer) -> StandIn:
        server = StandIn(*answers)
        app = web.Application()
        app.router.add_post("/{tail:.*}", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, LOOPBACK, port).start()
        runners.append(runner)
        server.url = f"http://{LOOPBACK}:{port}"
        return server

    yield serve
    for runner in runners:
        await runner.cleanup()


def rpc(result: str = "success", **arguments: Any) -> Answer:
    return lambda: web.json_response({"result": result, "arguments": arguments})


def html(status: int, text: str) -> Answer:
    body = f"<h1>{status}</h1><p>{text}</p>"
    return lambda: web.Response(status=status, text=body, content_type="text/html")


def plain(status: int = 200, text: str = "", **headers: str) -> Answer:
    return lambda: web.Response(status=status, text=text, headers=headers)


@pytest.mark.parametrize(
    ("answer", "kind", "says"),
    [
        (html(403, "Unauthorized IP Address."), ClientErrorKind.AUTH,
         "refused access (HTTP 403): 403 Unauthorized IP Address."),
        (html(421, "the hostname was unrecognized"), ClientErrorKind.AUTH,
         "refused access (HTTP 421): 421 the hostname was unrecognized"),
        (html(404, "Not Found"), ClientErrorKind.REFUSED, "normally ends in /transmission/rpc"),
        (plain(text="<html>a login page</html>"), ClientErrorKind.REFUSED,
         "the answer to session-stats is not Transmission RPC"),
        (rpc("method name not recognized"), ClientErrorKind.REFUSED,
         "Transmission session-stats: method name not recognized"),
        (plain(409), ClientErrorKind.REFUSED, "HTTP 409 without a session id"),
        (plain(409, **{"X-Transmission-Session-Id": "again"}),
         ClientErrorKind.UNREACHABLE, "a new session id at every request"),
        (html(502, "Bad Gateway"), ClientErrorKind.UNREACHABLE,
         "Transmission unreachable: HTTP 502: 502 Bad Gateway"),
    ],
)  # fmt: skip
async def test_http_answers(
    stand_in: Callable[..., Awaitable[StandIn]],
    answer: Answer,
    kind: ClientErrorKind,
    says: str,
) -> None:
    server = await stand_in(answer)
    sleeps = Sleeps()
    client = TransmissionClient(
        ClientConfig("transmission", server.url + "/transmission/rpc", None, None, True),
        sleep=sleeps,
    )
    try:
        with pytest.raises(ClientError) as err:
            await client._rpc.call("session-stats")
    finally:
        await client.close()
    assert err.value.kind is kind and says in str(err.value)
    assert sleeps == ([1, 2, 4] if kind is ClientErrorKind.UNREACHABLE else [])


async def test_the_session_id_and_basic_auth(
    stand_in: Callable[..., Awaitable[StandIn]],
) -> None:
    session = {"X-Transmission-Session-Id": "s1"}
    server = await stand_in(
        plain(409, **session),
        rpc(version="2.94 (d8e60ee44f)", **{"rpc-version": 15}),
        rpc(torrents=[]),
    )
    client = TransmissionClient(ClientConfig("transmission", server.url, "me", None, True))
    try:
        assert await client.version() == "2.94 (d8e60ee44f)"
        # Before Transmission 3.00 there are no labels to be categories or tags.
        with pytest.raises(ClientError) as err:
            await client.add_tags(["ab" * 20], ["x"])
        assert err.value.kind is ClientErrorKind.REFUSED
        assert str(err.value) == (
            "Transmission 2.94 (d8e60ee44f) has no labels (categories and tags need "
            "Transmission 3.00 or newer)"
        )
        await client.add_tags([], ["x"])  # no torrent, no request
        assert len(server.requests) == 2
    finally:
        await client.close()
    first, second = server.requests
    assert first["path"] == second["path"] == "/transmission/rpc"
    assert first["headers"]["X-Transmission-Session-Id"] == ""
    assert second["headers"]["X-Transmission-Session-Id"] == "s1"
    assert second["headers"]["Authorization"] == "Basic bWU6"  # me:
    assert second["body"] == {
        "method": "session-get",
        "arguments": {"fields": ["version", "rpc-version"]},
    }


async def test_free_space_falls_back_to_the_session(
    stand_in: Callable[..., Awaitable[StandIn]],
) -> None:
    """`free-space` refused (a folder Transmission cannot stat): the session's figure."""
    server = await stand_in(
        rpc(**{"download-dir": "/gone", "download-dir-free-space": 42}),
        rpc(downloadSpeed=5, uploadSpeed=7, torrentCount=1),
        rpc(torrents=[{"status": 4}]),
        rpc("No such file or directory", path="/gone", **{"size-bytes": -1}),
    )
    client = TransmissionClient(ClientConfig("transmission", server.url, None, None, True))
    try:
        stats = await client.stats()
    finally:
        await client.close()
    assert (stats.free_space, stats.active_downloads, stats.download_rate, stats.upload_rate,
            stats.torrents) == (42, 1, 5, 7, 1)  # fmt: skip


def hang_up() -> web.Response:
    """The connection is closed without an answer (as by a daemon that restarted)."""
    return web.Response()


async def test_a_closed_connection_is_tried_again_at_once(
    stand_in: Callable[..., Awaitable[StandIn]],
) -> None:
    server = await stand_in(hang_up, rpc(torrents=[]), hang_up)
    sleeps = Sleeps()
    client = TransmissionClient(
        ClientConfig("transmission", server.url, None, None, True), sleep=sleeps
    )
    try:
        assert await client.torrents() == []
        assert (len(server.requests), sleeps) == (2, [])
        with pytest.raises(ClientError) as err:  # closed again and again: unreachable
            await client.torrents()
    finally:
        await client.close()
    assert err.value.kind is ClientErrorKind.UNREACHABLE and sleeps == [1, 2, 4]
    assert "Transmission unreachable: ServerDisconnectedError" in str(err.value)


def test_rpc_url() -> None:
    assert rpc_url("http://box:9091") == "http://box:9091/transmission/rpc"
    assert rpc_url("https://box.example.com/") == "https://box.example.com/transmission/rpc"
    assert rpc_url("https://box.example.com/tr/rpc") == "https://box.example.com/tr/rpc"


# --- the bridge with Transmission as the seedbox's client -----------------------------


async def test_bridge_reconciles_and_verifies_with_transmission(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """Node stats, the rescan that finds a completion no event announced (with its
    category from the first label, and its name as Transmission writes it on disk), and
    piece verification from the .torrent Transmission keeps in its config folder."""
    with Transmission(tmp_path / "transmission") as daemon:
        client = {"type": "transmission", "url": f"http://{LOOPBACK}:{daemon.port}",
                  "username": daemon.username, "password": daemon.password,
                  "poll_interval": 1}  # fmt: skip
        torrents = daemon.workdir / "config" / "torrents"
        seedbox = {"client": client, "reconcile": {"interval": 0},
                   "torrent_file": f"{torrents}/{{hash}}.torrent"}  # fmt: skip
        async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", seedbox=seedbox) as env:
            source = tmp_path / "made" / HOSTILE
            make_file(source, 3 * 2**20, seed=7)
            raw = make_torrent(source, tmp_path / "made" / "missed.torrent")
            source.rename(env.remote / HOSTILE_ON_DISK)
            info_hash = torrent_hash(raw)
            adapter = TransmissionClient(config(daemon))
            try:
                await adapter.add(
                    NewTorrent(torrent_file=raw, category="tv", save_path=str(env.remote))
                )
                await complete(adapter, info_hash)
            finally:
                await adapter.close()
            node = await env.recorder.wait_for(
                lambda: (n := env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"])["reachable"]
                and n["torrents"] == 1 and n,
                30, "node stats",
            )  # fmt: skip
            assert node["free_space"] > 0 and node["error"] is None

            result = (await command(env, "rescan"))["result"]
            assert (result["count"], result["names"]) == (1, [HOSTILE])
            await env.wait_settled(1)
            (enqueued,) = result["seedboxes"]["sb1"]["enqueued"]
            item = env.bridge.lifecycle.items[enqueued]
            assert (item.hash, item.state, item.event_id) == (
                info_hash, ItemState.DONE, f"reconcile-{info_hash}"
            )  # fmt: skip
            landed = env.library / "tv" / HOSTILE_ON_DISK
            assert digest_tree(landed) == digest_tree(env.remote / HOSTILE_ON_DISK)
            (event,) = env.recorder.events("completed")
            assert event["verified"] == "pieces"
            # Transmission down: the node says so.
            daemon.stop()
            await env.recorder.wait_for(
                lambda: env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"]["reachable"] is False,
                30, "node unreachable",
            )  # fmt: skip


def test_transmission_is_a_client_type(tmp_path: Path) -> None:
    from q4d_bridge.config.loader import parse_config

    from tests.helpers.configs import bridge_config

    key = tmp_path / "key"
    key.write_text("")
    hosts = tmp_path / "known_hosts"
    hosts.write_text("")
    raw = bridge_config(tmp_path / "data", tmp_path / "lib", key=key, known_hosts=hosts)
    raw["seedboxes"][0]["client"] = {"type": "transmission", "url": "http://10.0.0.5:9091"}
    client = parse_config(raw).seedboxes["sb1"].client
    assert client is not None and client.type == "transmission"
    assert isinstance(make_client(client), TransmissionClient)
