"""The rTorrent adapter against a real rtorrent: over its SCGI socket (TCP and Unix),
and over HTTP through a small XML-RPC gateway with Basic auth (what ruTorrent's or a
web server's /RPC2 is); SCGI answers that go wrong, from a fake endpoint; and the
bridge using rTorrent as a seedbox's client (node stats, reconciliation, pieces)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import shutil
import time
import xmlrpc.client
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from q4d_bridge.clients import make_client, rtorrent_transport
from q4d_bridge.clients.base import ClientError, ClientErrorKind, NewTorrent, Torrent
from q4d_bridge.clients.metainfo import parse_torrent_file
from q4d_bridge.clients.rtorrent import RtorrentClient
from q4d_bridge.config.model import ClientConfig
from q4d_bridge.models import ItemState

from tests.bridge.test_e2e import digest_tree, make_file, running_bridge
from tests.bridge.test_metainfo import build_torrent
from tests.bridge.test_nodes import command
from tests.helpers.services import OFFLINE_TRACKER, Mosquitto, SshServer, free_port
from tests.seedbox.support import RTorrent, make_torrent, need, torrent_hash

pytestmark = pytest.mark.timeout(120)
USER, PASSWORD = "rutorrent", "p@ss:wörd"


class Sleeps(list[float]):
    """Records the waits between retries instead of waiting; `then[n]` runs at the
    n-th wait (rTorrent started again, say)."""

    def __init__(self, then: dict[int, Callable[[], None]] | None = None) -> None:
        super().__init__()
        self.then = then or {}

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        if action := self.then.get(len(self)):
            await asyncio.to_thread(action)


def client_for(url: str, sleep: Sleeps | None = None, **kw: Any) -> RtorrentClient:
    config = ClientConfig("rtorrent", url, kw.get("username"), kw.get("password"),
                          verify_tls=kw.get("verify_tls", True))  # fmt: skip
    if sleep is not None:
        return RtorrentClient(config, sleep=sleep)
    client = make_client(config)
    assert isinstance(client, RtorrentClient)
    return client


async def eventually[T](probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    deadline = time.monotonic() + 20
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def raises(kind: ClientErrorKind, call: Awaitable[Any]) -> str:
    with pytest.raises(ClientError) as err:
        await call
    assert err.value.kind is kind, err.value
    return str(err.value)


def single_file(root: Path, name: str = "Film.2024.mkv", size: int = 300_000) -> tuple[Path, bytes]:
    """A payload in root and its .torrent (bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(os.urandom(size))
    return root / name, make_torrent(root / name, root.parent / f"{name}.torrent")


@pytest.fixture(params=["tcp", "unix"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RTorrent]:
    need("rtorrent")
    rt = RTorrent(tmp_path / "rt", unix=request.param == "unix")
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
async def client(daemon: RTorrent) -> AsyncIterator[RtorrentClient]:
    rt = client_for(daemon.url)
    try:
        yield rt
    finally:
        await rt.close()


def raw_proxy(daemon: RTorrent) -> Callable[..., Any]:
    """The test's own look at rTorrent (the seedbox side's synchronous XML-RPC proxy)."""
    from q4d_seedbox.clients.rtorrent import server_proxy

    proxy = server_proxy(daemon.url, None, None, 5)
    return lambda method, *args: getattr(proxy, method)(*args)


async def one(client: RtorrentClient, info_hash: str) -> Torrent:
    return next(t for t in await client.torrents() if t.hash == info_hash)


# --- over SCGI ------------------------------------------------------------------------


async def test_add_list_and_stats(client: RtorrentClient, daemon: RTorrent, tmp_path: Path) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", await client.version())
    payload, raw = single_file(tmp_path / "seeded")
    film = torrent_hash(raw)
    await client.add(
        NewTorrent(torrent_file=raw, save_path=str(payload.parent), category="TV 100%")
    )
    folder = tmp_path / "made" / "Show.S01"
    make_file(folder / "e01.mkv", 200_000, seed=1)
    make_file(folder / "e02.mkv", 100_000, seed=2)
    show = torrent_hash(make_torrent(folder, tmp_path / "show.torrent"))
    # Paused, into the default directory, where its data is not: nothing downloads.
    await client.add(NewTorrent(torrent_file=(tmp_path / "show.torrent").read_bytes(), paused=True))

    seeding = await eventually(
        lambda: _state(client, film, "seeding"), "rTorrent to check the seeded data"
    )
    assert seeding == Torrent(
        hash=film, name="Film.2024.mkv", state="seeding", progress=1.0, category="TV 100%",
        tags=(), content_path=str(payload), size=300_000,
        completed_at=seeding.completed_at, tracker="127.0.0.1", ratio=0.0,
    )  # fmt: skip
    assert seeding.completed_at is not None and abs(seeding.completed_at - time.time()) < 60
    stopped = await one(client, show)
    assert (stopped.state, stopped.progress, stopped.category, stopped.completed_at) == (
        "stopped", 0.0, None, None
    )  # fmt: skip
    assert stopped.content_path == str(daemon.downloads / "Show.S01") and stopped.size == 300_000
    assert [t.hash for t in await client.completed_torrents()] == [film]

    stats = await client.stats()
    assert (stats.torrents, stats.active_downloads, stats.download_rate) == (2, 0, 0)
    # d.free_diskspace of the seeding torrent (the only open one): the disk's free space.
    assert stats.free_space is not None
    assert abs(stats.free_space - shutil.disk_usage(payload.parent).free) < 256 * 2**20
    await client.resume([show])  # no data, no peers: it downloads for ever
    await eventually(lambda: _state(client, show, "downloading"), "the download to start")
    assert (await client.stats()).active_downloads == 1


async def _state(client: RtorrentClient, info_hash: str, state: str) -> Torrent | None:
    torrent = await one(client, info_hash)
    return torrent if torrent.state == state else None


async def test_steering_labels_and_tags(
    client: RtorrentClient, daemon: RTorrent, tmp_path: Path
) -> None:
    payload, raw = single_file(tmp_path / "seeded")
    h = torrent_hash(raw)
    await client.add(NewTorrent(torrent_file=raw, save_path=str(payload.parent)))
    await eventually(lambda: _state(client, h, "seeding"), "seeding")
    rpc = raw_proxy(daemon)

    # pause is d.stop (kept across restarts); resume also undoes ruTorrent's d.pause.
    await client.pause([h])
    assert (await one(client, h)).state == "stopped" and rpc("d.state", h.upper()) == 0
    await client.resume([h])
    assert (await one(client, h)).state == "seeding"
    rpc("d.pause", h.upper())
    assert (await one(client, h)).state == "paused"
    await client.resume([h])
    assert (await one(client, h)).state == "seeding"

    # The category is ruTorrent's label, d.custom1, read URL-decoded.
    rpc("d.custom1.set", h.upper(), "tv%20sonarr")
    assert (await one(client, h)).category == "tv sonarr"
    await client.set_category([h], "$d.name= 50%")
    assert rpc("d.custom1", h.upper()) == "%24d.name= 50%25"
    assert (await one(client, h)).category == "$d.name= 50%"
    await client.set_category([h], None)
    assert (await one(client, h)).category is None

    # Tags are d.custom=q4d, where q4d-labeld's tag mode writes.
    rpc("d.custom.set", h.upper(), "q4d", "q4d:DONE")
    assert (await one(client, h)).tags == ("q4d:DONE",)
    await client.add_tags([h], ["sonarr", "q4d:DONE"])
    assert rpc("d.custom", h.upper(), "q4d") == "q4d:DONE,sonarr"
    await client.remove_tags([h], ["q4d:DONE", "other"])
    assert (await one(client, h)).tags == ("sonarr",)
    await raises(ClientErrorKind.REFUSED, client.add_tags([h], ["a,b"]))

    # Torrents rTorrent does not have: named, after the others are done.
    ghost = "f" * 40
    message = await raises(ClientErrorKind.NOT_FOUND, client.pause([h, ghost]))
    assert message.endswith(f"no such torrent: {ghost}")
    assert (await one(client, h)).state == "stopped"
    for call in (client.resume([ghost]), client.set_category([ghost], "x"),
                 client.add_tags([ghost], ["x"]), client.remove([ghost], delete_data=False),
                 client.pause(["not-a-hash"])):  # fmt: skip
        await raises(ClientErrorKind.NOT_FOUND, call)

    # No .torrent over XML-RPC: the refusal names the session file to read instead.
    message = await raises(ClientErrorKind.REFUSED, client.export_torrent(h))
    template = message.rsplit("torrent_file: ", 1)[1]
    assert Path(template.format(HASH=h.upper())).read_bytes() == raw

    # rTorrent never deletes data: refused before anything is removed.
    message = await raises(ClientErrorKind.REFUSED, client.remove([h], delete_data=True))
    assert "SSH" in message
    assert [t.hash for t in await client.torrents()] == [h]
    await client.remove([h], delete_data=False)
    assert await client.torrents() == [] and payload.exists()


async def test_add_refusals_and_values_that_are_not_commands(
    client: RtorrentClient, daemon: RTorrent, tmp_path: Path
) -> None:
    payload, raw = single_file(tmp_path / 'odd, "dir"; x')
    h = torrent_hash(raw)
    planted = tmp_path / "planted"
    # Passed as d.custom1.set="…" in load.raw_start: quoted, and never run.
    category = f'$execute.throw=touch,{planted}"; d.erase= \\'
    await client.add(NewTorrent(torrent_file=raw, save_path=str(payload.parent), category=category))
    added = await eventually(lambda: _state(client, h, "seeding"), "seeding")
    assert (added.category, added.content_path) == (category, str(payload))
    assert not planted.exists()
    message = await raises(ClientErrorKind.REFUSED, client.add(NewTorrent(torrent_file=raw)))
    assert message.endswith(f"torrent {h} is already there")

    v2_only = build_torrent(tmp_path / "v2", "v2")
    for bad, why in [
        (NewTorrent(torrent_file=b"not bencoded"), "not a .torrent file: expected value"),
        (NewTorrent(torrent_file=b"d4:name1:xe"), "invalid 'info' section"),
        (NewTorrent(), "exactly one of"),
        (NewTorrent(magnet="magnet:?xt=urn:btih:" + "a" * 40, torrent_file=raw), "exactly one of"),
        (NewTorrent(magnet=str(tmp_path / "x.torrent")), "not a magnet link"),
        (NewTorrent(magnet="http://127.0.0.1:9/x.torrent"), "not a magnet link"),
        (NewTorrent(magnet="magnet:?dn=nothing"), "no xt=urn:btih or urn:btmh topic"),
        (NewTorrent(magnet="magnet:?xt=urn:btmh:1220" + "a" * 64), "no v1 info-hash (v2 only)"),
        (NewTorrent(torrent_file=v2_only), "the .torrent has no v1 info-hash (v2 only)"),
        (
            NewTorrent(magnet="magnet:?xt=urn:btih:" + "a" * 40, save_path="relative/dir"),
            "absolute path",
        ),
        (
            NewTorrent(magnet="magnet:?xt=urn:btih:" + "a" * 40, category="a\nb"),
            "control characters",
        ),
    ]:
        assert why in await raises(ClientErrorKind.REFUSED, client.add(bad))

    # A .torrent rTorrent will not load (512-byte pieces: libtorrent reads it, rTorrent
    # refuses pieces that small): rTorrent answers 0 whatever it does, so the adapter looks.
    piece = hashlib.sha1(b"x").digest()
    bogus = b"d4:infod6:lengthi1e4:name1:x12:piece lengthi512e6:pieces20:" + piece + b"ee"
    assert "did not take the .torrent" in await raises(
        ClientErrorKind.REFUSED, client.add(NewTorrent(torrent_file=bogus))
    )
    # Magnets: hex or base32, paused or not. Without a tracker (and DHT off) rTorrent
    # drops one silently.
    hex_hash = "c" * 40
    b32 = base64.b32encode(bytes.fromhex("d" * 40)).decode()
    tracker = f"&tr={OFFLINE_TRACKER}"
    await client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{hex_hash}{tracker}", paused=True,
                                category="films", save_path=str(tmp_path / "m")))  # fmt: skip
    await client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{b32}&dn=B{tracker}"))
    paused, started = await one(client, hex_hash), await one(client, "d" * 40)
    assert (paused.state, paused.category, paused.progress) == ("stopped", "films", 0.0)
    assert paused.content_path.startswith(str(tmp_path / "m") + "/")
    assert started.state == "downloading"
    assert "did not take the magnet" in await raises(
        ClientErrorKind.REFUSED, client.add(NewTorrent(magnet="magnet:?xt=urn:btih:" + "e" * 40))
    )


async def test_a_hybrid_torrent_is_added_under_its_v1_hash(
    client: RtorrentClient, tmp_path: Path
) -> None:
    """rTorrent knows v1 only; a hybrid .torrent (v1 and v2) loads as v1."""
    raw = build_torrent(tmp_path, "hybrid")
    meta = parse_torrent_file(raw)
    assert meta.v1 is not None and meta.v2 is not None
    await client.add(NewTorrent(torrent_file=raw, save_path=str(tmp_path), paused=True))
    added = await one(client, meta.v1)
    assert (added.name, added.state, added.content_path) == (
        "Show",
        "stopped",
        str(tmp_path / "Show"),
    )


async def test_unreachable(tmp_path: Path) -> None:
    for url in (f"scgi://127.0.0.1:{free_port()}", f"scgi://{tmp_path / 'none.sock'}",
                f"http://127.0.0.1:{free_port()}/RPC2"):  # fmt: skip
        slept = Sleeps()
        client = client_for(url, slept)
        try:
            # The stats are not retried: the monitor's next poll is the retry.
            message = await raises(ClientErrorKind.UNREACHABLE, client.stats())
            assert message.startswith(f"rTorrent unreachable at {url}: ") and slept == []
            message = await raises(ClientErrorKind.UNREACHABLE, client.torrents())
        finally:
            await client.close()
        assert message.startswith(
            f"rTorrent torrent list: gave up after 4 attempts: rTorrent unreachable at {url}: "
        )
        assert slept == [1, 2, 4]


async def test_unreachable_is_retried_then_given_up(daemon: RTorrent, tmp_path: Path) -> None:
    """Every call but the stats is tried again after 1, 2 and 4 s while rTorrent is down;
    then it fails with what was tried."""
    slept = Sleeps()
    client = client_for(daemon.url, slept)
    payload, raw = single_file(tmp_path / "seeded")
    h = torrent_hash(raw)
    try:
        await client.add(NewTorrent(torrent_file=raw, save_path=str(payload.parent)))
        daemon.stop()
        where = f"rTorrent unreachable at {daemon.url}: "
        for what, call in [
            ("version", client.version),
            ("torrent list", client.completed_torrents),
            ("pause", lambda: client.pause([h])),
            ("resume", lambda: client.resume([h])),
            ("set category", lambda: client.set_category([h], "tv")),
            ("add tags", lambda: client.add_tags([h], ["q4d:DONE"])),
            ("remove tags", lambda: client.remove_tags([h], ["q4d:DONE"])),
            ("remove", lambda: client.remove([h], delete_data=False)),
            (f"add {h}", lambda: client.add(NewTorrent(torrent_file=raw))),
        ]:  # fmt: skip
            slept.clear()
            message = await raises(ClientErrorKind.UNREACHABLE, call())
            assert message.startswith(f"rTorrent {what}: gave up after 4 attempts: {where}")
            assert slept == [1, 2, 4]
        slept.clear()
        await raises(ClientErrorKind.UNREACHABLE, client.stats())
        # Export is refused whatever rTorrent would say: nothing to retry.
        await raises(ClientErrorKind.REFUSED, client.export_torrent(h))
        assert slept == []
    finally:
        await client.close()


async def test_back_during_the_retries(daemon: RTorrent, tmp_path: Path) -> None:
    """rTorrent started again while a call waits to retry: the call succeeds (SCGI has
    no session to renew)."""
    slept = Sleeps({2: daemon.start})
    client = client_for(daemon.url, slept)
    payload, raw = single_file(tmp_path / "seeded")
    h = torrent_hash(raw)
    try:
        await client.add(NewTorrent(torrent_file=raw, save_path=str(payload.parent), paused=True))
        daemon.stop()
        assert [t.hash for t in await client.torrents()] == [h]
        assert slept == [1, 2]
        daemon.stop()
        slept.clear()
        slept.then = {1: daemon.start}
        await client.set_category([h], "tv")
        assert slept == [1] and (await one(client, h)).category == "tv"
    finally:
        await client.close()


async def test_an_add_or_removal_whose_answer_was_lost(daemon: RTorrent, tmp_path: Path) -> None:
    """The load arrived, its answer did not: the retry finds the torrent and neither loads
    it again nor calls it already there. Likewise a removal: the torrent already gone is
    no NOT_FOUND."""
    slept = Sleeps()
    client = client_for(daemon.url, slept)
    post = client._transport.post
    sent: list[str] = []

    async def lossy(body: bytes) -> bytes:
        answer = await post(body)
        for method in ("load.raw_start", "d.erase"):
            if f"<string>{method}</string>".encode() in body or (
                f"<methodName>{method}</methodName>".encode() in body
            ):
                sent.append(method)
                if sent.count(method) == 1:
                    raise ClientError(f"rTorrent unreachable at {daemon.url}: the answer was lost")
        return answer

    client._transport.post = lossy  # type: ignore[method-assign]
    payload, raw = single_file(tmp_path / "seeded")
    h = torrent_hash(raw)
    try:
        await client.add(NewTorrent(torrent_file=raw, save_path=str(payload.parent), category="tv"))
        assert sent == ["load.raw_start"] and slept == [1]
        (added,) = await client.torrents()
        assert (added.hash, added.category) == (h, "tv")
        await client.remove([h], delete_data=False)
        assert sent == ["load.raw_start", "d.erase", "d.erase"] and slept == [1, 1]
        assert await client.torrents() == []
    finally:
        await client.close()


# --- SCGI answers that go wrong -------------------------------------------------------


@asynccontextmanager
async def fake_scgi(answer: bytes | None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An SCGI endpoint that reads one request and answers `answer` (None: never)."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = int((await reader.readuntil(b":"))[:-1])
        headers = await reader.readexactly(length + 1)
        fields = headers[:-1].split(b"\x00")
        body = await reader.readexactly(int(fields[fields.index(b"CONTENT_LENGTH") + 1]))
        requests.append(headers + body)
        if answer is None:
            await reader.read()  # until the client gives up and closes
        else:
            writer.write(answer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"scgi://127.0.0.1:{port}", requests
    finally:
        server.close()
        await server.wait_closed()


def ok(xml: bytes) -> bytes:
    return b"Status: 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s" % (
        len(xml), xml
    )  # fmt: skip


VERSION = xmlrpc.client.dumps(("0.9.8",), methodresponse=True).encode()


@pytest.mark.parametrize(
    ("answer", "kind", "message"),
    [
        (ok(VERSION), None, "0.9.8"),
        (b"Content-Type: text/xml\n\n" + VERSION, None, "0.9.8"),  # no status, bare LFs
        (ok(VERSION)[:-20], ClientErrorKind.UNREACHABLE, "the answer ended early"),
        (b"Status: 200 OK\r\nContent-Type: tex", ClientErrorKind.UNREACHABLE, "the answer ended early"),
        (b"Status: 502 Bad Gateway\r\n\r\n", ClientErrorKind.UNREACHABLE, "SCGI status 502 Bad Gateway"),
        (b"Status: 404 Not Found\r\n\r\n", ClientErrorKind.REFUSED, "SCGI status 404 Not Found"),
        (ok(b"<html>login</html>"), ClientErrorKind.REFUSED, "not an XML-RPC answer"),
        (ok(xmlrpc.client.dumps(xmlrpc.client.Fault(-506, "Method 'system.client_version' not defined")).encode()),
         ClientErrorKind.REFUSED, "not defined (an older rTorrent?)"),
        (None, ClientErrorKind.UNREACHABLE, "no answer within 0.3 s"),
    ],
)  # fmt: skip
async def test_scgi_answers(
    monkeypatch: pytest.MonkeyPatch, answer: bytes | None, kind: ClientErrorKind | None,
    message: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(rtorrent_transport, "REQUEST_TIMEOUT", 0.3)
    slept = Sleeps()
    async with fake_scgi(answer) as (url, requests):
        client = client_for(url, slept)
        if kind is None:
            assert await client.version() == message
        else:
            assert message in await raises(kind, client.version())
    # The request: a netstring of headers, CONTENT_LENGTH first and SCGI=1, then the body;
    # sent four times when the answer is worth retrying.
    body = xmlrpc.client.dumps((), "system.client_version", encoding="utf-8").encode()
    headers = b"CONTENT_LENGTH\x00%d\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00" % len(body)
    retried = kind is ClientErrorKind.UNREACHABLE
    assert requests == [headers + b"," + body] * (4 if retried else 1)
    assert slept == ([1, 2, 4] if retried else [])


async def test_scgi_answer_size_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtorrent_transport, "MAX_ANSWER_BYTES", 2**20)
    async with fake_scgi(ok(b" " * 2**21 + VERSION)) as (url, _):
        assert "larger than 1 MiB" in await raises(
            ClientErrorKind.REFUSED, client_for(url).version()
        )


# --- over HTTP: a /RPC2 gateway with Basic auth ---------------------------------------


@asynccontextmanager
async def rpc2_gateway(daemon: RTorrent) -> AsyncIterator[str]:
    """What ruTorrent's or nginx's /RPC2 is: HTTP Basic auth in front of rTorrent's
    SCGI socket. Answers 502 when rTorrent is down, and redirects /login."""
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    async def rpc2(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="rt"'})
        body = await request.read()
        headers = b"CONTENT_LENGTH\x00%d\x00SCGI\x001\x00" % len(body)
        try:
            if daemon.unix:
                reader, writer = await asyncio.open_unix_connection(daemon.socket)
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        except OSError:
            return web.Response(status=502)
        writer.write(b"%d:%s," % (len(headers), headers) + body)
        answer = await reader.read()
        writer.close()
        return web.Response(body=answer.partition(b"\r\n\r\n")[2], content_type="text/xml")

    async def login(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/login.html")

    app = web.Application()
    app.router.add_post("/RPC2", rpc2)
    app.router.add_post("/login", login)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_over_http_with_basic_auth(daemon: RTorrent, tmp_path: Path) -> None:
    payload, raw = single_file(tmp_path / "seeded")
    async with rpc2_gateway(daemon) as base:
        slept = Sleeps()
        client = client_for(f"{base}/RPC2", slept, username=USER, password=PASSWORD)
        in_url = client_for(base.replace("//", "//rutorrent:p%40ss%3Aw%C3%B6rd@") + "/RPC2")
        wrong = client_for(f"{base}/RPC2", username=USER, password="wrong")
        nowhere = client_for(f"{base}/nowhere", username=USER, password=PASSWORD)
        login = client_for(f"{base}/login", username=USER, password=PASSWORD)
        try:
            await client.add(NewTorrent(torrent_file=raw, save_path=str(payload.parent),
                                        category="movies"))  # fmt: skip
            (torrent,) = await client.torrents()
            assert (torrent.hash, torrent.category) == (torrent_hash(raw), "movies")
            assert (await in_url.stats()).torrents == 1
            assert in_url.where == f"{base}/RPC2"  # no credentials in messages
            message = await raises(ClientErrorKind.AUTH, wrong.version())
            assert (
                message
                == f"rTorrent at {base}/RPC2: HTTP 401 Unauthorized (check username/password)"
            )
            assert "404" in await raises(ClientErrorKind.REFUSED, nowhere.version())
            assert "redirected to /login.html" in await raises(
                ClientErrorKind.REFUSED, login.version()
            )
            daemon.stop()
            message = await raises(ClientErrorKind.UNREACHABLE, client.version())
            assert message == (
                f"rTorrent version: gave up after 4 attempts: rTorrent at {base}/RPC2: "
                "HTTP 502 Bad Gateway"
            )
            assert slept == [1, 2, 4]
        finally:
            for each in (client, in_url, wrong, nowhere, login):
                await each.close()


# --- the bridge with rTorrent as a seedbox's client -----------------------------------


async def test_bridge_node_reconciliation_and_pieces_from_the_session(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Node stats from rTorrent over SCGI; a completion no event announced is found and
    lands; its pieces are checked with the .torrent read from rTorrent's session folder
    (export is refused, quietly, since torrent_file is set)."""
    need("rtorrent")
    rt = RTorrent(tmp_path / "rt")
    rt.start()
    caplog.set_level(logging.DEBUG, logger="q4d_bridge")
    try:
        client = {"type": "rtorrent", "url": rt.url, "poll_interval": 1}
        seedbox = {"client": client, "reconcile": {"interval": 0},
                   "torrent_file": str(tmp_path / "rt" / "session" / "{HASH}.torrent")}  # fmt: skip
        async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", seedbox=seedbox) as env:
            make_file(env.remote / "missed.mkv", 3 * 2**20, seed=3)
            raw = make_torrent(env.remote / "missed.mkv", tmp_path / "missed.torrent")
            adapter = client_for(rt.url)
            try:
                await adapter.add(NewTorrent(torrent_file=raw, save_path=str(env.remote)))
                missed = torrent_hash(raw)
                await eventually(lambda: _state(adapter, missed, "seeding"), "seeding")
            finally:
                await adapter.close()
            node = await env.recorder.wait_for(
                lambda: (n := env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"])["reachable"]
                and n["torrents"] == 1 and n,
                30, "node stats",
            )  # fmt: skip
            assert node["free_space"] > 0 and node["error"] is None
            result = await command(env, "rescan")
            assert result["result"]["names"] == ["missed.mkv"]
            await env.wait_settled(1)
            item = next(iter(env.bridge.lifecycle.items.values()))
            assert (item.hash, item.state) == (missed, ItemState.DONE)
            assert digest_tree(env.library / "other" / "missed.mkv") == digest_tree(
                env.remote / "missed.mkv"
            )
            await env.recorder.wait_for(lambda: env.recorder.events("completed"), 10, "completed")
            assert env.recorder.events("completed")[0]["verified"] == "pieces"
            rt.stop()
            await env.recorder.wait_for(
                lambda: env.bridge.state().as_dict()["seedboxes"]["sb1"]["client"]["reachable"] is False,
                30, "node unreachable",
            )  # fmt: skip
    finally:
        rt.stop()
    export = [r for r in caplog.records if "export failed" in r.getMessage()]
    assert export and all(r.levelno == logging.DEBUG for r in export)
    assert "cannot hand out .torrent files" in export[0].getMessage()
