"""The dispatcher's management endpoints on aiohttp's test server (127.0.0.1): the admin
key, the errors as {code, message} with their statuses, and a dry run that answers the
decision and records nothing, on a bridge without a client and then on the running
bridge with a real qBittorrent."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config

from tests.bridge.test_api_metrics import served
from tests.bridge.test_e2e import running_bridge
from tests.bridge.test_nodes import command
from tests.helpers.configs import bridge_config
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer
from tests.helpers.torrents import random_file, torrent_of

pytestmark = pytest.mark.timeout(180)
KEY = "s3cret-admin-key"
MAGNET = "magnet:?xt=urn:btih:" + "1" * 40 + "&dn=Some.Film.2024"
PREVIEW = "/q4d/dispatch/preview"


@pytest.fixture
def idle_bridge(tmp_path: Path) -> Iterator[Bridge]:
    """A bridge that is built, not run: its seedbox has no torrent client."""
    key = tmp_path / "key"
    key.write_text("k")
    bridge = Bridge(
        parse_config(bridge_config(tmp_path / "data", tmp_path / "lib", key=key, known_hosts=key))
    )
    yield bridge
    bridge.store.close()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": ""}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {KEY}"}, 401),
        ({"Authorization": KEY}, 401),
        ({"X-API-Key": KEY + "x"}, 401),
        ({"X-API-Key": KEY}, 200),
        ({"Authorization": f"Bearer {KEY}"}, 200),
        ({"Authorization": f"bearer {KEY}"}, 200),
    ],
)
async def test_the_admin_key(idle_bridge: Bridge, headers: dict[str, str], status: int) -> None:
    async with served(idle_bridge, admin_key=KEY) as client:
        for path in ("/q4d/dispatch/decisions", "/q4d/dispatch/requests", "/q4d/dispatch/clients"):
            response = await client.get(path, headers=headers)
            assert response.status == status, path
            if status == 401:
                assert await response.json() == {
                    "code": "unauthorized",
                    "message": "a valid admin key is needed (X-API-Key or Authorization: Bearer)",
                }
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
        refused = await client.post(PREVIEW, json={"magnet": MAGNET}, headers=headers)
        assert refused.status == (401 if status == 401 else 503)  # 503: no client to take it
        # the probes and the metrics are not the admin's
        assert (await client.get("/metrics")).status == 200


@pytest.mark.parametrize("admin_key", [None, ""])
async def test_open_without_an_admin_key(idle_bridge: Bridge, admin_key: str | None) -> None:
    async with served(idle_bridge, admin_key=admin_key) as client:
        response = await client.get("/q4d/dispatch/clients")
        assert response.status == 200
        (sb1,) = (await response.json())["clients"]
        assert (sb1["seedbox"], sb1["type"], sb1["reason_code"]) == ("sb1", None, "no_client")
        assert (await client.get("/q4d/dispatch/decisions")).status == 200


@pytest.mark.parametrize(
    ("send", "status", "code", "message"),
    [
        ({"data": b"{not json"}, 400, "malformed", "not JSON"),
        ({"data": b"\xff\xfe"}, 400, "malformed", "not UTF-8"),
        ({"json": ["magnet"]}, 400, "malformed", "not a JSON object"),
        ({"data": b"[" * 40 + b"]" * 40}, 413, "too_large", "nested deeper"),
        ({"json": {}}, 400, "invalid_args", "give one of magnet, url or torrent"),
        ({"json": {"magnet": MAGNET, "paused": True}}, 400, "invalid_args", "extra keys not allowed"),
        ({"json": {"magnet": MAGNET, "size": "big"}}, 400, "invalid_args", "expected int"),
        ({"json": {"magnet": "magnet:?dn=x"}}, 422, "invalid_torrent", "magnet link has no"),
        ({"json": {"torrent": "bm90IGEgdG9ycmVudA=="}}, 422, "invalid_torrent", "not a .torrent"),
        ({"json": {"magnet": MAGNET, "category": "nope"}}, 422, "unknown_category", "unknown category 'nope'"),
        ({"json": {"magnet": MAGNET, "seedbox": "sb9"}}, 404, "unknown_seedbox", "'sb9' is not a seedbox"),
        ({"json": {"magnet": MAGNET, "category": "movies"}}, 503, "no_eligible_client", "no client can take it"),
    ],
)  # fmt: skip
async def test_preview_refusals(
    idle_bridge: Bridge, send: dict[str, object], status: int, code: str, message: str
) -> None:
    async with served(idle_bridge) as client:
        response = await client.post(PREVIEW, **send)
        body = await response.json()
        assert (response.status, body["code"]) == (status, code), body
        assert message in body["message"] and set(body) == {"code", "message"}
        assert idle_bridge.records.decisions(10) == []  # a dry run records nothing


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("/q4d/dispatch/decisions?limit=many", "invalid_args"),
        ("/q4d/dispatch/decisions?limit=0", "invalid_args"),
        ("/q4d/dispatch/requests?limit=10001", "invalid_args"),
        ("/q4d/dispatch/requests?state=lost", "invalid_args"),
    ],
)
async def test_bad_queries(idle_bridge: Bridge, query: str, code: str) -> None:
    async with served(idle_bridge) as client:
        response = await client.get(query)
        assert response.status == 400 and (await response.json())["code"] == code


async def test_management_of_the_running_bridge(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    payload = random_file(tmp_path / "made" / "Managed.Film.2024.mkv", 300_000, seed=5)
    torrent = base64.b64encode(torrent_of(payload)).decode()
    with QBittorrent(tmp_path / "qbt") as qbt:
        client_config = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                         "password": qbt.password, "min_free": 0}  # fmt: skip
        async with (
            running_bridge(tmp_path, mosquitto, sshd, seedbox={"client": client_config}) as env,
            served(env.bridge, admin_key=KEY) as client,
        ):
            auth = {"Authorization": f"Bearer {KEY}"}

            async def get(path: str) -> Any:
                response = await client.get(path, headers=auth)
                assert response.status == 200
                return await response.json()

            (listed,) = (await get("/q4d/dispatch/clients"))["clients"]  # polled now
            assert (listed["seedbox"], listed["type"], listed["reachable"]) == (
                "sb1",
                "qbittorrent",
                True,
            )
            counters_before = env.bridge.store.counters()

            response = await client.post(
                PREVIEW, json={"torrent": torrent, "category": "movies"}, headers=auth
            )
            assert response.status == 200
            decision = (await response.json())["decision"]
            assert (decision["dry_run"], decision["outcome"], decision["chosen"]) == (
                True,
                "dry_run",
                "sb1",
            )
            assert (decision["source"], decision["name"], decision["category"]) == (
                "api",
                "Managed.Film.2024.mkv",
                "movies",
            )
            (scored,) = decision["clients"]
            assert (scored["type"], scored["reachable"], scored["eligible"]) == (
                "qbittorrent",
                True,
                True,
            )
            # recorded nothing, added nothing, counted nothing
            assert await get("/q4d/dispatch/decisions") == {"decisions": []}
            assert await get("/q4d/dispatch/requests") == {"requests": []}
            assert env.bridge.store.counters() == counters_before
            added = await command(env, "add", torrent=torrent, category="movies", paused=True)
            assert added["ok"], added
            request_id = added["result"]["request"]["id"]
            (kept,) = (await get("/q4d/dispatch/decisions?limit=5"))["decisions"]
            assert (kept["outcome"], kept["request_id"], kept["dry_run"]) == (
                "added",
                request_id,
                False,
            )
            (request,) = (await get("/q4d/dispatch/requests?state=added&state=downloading"))[
                "requests"
            ]
            assert (request["id"], request["seedbox"]) == (request_id, "sb1")
            assert await get("/q4d/dispatch/requests?state=failed") == {"requests": []}

            again = await client.post(PREVIEW, json={"torrent": torrent}, headers=auth)
            assert again.status == 409
            refusal = await again.json()
            assert refusal["code"] == "duplicate" and "Managed.Film.2024.mkv" in refusal["message"]
            assert len((await get("/q4d/dispatch/decisions"))["decisions"]) == 1
            assert (await client.post(PREVIEW, json={"torrent": torrent})).status == 401
