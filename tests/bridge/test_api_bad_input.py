"""The qBittorrent API refusing what it should: calls without credentials, wrong
passwords (then the address refused for a while), oversized and malformed bodies,
unknown hashes, path-like category names; and listening only where configured."""

from __future__ import annotations

import asyncio
import base64
import socket
from pathlib import Path

import aiohttp
import pytest
from q4d_bridge.api.auth import MAX_FAILURES

from tests.bridge.test_api_arr import PASSWORD, USER, arr_bridge
from tests.bridge.test_e2e import Env
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)
ENDPOINTS = [
    ("GET", "app/webapiVersion"), ("GET", "app/version"), ("GET", "app/preferences"),
    ("GET", "torrents/info"), ("GET", "torrents/properties?hash=" + "a" * 40),
    ("GET", "torrents/files?hash=" + "a" * 40), ("GET", "torrents/categories"),
    ("POST", "torrents/add"), ("POST", "torrents/delete"), ("POST", "torrents/setCategory"),
    ("POST", "torrents/createCategory"), ("POST", "torrents/topPrio"),
    ("POST", "torrents/setForceStart"), ("POST", "torrents/addTags"),
    ("POST", "torrents/setShareLimits"), ("GET", "no/such/endpoint"),
]  # fmt: skip


def base(env: Env) -> str:
    assert env.bridge.api is not None
    return f"http://127.0.0.1:{env.bridge.api.port}/api/v2/"


async def raw_status(port: int, header: bytes) -> int:
    """The status of a GET of app/version with this header line, sent byte for byte
    (an HTTP client library would refuse or re-encode it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /api/v2/app/version HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header
                     + b"\r\nConnection: close\r\n\r\n")  # fmt: skip
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def logged_in(env: Env) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(
        base(env) + "auth/login", data={"username": USER, "password": PASSWORD}
    ) as response:
        assert await response.text() == "Ok."
    return session


async def test_credentials(tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer) -> None:
    api = {"api_key": "k" * 32}
    async with arr_bridge(tmp_path, mosquitto, sshd, api=api) as (env, _), aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar()
    ) as http:  # fmt: skip
        url = base(env)
        wrong_basic = aiohttp.BasicAuth(USER, "wrong")
        for method, path in ENDPOINTS:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "SID=forged"}):
                async with http.request(method, url + path, headers=headers) as response:
                    assert response.status == 403, (method, path, headers)
            async with http.request(method, url + path, auth=wrong_basic) as response:
                assert response.status == 403, (method, path)
        async with http.get(url + "auth/login") as response:
            assert response.status == 405  # a login is a POST
        # credentials that are not even text: refused like any wrong ones, not a 500
        assert env.bridge.api is not None
        for header in (b"Authorization: Bearer \xff\xfe", b"Authorization: Basic \xff\xfe",
                       b"Authorization: Basic " + base64.b64encode(b"arr:\xff"),
                       b"Cookie: SID=\xff"):  # fmt: skip
            assert await raw_status(env.bridge.api.port, header) == 403, header
        # Guessing through Basic or Bearer on any call is limited as at the login: the
        # address is refused for a while, with the right password or key too.
        auth = env.bridge.api.auth
        right = aiohttp.BasicAuth(USER, PASSWORD)
        bearer = {"Authorization": "Bearer " + "k" * 32}
        async with http.get(url + "app/webapiVersion", auth=right) as r:
            assert r.status == 403
        async with http.get(url + "torrents/info", headers=bearer) as r:
            assert r.status == 403
        auth.succeeded("127.0.0.1")  # the ban lifted (BAN seconds in service)
        for wrong in ({"Authorization": wrong_basic.encode()}, {"Authorization": "Bearer wrong"}):
            for _ in range(MAX_FAILURES - 1):
                async with http.get(url + "app/version", headers=wrong) as r:
                    assert r.status == 403
            # below the limit: the right credentials get in, and the count starts again
            async with http.get(url + "app/webapiVersion", auth=right) as r:
                assert (r.status, await r.text()) == (200, "2.11.2")
            async with http.get(url + "torrents/info", headers=bearer) as r:
                assert (r.status, await r.json()) == (200, [])

        # wrong passwords at the login: Fails., then the address is refused whatever it
        # presents; a session it opened before keeps working
        session = await logged_in(env)
        async with session:
            for _ in range(MAX_FAILURES):
                async with http.post(
                    url + "auth/login", data={"username": USER, "password": "nope"}
                ) as r:
                    assert (r.status, await r.text(), r.cookies.get("SID")) == (
                        200, "Fails.", None
                    )  # fmt: skip
            async with http.post(
                url + "auth/login", data={"username": USER, "password": PASSWORD}
            ) as r:
                assert r.status == 403 and "banned" in await r.text()
            async with http.get(url + "torrents/info", headers=bearer) as response:
                assert response.status == 403
            async with session.get(url + "app/version") as response:
                assert response.status == 200

            # a logged-out session is over
            async with session.post(url + "auth/logout") as response:
                assert response.status == 200
            async with session.get(url + "app/version") as response:
                assert response.status == 403


async def test_bodies_hashes_and_categories(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with arr_bridge(tmp_path, mosquitto, sshd) as (env, _):
        url = base(env)
        session = await logged_in(env)
        async with session:
            # too big: said up front, or found while reading
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            big = b"urls=" + b"x" * (17 * 2**20)
            async with session.post(url + "torrents/add", data=big, headers=headers) as r:
                assert r.status == 413
            form = aiohttp.FormData()
            form.add_field("torrents", b"d" * (9 * 2**20), filename="big.torrent")
            async with session.post(url + "torrents/add", data=form) as r:
                assert r.status == 413

            # malformed multipart, truncated multipart, not a .torrent
            for body, content_type in (
                (b"garbage", "multipart/form-data; boundary=xyz"),
                (b"--xyz\r\nContent-Disposition: form-data\r\n\r\nv\r\n--xyz--\r\n",
                 "multipart/form-data; boundary=xyz"),
                (b"--xyz\r\nContent-Disposition: form-data; name=\"urls\"\r\n\r\nmagn",
                 "multipart/form-data; boundary=xyz"),
                (b"\xff\xfe=\xff", "application/x-www-form-urlencoded"),
                (b"{}", "application/json"),
            ):  # fmt: skip
                async with session.post(
                    url + "torrents/add", data=body, headers={"Content-Type": content_type}
                ) as r:
                    assert r.status in (400, 415), (body, r.status, await r.text())
            form = aiohttp.FormData()
            form.add_field("torrents", b"<html>login</html>", filename="x.torrent")
            async with session.post(url + "torrents/add", data=form) as r:
                assert r.status == 415
            for bad in ("magnet:?xt=urn:btih:nothex", "magnet:?dn=nothing"):
                async with session.post(url + "torrents/add", data={"urls": bad}) as r:
                    assert (r.status, await r.text()) == (200, "Fails.")
            async with session.post(url + "torrents/add", data={"category": "tv"}) as r:
                assert r.status == 400  # nothing to add
            # a refused add is logged by the magnet's hash and name or the URL's host:
            # never the trackers, the path or the query, where a passkey sits
            caplog.clear()
            secret = "0badc0ffee0badc0ffee0badc0ffee"
            refused = [
                f"magnet:?xt=urn:btih:nothex&dn=Film.2024&tr=http%3A%2F%2Ft.example%2F{secret}",
                f"http://127.0.0.1:9/rss/download/12/{secret}/Film.torrent?passkey={secret}",
            ]
            async with session.post(url + "torrents/add", data={"urls": "\n".join(refused)}) as r:
                assert (r.status, await r.text()) == (200, "Fails.")
            logged = [r.getMessage() for r in caplog.records if "torrents/add" in r.getMessage()]
            assert len(logged) == 2 and secret not in caplog.text, logged
            assert "magnet urn:btih:nothex 'Film.2024'" in logged[0]
            assert "http://127.0.0.1/… (path and query not logged)" in logged[1]

            # unknown hashes: 404 for one torrent, skipped by the calls taking several
            unknown = "f" * 40
            for path in ("properties", "files"):
                async with session.get(url + f"torrents/{path}?hash={unknown}") as r:
                    assert r.status == 404
            async with session.get(url + "torrents/properties") as r:
                assert r.status == 400  # no hash at all
            for path, data in (
                ("delete", {"hashes": unknown, "deleteFiles": "true"}),
                ("setCategory", {"hashes": unknown, "category": "tv"}),
                ("addTags", {"hashes": unknown, "tags": "x"}),
                ("topPrio", {"hashes": unknown}),
            ):
                async with session.post(url + f"torrents/{path}", data=data) as r:
                    assert r.status == 200, path
            async with session.get(url + f"torrents/info?hashes={unknown}") as r:
                assert await r.json() == []

            # path-like categories are refused, nothing is created
            for name in ("../x", "a/b", "..", ".", "x\\y", " padded", "tab\there", ""):
                async with session.post(
                    url + "torrents/createCategory", data={"category": name}
                ) as r:
                    assert r.status == 409, name
                if name:
                    async with session.post(
                        url + "torrents/setCategory", data={"hashes": "all", "category": name}
                    ) as r:
                        assert r.status == 409, name
            async with session.post(
                url + "torrents/add",
                data={"urls": "magnet:?xt=urn:btih:" + "1" * 40, "category": "../x"},
            ) as r:
                assert await r.text() == "Fails."
            async with session.post(
                url + "torrents/setCategory", data={"hashes": "all", "category": "nope"}
            ) as r:
                assert r.status == 409  # not a category
            async with session.get(url + "torrents/categories") as r:
                assert (await r.json()).keys() == {"tv", "movies"}
            assert env.bridge.dispatcher.records.requests() == []
            async with session.post(url + "torrents/add", data=b"", headers=headers) as r:
                assert r.status == 400
            # a form without a Content-Type is read as one (curl --data-binary, say)
            async with session.post(
                url + "torrents/setShareLimits",
                data=b"hashes=all",
                skip_auto_headers=["Content-Type"],
            ) as r:
                assert r.status == 200
            async with session.get(url + "torrents/info?limit=x") as r:
                assert r.status == 400


async def test_listens_only_where_configured(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with arr_bridge(tmp_path, mosquitto, sshd, rules=[]) as (env, _):
        assert env.bridge.api is not None
        port = env.bridge.api.port
        assert port != 0
        # no rule names a category: an empty object, as qBittorrent answers
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                base(env) + "torrents/categories", auth=aiohttp.BasicAuth(USER, PASSWORD)
            ) as r,
        ):
            assert await r.text() == "{}"
        # 127.0.0.2 is this machine too, and nothing listens there
        with socket.socket() as probe:
            probe.settimeout(2)
            assert probe.connect_ex(("127.0.0.2", port)) != 0
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
    assert env.bridge.api.listening.is_set() is False  # stopped with the bridge


async def test_off_by_default_opens_nothing(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    from tests.bridge.test_e2e import running_bridge

    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        assert env.bridge.api is None
        assert "api" not in {t.get_name() for t in asyncio.all_tasks()}


async def test_metrics_health_and_management_are_served_beside_it(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """The bridge mounts /metrics, /health, /ready and the management routes on the
    same server; the management routes want the admin key, the *arr login is no key."""
    from prometheus_client.parser import text_string_to_metric_families

    api = {"admin_key": "a" * 32}
    async with arr_bridge(tmp_path, mosquitto, sshd, api=api) as (env, _):
        assert env.bridge.api is not None
        root = f"http://127.0.0.1:{env.bridge.api.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(root + "/health") as r:
                assert r.status == 200
            async with http.get(root + "/ready") as r:
                assert r.status == 200, await r.text()
            async with http.get(
                root + "/api/v2/app/version", auth=aiohttp.BasicAuth(USER, PASSWORD)
            ) as r:
                assert r.status == 200  # counted by the metrics middleware below
            async with http.get(root + "/metrics") as r:
                families = {f.name: f for f in text_string_to_metric_families(await r.text())}
            assert families["q4d_mqtt_connected"].samples[0].value == 1
            assert any(
                s.labels.get("status") == "200" for s in families["q4d_api_requests"].samples
            ), families["q4d_api_requests"].samples
            clients = root + "/q4d/dispatch/clients"
            async with http.get(clients, auth=aiohttp.BasicAuth(USER, PASSWORD)) as r:
                assert r.status == 401
            async with http.get(clients, headers={"X-API-Key": "a" * 32}) as r:
                assert r.status == 200 and "clients" in await r.json()
