"""The torrent list after a live configuration change: a torrent not yet home shows the
folder it will land in, worked out from the routing as it is now, the same folder
`torrents/categories` shows for its category. The bridge's own API app on aiohttp's
test server (127.0.0.1), its request recorded as the dispatcher records one, the new
routing adopted by Bridge.apply."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.dispatch.requests import Request, RequestState

USER, PASSWORD = "arr", "arr-secret-pw"
V1 = "c" * 40


@pytest.fixture
async def bridge(raw: dict[str, Any]) -> AsyncIterator[Bridge]:
    """A bridge built, not run, with its qBittorrent API."""
    raw["api"] = {"enabled": True, "port": 0, "username": USER, "password": PASSWORD}
    built = Bridge(parse_config(raw))
    yield built
    built.store.close()


async def listed(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """torrents/info's one torrent and torrents/categories, as Sonarr reads them."""
    auth = aiohttp.BasicAuth(USER, PASSWORD)
    info = await client.get("/api/v2/torrents/info", params={"category": "tv"}, auth=auth)
    categories = await client.get("/api/v2/torrents/categories", auth=auth)
    assert info.status == categories.status == 200
    (torrent,) = await info.json()
    return torrent, await categories.json()


async def test_a_torrent_not_home_yet_follows_the_new_routing(
    bridge: Bridge, raw: dict[str, Any], tmp_path: Path
) -> None:
    assert bridge.api is not None
    request = Request(
        id="r1", created_at=1000.0, updated_at=1000.0, source="api", category="tv",
        name="Show.S01E01.1080p", info_hash=V1, v1=V1, v2=None, seedbox="sb1", size=1000,
        state=RequestState.DOWNLOADING, decision_id="d1", progress=40.0,
    )  # fmt: skip
    bridge.records.record({"id": "d1", "at": 1000.0}, request, keep=10)
    async with TestClient(TestServer(bridge.api.app(), host="127.0.0.1")) as client:
        torrent, categories = await listed(client)
        before = str(tmp_path / "lib" / "tv")
        assert torrent["save_path"] == categories["tv"]["savePath"] == before
        assert torrent["content_path"] == f"{before}/Show.S01E01.1080p"

        # the tv destination moves (a new, empty folder: nothing queued is stranded)
        moved = tmp_path / "series"
        new = copy.deepcopy(raw)
        new["destinations"]["tv"] = str(moved)
        applied = await bridge.apply(parse_config(new), confirm=False)
        assert applied["routing"] is True

        torrent, categories = await listed(client)
        assert torrent["save_path"] == categories["tv"]["savePath"] == str(moved)
        assert torrent["content_path"] == str(moved / "Show.S01E01.1080p")
