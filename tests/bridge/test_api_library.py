"""A second, independent client: qbittorrent-api, the reference Python library for
qBittorrent's WebUI API, drives the bridge's API unchanged (login, versions,
preferences, add by magnet and by .torrent, info, categories, tags, delete, logout)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import qbittorrentapi
from q4d_bridge.clients.metainfo import parse_torrent_file

from tests.bridge.test_api_arr import PASSWORD, USER, arr_bridge, magnet_of
from tests.helpers.services import Mosquitto, SshServer
from tests.helpers.torrents import random_file, torrent_of

pytestmark = pytest.mark.timeout(120)


def drive(port: int, magnets: list[str], torrent: bytes) -> dict[str, Any]:
    """What a script written for qBittorrent does, step by step (synchronous, as the
    library is)."""
    client = qbittorrentapi.Client(
        host="127.0.0.1", port=port, username=USER, password=PASSWORD,
        REQUESTS_ARGS={"timeout": 30}, RAISE_NOTIMPLEMENTEDERROR_FOR_UNIMPLEMENTED_API_ENDPOINTS=True,
    )  # fmt: skip
    seen: dict[str, Any] = {}
    client.auth_log_in()
    seen["logged_in"] = client.is_logged_in
    seen["versions"] = (client.app.version, client.app.web_api_version)
    seen["save_path"] = client.app.preferences["save_path"]
    client.torrents_create_category(name="tv-lib")
    seen["categories"] = dict(client.torrents_categories())
    # several magnets in one call: `urls`, one per line
    seen["add_magnet"] = client.torrents_add(urls=magnets, category="tv-lib", tags="a,b")
    seen["add_file"] = client.torrents_add(torrent_files={"t.torrent": torrent}, is_stopped=True)
    seen["all"] = {t.hash: dict(t) for t in client.torrents_info()}
    seen["tv_lib"] = [t.hash for t in client.torrents_info(category="tv-lib")]
    seen["uncategorised"] = [t.hash for t in client.torrents_info(category="")]
    first = next(iter(seen["all"]))
    seen["one"] = [t.hash for t in client.torrents_info(torrent_hashes=first.upper())]
    seen["properties"] = dict(client.torrents_properties(torrent_hash=first))
    client.torrents_set_share_limits(
        ratio_limit=2, seeding_time_limit=60, inactive_seeding_time_limit=-2, torrent_hashes=first
    )
    seen["stopped"] = [t.hash for t in client.torrents_info(status_filter="stopped")]
    client.torrents_set_category(category="tv-lib", torrent_hashes=list(seen["all"]))
    seen["tv_lib_after"] = sorted(t.hash for t in client.torrents_info(category="tv-lib"))
    client.torrents_delete(delete_files=False, torrent_hashes=list(seen["all"]))
    seen["after_delete"] = list(client.torrents_info())
    client.auth_log_out()
    seen["after_logout"] = client.is_logged_in  # its session is over
    return seen


async def test_qbittorrent_api_library(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    remote = tmp_path / "seedbox"
    magnet, magnet_id = magnet_of(torrent_of(random_file(remote / "One.mkv", 50_000, 1)))
    other, other_id = magnet_of(torrent_of(random_file(remote / "Three.mkv", 50_000, 3)))
    torrent = torrent_of(random_file(tmp_path / "src" / "Two.mkv", 50_000, 2))
    file_id = parse_torrent_file(torrent).v1
    async with arr_bridge(tmp_path, mosquitto, sshd) as (env, _):
        assert env.bridge.api is not None
        seen = await asyncio.to_thread(drive, env.bridge.api.port, [magnet, other], torrent)
        # removed from the seedbox's client too (on_delete: remove)
        client = env.bridge.clients["sb1"]
        for _ in range(100):
            if not await client.torrents():  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the seedbox's client kept them")

    assert seen["logged_in"] is True
    assert seen["versions"] == ("v5.0.2", "2.11.2")
    assert seen["save_path"] == str(tmp_path / "library" / "other")
    assert {"tv", "movies", "tv-lib"} <= seen["categories"].keys()
    assert seen["add_magnet"] == seen["add_file"] == "Ok."
    assert seen["all"].keys() == {magnet_id.lower(), other_id.lower(), file_id}
    assert seen["one"] == [next(iter(seen["all"]))]
    added = seen["all"][magnet_id.lower()]
    assert (added["category"], added["tags"]) == ("tv-lib", "a, b")
    assert seen["all"][file_id]["state"] in ("pausedDL", "queuedDL")
    assert sorted(seen["tv_lib"]) == sorted([magnet_id.lower(), other_id.lower()])
    assert seen["uncategorised"] == [file_id]
    assert seen["properties"]["save_path"].startswith(str(tmp_path / "library"))
    assert file_id in seen["stopped"]
    assert seen["tv_lib_after"] == sorted(seen["all"])
    assert seen["after_delete"] == [] and seen["after_logout"] is False
