"""The qBittorrent adapter against a real qbittorrent-nox (tests/helpers/qbittorrent.py:
offline, loopback only): adding, pausing and resuming, categories, removal, and each
kind of failure; and against a small fake of qBittorrent 5's WebUI for what the
installed version cannot show (the stop/start endpoints, 5xx answers, timeouts, an
add that arrived although its answer did not)."""

from __future__ import annotations

import asyncio
import base64
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from q4d_bridge.clients import qbittorrent
from q4d_bridge.clients.base import ClientError, ClientErrorKind, NewTorrent, Torrent
from q4d_bridge.clients.metainfo import parse_magnet
from q4d_bridge.clients.qbittorrent import QbittorrentClient, torrent_id
from q4d_bridge.config.model import ClientConfig

from tests.bridge.test_e2e import make_file
from tests.bridge.test_verify import mktorrent
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import LOOPBACK

pytestmark = pytest.mark.timeout(120)

# qBittorrent 5 says "stopped" where 4.x says "paused".
PAUSED = frozenset({"pausedDL", "pausedUP", "stoppedDL", "stoppedUP"})
SEEDING = frozenset({"uploading", "stalledUP", "queuedUP", "forcedUP"})
Kind = ClientErrorKind


class Sleeps(list[float]):
    """Records the waits between retries instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def config(url: str, username: str | None = "admin", password: str | None = "pw") -> ClientConfig:
    return ClientConfig("qbittorrent", url, username, password, verify_tls=True)


@pytest.fixture
def qbt(tmp_path: Path) -> Iterator[QBittorrent]:
    with QBittorrent(tmp_path / "qbt") as qbt:
        yield qbt


@pytest.fixture
def slept() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(qbt: QBittorrent, slept: Sleeps) -> AsyncIterator[QbittorrentClient]:
    client = QbittorrentClient(config(qbt.url, qbt.username, qbt.password), sleep=slept)
    yield client
    await client.close()


async def eventually[T](
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20
) -> T:
    """qBittorrent applies a change at once and shows it within a refresh (~1.5 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if (value := await probe()) is not None:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"never: {what}")


async def listed(client: QbittorrentClient, info_hash: str, ready: Callable[[Torrent], bool] = lambda t: True) -> Torrent:  # fmt: skip
    async def probe() -> Torrent | None:
        found = [t for t in await client.torrents() if t.hash == info_hash]
        return found[0] if found and ready(found[0]) else None

    return await eventually(probe, f"torrent {info_hash}")


def payload(root: Path, name: str, seed: int) -> tuple[Path, str, bytes]:
    """A file, and its .torrent (announcing to a closed loopback port)."""
    make_file(root / "data" / name, 2**20, seed=seed)
    info = mktorrent(root / "data" / name, root / f"{name}.torrent")
    return root / "data", info.info_hash, (root / f"{name}.torrent").read_bytes()


# --- the helper's qbittorrent-nox --------------------------------------------------------


async def test_the_test_qbittorrent_is_offline(qbt: QBittorrent) -> None:
    """No DHT, LSD or PeX; no IP-geolocation database download; no UPnP/NAT-PMP, no
    DynDNS, no RSS; peers only on loopback (tests/test_netguard.py watches it run)."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, base_url=qbt.url) as http:
        login = await http.post(
            "/api/v2/auth/login", data={"username": qbt.username, "password": qbt.password}
        )
        assert await login.text() == "Ok."
        prefs = await (await http.get("/api/v2/app/preferences")).json()
    assert (prefs["dht"], prefs["lsd"], prefs["pex"]) == (False, False, False)
    assert prefs["resolve_peer_countries"] is False
    assert (prefs["upnp"], prefs["dyndns_enabled"], prefs["web_ui_upnp"]) == (False, False, False)
    assert (prefs["rss_processing_enabled"], prefs["rss_auto_downloading_enabled"]) == (
        False,
        False,
    )
    assert prefs["current_network_interface"] == "lo"
    assert prefs["listen_port"] == qbt.peer_port


# --- the adapter against the real qBittorrent ---------------------------------------------


async def test_version_is_the_installed_one(qbt: QBittorrent, client: QbittorrentClient) -> None:
    out = subprocess.run([qbt.binary, "--version"], capture_output=True, text=True, check=True)
    installed = re.search(r"v(\d+\.\d+\.\d+\S*)", out.stdout)
    assert installed is not None
    assert await client.version() == installed[1]


async def test_add_paused_with_category_and_save_path_then_resume_and_pause(
    tmp_path: Path, client: QbittorrentClient
) -> None:
    data, info_hash, torrent_file = payload(tmp_path, "Film.mkv", 1)
    new = NewTorrent(torrent_file=torrent_file, category="movies", save_path=str(data), paused=True)
    assert torrent_id(new) == info_hash
    await client.add(new)
    added = await listed(client, info_hash, lambda t: t.state in PAUSED)
    # A category qBittorrent did not know is created by the add.
    assert (added.name, added.category, added.size) == ("Film.mkv", "movies", 2**20)
    assert added.content_path == str(data / "Film.mkv")
    assert [t.hash for t in await client.torrents()] == [info_hash]
    assert await client.completed_torrents() == []  # paused before checking its data

    await client.resume([info_hash.upper()])  # any case
    seeding = await listed(client, info_hash, lambda t: t.state in SEEDING)
    assert seeding.complete and seeding.completed_at is not None  # the data was there
    assert [t.hash for t in await client.completed_torrents()] == [info_hash]
    await client.pause([info_hash])
    await listed(client, info_hash, lambda t: t.state in PAUSED)
    stats = await client.stats()
    assert (stats.torrents, stats.active_downloads) == (1, 0)


async def test_add_started_by_default(tmp_path: Path, client: QbittorrentClient) -> None:
    data, info_hash, torrent_file = payload(tmp_path, "Show.mkv", 2)
    await client.add(NewTorrent(torrent_file=torrent_file, save_path=str(data)))
    torrent = await listed(client, info_hash, lambda t: t.state in SEEDING)
    assert torrent.category is None and torrent.complete


async def test_a_magnet_link_is_listed_under_its_hash(client: QbittorrentClient) -> None:
    """In hex or base32; without peers (none on loopback) it waits for metadata."""
    info_hash = "0123456789abcdef0123456789abcdef01234567"
    base32 = base64.b32encode(bytes.fromhex(info_hash)).decode()
    magnet = f"magnet:?xt=urn:btih:{base32}&dn=Wanted"
    await client.add(NewTorrent(magnet=magnet, category="tv", paused=True))
    torrent = await listed(client, info_hash, lambda t: t.state in PAUSED)
    assert (torrent.name, torrent.category, torrent.progress) == ("Wanted", "tv", 0)


async def test_adding_what_is_there_already_is_not_an_error(
    tmp_path: Path, client: QbittorrentClient, slept: Sleeps
) -> None:
    data, info_hash, torrent_file = payload(tmp_path, "Twice.mkv", 3)
    await client.add(NewTorrent(torrent_file=torrent_file, save_path=str(data), paused=True))
    await client.add(NewTorrent(torrent_file=torrent_file, paused=True))  # still loading, maybe
    await listed(client, info_hash)
    await client.add(NewTorrent(torrent_file=torrent_file))
    await client.add(NewTorrent(magnet=f"magnet:?xt=urn:btih:{info_hash}"))
    assert [t.hash for t in await client.torrents()] == [info_hash]
    assert slept == []


@pytest.mark.parametrize(
    "new",
    [
        NewTorrent(torrent_file=b"not bencoded at all"),  # no hash can be told: sent once
        NewTorrent(torrent_file=b"d4:infod4:name1:xee"),  # an info dict, but no torrent
        NewTorrent(magnet="magnet:?dn=no-topic"),
    ],
    ids=["garbage", "no-pieces", "magnet-without-hash"],
)
async def test_a_bad_torrent_is_refused_at_once(
    client: QbittorrentClient, slept: Sleeps, new: NewTorrent
) -> None:
    with pytest.raises(ClientError) as err:
        await client.add(new)
    assert err.value.kind is Kind.REFUSED and not err.value.transient
    assert str(err.value).startswith("qBittorrent refused ")
    assert slept == [] and await client.torrents() == []


async def test_exactly_one_of_magnet_and_file(client: QbittorrentClient) -> None:
    for new in (NewTorrent(), NewTorrent(magnet="magnet:?xt=urn:btih:" + "1" * 40, torrent_file=b"d")):  # fmt: skip
        with pytest.raises(ClientError, match="exactly one") as err:
            await client.add(new)
        assert err.value.kind is Kind.REFUSED


async def test_set_category_creates_it_and_none_clears_it(
    tmp_path: Path, client: QbittorrentClient
) -> None:
    data, info_hash, torrent_file = payload(tmp_path, "Album.flac", 4)
    await client.add(NewTorrent(torrent_file=torrent_file, save_path=str(data), paused=True))
    await listed(client, info_hash)
    await client.set_category([info_hash], "music lossless")
    await listed(client, info_hash, lambda t: t.category == "music lossless")
    await client.set_category([info_hash], "music lossless")  # twice: the same
    await client.set_category([info_hash], None)
    await listed(client, info_hash, lambda t: t.category is None)
    with pytest.raises(ClientError) as err:
        await client.set_category([info_hash], "bad//name")
    assert err.value.kind is Kind.REFUSED
    assert "HTTP 409" in str(err.value)


async def test_remove_with_and_without_data(tmp_path: Path, client: QbittorrentClient) -> None:
    data, kept, kept_file = payload(tmp_path, "Kept.mkv", 5)
    _, gone, gone_file = payload(tmp_path, "Gone.mkv", 6)
    for torrent_file in (kept_file, gone_file):
        await client.add(NewTorrent(torrent_file=torrent_file, save_path=str(data)))
    for info_hash in (kept, gone):
        await listed(client, info_hash, lambda t: t.complete)
    await client.remove([kept], delete_data=False)
    await client.remove([gone], delete_data=True)

    async def removed() -> bool | None:
        return (await client.torrents() == [] and not (data / "Gone.mkv").exists()) or None

    await eventually(removed, "both removed, one with its data")
    assert (data / "Kept.mkv").stat().st_size == 2**20


async def test_unknown_torrents_are_not_found(tmp_path: Path, client: QbittorrentClient, slept: Sleeps) -> None:  # fmt: skip
    data, info_hash, torrent_file = payload(tmp_path, "Here.mkv", 7)
    await client.add(NewTorrent(torrent_file=torrent_file, save_path=str(data)))
    await listed(client, info_hash, lambda t: t.state in SEEDING)
    missing = "f" * 40
    # qBittorrent ignores unknown hashes; the adapter names them (after steering the rest).
    with pytest.raises(ClientError) as err:
        await client.pause([missing, info_hash])
    assert err.value.kind is Kind.NOT_FOUND
    assert (
        str(err.value) == f"qBittorrent: pause: no torrent {missing} (pause done for the other 1)"
    )
    await listed(client, info_hash, lambda t: t.state in PAUSED)
    for call in (
        client.resume([missing]),
        client.set_category([missing], "x"),
        client.remove([missing], delete_data=True),
        client.export_torrent(missing),
    ):
        with pytest.raises(ClientError) as err:
            await call
        assert err.value.kind is Kind.NOT_FOUND, err.value
    assert slept == []  # not worth retrying
    await client.pause([])  # nothing to do, nothing asked


@pytest.mark.parametrize("bad", ["all", "xyz", "a" * 39, ""])
async def test_what_is_not_an_info_hash_is_never_sent(
    tmp_path: Path, client: QbittorrentClient, bad: str
) -> None:
    """qBittorrent reads hashes=all as every torrent."""
    data, info_hash, torrent_file = payload(tmp_path, "Safe.mkv", 8)
    await client.add(NewTorrent(torrent_file=torrent_file, save_path=str(data)))
    await listed(client, info_hash, lambda t: t.state in SEEDING)
    for call in (client.pause([bad]), client.remove([bad], delete_data=True)):
        with pytest.raises(ClientError, match="not an info-hash") as err:
            await call
        assert err.value.kind is Kind.REFUSED
    await asyncio.sleep(2)  # longer than qBittorrent takes to show a change
    assert [t.state in SEEDING for t in await client.torrents()] == [True]


async def test_unreachable_is_retried_then_reported_and_a_restart_renews_the_session(
    tmp_path: Path, qbt: QBittorrent, client: QbittorrentClient, slept: Sleeps
) -> None:
    data, info_hash, torrent_file = payload(tmp_path, "Kept.mkv", 9)
    await client.add(NewTorrent(torrent_file=torrent_file, save_path=str(data)))
    await listed(client, info_hash)
    qbt.stop()
    with pytest.raises(ClientError) as err:
        await client.torrents()
    assert err.value.kind is Kind.UNREACHABLE and slept == [1, 2, 4]
    assert str(err.value).startswith("qBittorrent torrent list: gave up after 4 attempts: ")
    assert f"qBittorrent at {LOOPBACK}:{qbt.port} unreachable: ClientConnectorError" in str(
        err.value
    )
    with pytest.raises(ClientError) as err:
        await client.remove([info_hash], delete_data=True)  # sent once, never retried
    assert err.value.kind is Kind.UNREACHABLE and slept == [1, 2, 4]
    # The old session died with the process: refused (403), logged in again, answered.
    qbt.start()
    assert [t.hash for t in await client.torrents()] == [info_hash]
    assert slept == [1, 2, 4]
    await client.close()
    await client.close()  # twice: nothing left to close


async def test_a_wrong_password_is_auth_at_once(qbt: QBittorrent, slept: Sleeps) -> None:
    client = QbittorrentClient(config(qbt.url, qbt.username, "wrong"), sleep=slept)
    try:
        for call in (client.torrents(), client.stats(), client.pause(["a" * 40])):
            with pytest.raises(ClientError) as err:
                await call
            assert err.value.kind is Kind.AUTH
            assert str(err.value) == "qBittorrent login failed (check username/password)"
    finally:
        await client.close()
    assert slept == []


async def test_no_credentials_is_auth_after_one_fresh_session(
    qbt: QBittorrent, slept: Sleeps
) -> None:
    """Without a login (and no WebUI bypass for this address) every request is refused
    (403): a second session is tried, then the failure is AUTH."""
    client = QbittorrentClient(config(qbt.url, None, None), sleep=slept)
    try:
        with pytest.raises(ClientError) as err:
            await client.version()
    finally:
        await client.close()
    assert err.value.kind is Kind.AUTH and slept == []
    assert "HTTP 403" in str(err.value)


# --- hashes as qBittorrent will list them ------------------------------------------------


def test_hashes_of_new_torrents(tmp_path: Path) -> None:
    """What the adapter looks for after an add (tests/bridge/test_metainfo.py has the rest)."""
    _, info_hash, torrent_file = payload(tmp_path, "Hashed.mkv", 10)
    assert torrent_id(NewTorrent(torrent_file=torrent_file)) == info_hash
    v1 = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    base32 = base64.b32encode(bytes.fromhex(v1)).decode()
    assert torrent_id(NewTorrent(magnet=f"magnet:?xt=urn:btih:{base32}")) == v1
    v2 = "ab" * 32
    assert torrent_id(NewTorrent(magnet=f"magnet:?xt=urn:btmh:1220{v2}")) == v2[:40]
    # a hybrid is listed under its v2 hash, not its v1 one
    hybrid = f"magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}"
    assert torrent_id(NewTorrent(magnet=hybrid)) == v2[:40]
    # Nothing to look for: the add is sent once, and qBittorrent says what it makes of it.
    for bad in (
        NewTorrent(torrent_file=b"garbage"),
        NewTorrent(magnet="magnet:?dn=x"),
        NewTorrent(),
    ):
        assert torrent_id(bad) is None


# --- a fake qBittorrent 5 ---------------------------------------------------------------


class FakeQbt5:
    """The WebUI API 2.11 (qBittorrent 5.0): torrents/stop and /start, `stopped` when
    adding; answers can be made to fail with a status, or to hang."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.forms: list[dict[str, Any]] = []
        self.fail: dict[str, list[int]] = {}  # endpoint: statuses to answer with, in turn
        self.hang: set[str] = set()
        self.torrents: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.path.removeprefix("/api/v2/")
        self.requests.append(endpoint)
        if endpoint in self.hang:
            await self._released.wait()
        if self.fail.get(endpoint):
            status = self.fail[endpoint].pop(0)
            if endpoint == "torrents/add" and status == 503 and request.method == "POST":
                # qBittorrent took it; the answer was lost (a proxy in between, say).
                await self._add(request)
            return web.Response(
                status=status, text="Your IP address has been banned" if status == 403 else ""
            )
        if endpoint == "auth/login":
            response = web.Response(text="Ok.")
            response.set_cookie("SID", "fake-session")
            return response
        if request.cookies.get("SID") != "fake-session":
            return web.Response(status=403, text="Forbidden")
        match endpoint:
            case "auth/logout":
                return web.Response(text="")
            case "app/version":
                return web.Response(text="v5.0.0")
            case "app/webapiVersion":
                return web.Response(text="2.11.0")
            case "torrents/info":
                hashes = request.query.get("hashes")
                listing = [h for h in self.torrents if hashes is None or h in hashes.split("|")]
                return web.json_response([{"hash": h, "name": h, "state": "stoppedDL"} for h in listing])  # fmt: skip
            case "torrents/add":
                await self._add(request)
                return web.Response(text="Ok.")
            case "torrents/stop" | "torrents/start":
                return web.Response(text="")
        return web.Response(status=404)  # torrents/pause and /resume are gone in 5.0

    async def _add(self, request: web.Request) -> None:
        form = dict(await request.post())
        self.forms.append(form)
        if "urls" in form:
            self.torrents.append(parse_magnet(str(form["urls"])).client_hash)

    async def __aenter__(self) -> FakeQbt5:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{LOOPBACK}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        self._released.set()  # what hangs answers now, to nobody
        await self._runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeQbt5]:
    async with FakeQbt5() as fake:
        yield fake


@pytest.fixture
async def fake_client(fake: FakeQbt5, slept: Sleeps) -> AsyncIterator[QbittorrentClient]:
    client = QbittorrentClient(config(fake.url), sleep=slept)
    yield client
    await client.close()


MAGNET = "magnet:?xt=urn:btih:" + "ab" * 20


async def test_qbittorrent_5_is_stopped_and_started(fake: FakeQbt5, fake_client: QbittorrentClient) -> None:  # fmt: skip
    await fake_client.add(NewTorrent(magnet=MAGNET, paused=True))
    assert fake.forms[0]["stopped"] == "true" and "paused" not in fake.forms[0]
    await fake_client.pause(["ab" * 20])
    await fake_client.resume(["ab" * 20])
    assert [r for r in fake.requests if r in ("torrents/stop", "torrents/start")] == [
        "torrents/stop", "torrents/start"
    ]  # fmt: skip
    assert await fake_client.version() == "5.0.0"


async def test_5xx_answers_are_retried_with_backoff(fake: FakeQbt5, fake_client: QbittorrentClient, slept: Sleeps) -> None:  # fmt: skip
    fake.fail["torrents/info"] = [503, 502]
    assert await fake_client.torrents() == []
    # aioqbt's own retries (three attempts, 5 s apart) are off: one policy, ours.
    assert fake.requests.count("torrents/info") == 3 and slept == [1, 2]
    fake.fail["torrents/info"] = [500] * 4
    with pytest.raises(ClientError) as err:
        await fake_client.torrents()
    assert err.value.kind is Kind.UNREACHABLE and slept == [1, 2, 1, 2, 4]
    assert "unreachable: torrent list: HTTP 500" in str(err.value)


async def test_an_add_whose_answer_was_lost_is_not_sent_twice(fake: FakeQbt5, fake_client: QbittorrentClient, slept: Sleeps) -> None:  # fmt: skip
    fake.fail["torrents/add"] = [503]
    await fake_client.add(NewTorrent(magnet=MAGNET))
    assert len(fake.forms) == 1 and fake.torrents == ["ab" * 20] and slept == [1]


async def test_an_add_without_a_hash_is_sent_once(fake: FakeQbt5, fake_client: QbittorrentClient, slept: Sleeps) -> None:  # fmt: skip
    fake.fail["torrents/add"] = [502]
    with pytest.raises(ClientError) as err:
        await fake_client.add(NewTorrent(torrent_file=b"not a torrent"))
    assert err.value.kind is Kind.UNREACHABLE and slept == []
    assert fake.requests.count("torrents/add") == 1


async def test_an_expired_session_is_renewed(fake: FakeQbt5, fake_client: QbittorrentClient) -> None:  # fmt: skip
    assert await fake_client.torrents() == []
    fake.fail["torrents/info"] = [403]  # the session expired
    assert await fake_client.torrents() == []
    assert fake.requests.count("auth/login") == 2
    fake.fail["torrents/add"] = [403]  # torrents/add reads its own answer: the same
    await fake_client.add(NewTorrent(magnet=MAGNET))
    assert fake.requests.count("auth/login") == 3 and len(fake.forms) == 1


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (503, Kind.UNREACHABLE, "unreachable: login: HTTP 503"),
        (403, Kind.AUTH, "qBittorrent login refused: HTTP 403 (banned after failed logins?)"),
        (401, Kind.AUTH, "qBittorrent login failed (check username/password)"),
        (404, Kind.REFUSED, "a qBittorrent WebUI?"),
    ],
)
async def test_login_failures(
    fake: FakeQbt5, fake_client: QbittorrentClient, status: int, kind: ClientErrorKind, message: str
) -> None:
    fake.fail["auth/login"] = [status] * 4
    with pytest.raises(ClientError, match=re.escape(message)) as err:
        await fake_client.version()
    assert err.value.kind is kind


async def test_a_refusal_and_a_timeout(
    fake: FakeQbt5, fake_client: QbittorrentClient, slept: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.fail["torrents/stop"] = [400]
    fake.torrents.append("cd" * 20)
    with pytest.raises(ClientError) as err:
        await fake_client.pause(["cd" * 20])
    assert err.value.kind is Kind.REFUSED and slept == []
    assert str(err.value) == "qBittorrent refused pause: HTTP 400: Bad Request"
    monkeypatch.setattr(qbittorrent, "REQUEST_TIMEOUT", 0.2)
    slow = QbittorrentClient(config(fake.url), sleep=slept)
    fake.hang.add("torrents/info")
    try:
        with pytest.raises(ClientError) as err:
            await slow.torrents()
    finally:
        await slow.close()
    assert err.value.kind is Kind.UNREACHABLE and slept == [1, 2, 4]
    assert "unreachable: TimeoutError" in str(err.value)
