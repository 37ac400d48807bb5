"""Sonarr, Radarr and Prowlarr against the real bridge's HTTP API, their qBittorrent
client replayed call for call (tests/helpers/arr.py), with a real qBittorrent as the
seedbox's client, Mosquitto and sshd: the Test button with category creation, magnet
and .torrent grabs (both encodings), the polling trio, completed-download handling
reading content_path, the post-import category and the removal, with cookie sessions,
Basic always sent, an API key, and a session that expires."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.clients.metainfo import parse_torrent_file
from q4d_bridge.dispatch.requests import RequestState
from q4d_bridge.models import ItemState
from q4d_bridge.persistence.api_removals import ApiRemovals

from tests.bridge.test_e2e import Env, digest_tree, running_bridge
from tests.helpers.arr import (
    ArrClient,
    DownloadClientError,
    DownloadItem,
    Settings,
    grab_magnet,
    grab_torrent_file,
    imported,
    poll,
    press_test,
)
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer
from tests.helpers.torrents import random_file, torrent_of

pytestmark = pytest.mark.timeout(240)
USER, PASSWORD = "arr", "arr-secret-pw"
API_KEY = "k" * 32


@contextlib.asynccontextmanager
async def arr_bridge(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, api: dict[str, Any] | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Env, QBittorrent]]:  # fmt: skip
    """The bridge with its API on 127.0.0.1 (a free port) and one seedbox whose
    qBittorrent saves into the seedbox folder the transfers read."""
    remote = tmp_path / "seedbox"
    with QBittorrent(tmp_path / "qbt") as qbt:
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": qbt.password, "poll_interval": 1, "min_free": 0,
                  "save_path": str(remote)}  # fmt: skip
        settings = {"enabled": True, "port": 0, "username": USER, "password": PASSWORD,
                    **(api or {})}  # fmt: skip
        async with running_bridge(
            tmp_path, mosquitto, sshd, engine="sftp",
            seedbox={"client": client, "reconcile": {"interval": 0}},
            dispatch={"watch_interval": 1}, api=settings, **config,
        ) as env:  # fmt: skip
            assert env.bridge.api is not None
            await asyncio.wait_for(env.bridge.api.listening.wait(), 10)
            yield env, qbt


def arr(app: str, env: Env, **settings: Any) -> ArrClient:
    assert env.bridge.api is not None
    auth = {"username": USER, "password": PASSWORD} if "api_key" not in settings else {}
    return ArrClient(app, Settings("127.0.0.1", env.bridge.api.port, **{**auth, **settings}))  # type: ignore[arg-type]


def magnet_of(torrent: bytes, trackers: int = 1) -> tuple[str, str]:
    """A magnet link for the .torrent, and the hash the app computes (upper case)."""
    meta = parse_torrent_file(torrent)
    assert meta.v1 is not None and meta.name is not None
    trs = "".join(f"&tr=http%3A%2F%2F127.0.0.1%3A9%2Fannounce%3Fn%3D{n}" for n in range(trackers))
    return f"magnet:?xt=urn:btih:{meta.v1}&dn={meta.name}{trs}", meta.v1.upper()


async def wait_until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def follow_home(
    app: ArrClient, env: Env, download_id: str, rel: str, category: str, **event: Any
) -> tuple[DownloadItem, list[DownloadItem]]:
    """The seedbox's hook reports the torrent complete; poll every 100 ms until the app
    sees it Completed. Returns that poll's item and every earlier one."""
    await env.complete(rel, download_id.lower(), category=category, **event)
    seen: list[DownloadItem] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        item = (await poll(app))[download_id]
        if item.status == "Completed":
            landed = [
                i for i in env.bridge.lifecycle.items.values() if i.hash == download_id.lower()
            ]
            assert [i.state for i in landed] == [ItemState.DONE]  # never before it landed
            return item, seen
        seen.append(item)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{download_id} never completed")


async def test_sonarr(tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer) -> None:
    remote = tmp_path / "seedbox"
    short = random_file(remote / "Show.S01E01.1080p.mkv", 300_000, 1)
    long = random_file(remote / "Show.S01E02.1080p.mkv", 300_000, 2)
    season = remote / "Show.S01E03.1080p"
    random_file(season / "Show.S01E03.1080p.mkv", 3 * 2**20, 3)
    random_file(season / "Show.S01E03.1080p.en.srt", 2_000, 4)
    file_torrent = torrent_of(season)
    # the bandwidth limit stretches the transfer of the third over a few seconds of polls
    async with arr_bridge(
        tmp_path, mosquitto, sshd, transfers={"bandwidth_limit": "1MiB"}
    ) as (env, _):  # fmt: skip
        sonarr = arr("sonarr", env, category="tv", imported_category="tv-imported",
                     priority_first=True)  # fmt: skip

        # Test: "tv" is a rule's category, "tv-imported" is created
        assert await press_test(sonarr) == []
        # the probe, without the cookie: its Basic credentials are good (200); without
        # them, 403 says "qBittorrent v2" all the same
        probe = sonarr.calls[0]
        assert (probe.path, probe.status, probe.cookie_sent) == (
            "/api/v2/app/webapiVersion", 200, False
        )  # fmt: skip
        assert probe.authorization is not None and probe.authorization.startswith("Basic ")
        older = arr("sonarr", env, category="tv", basic=False)
        assert await older.is_api_supported() and older.calls[0].status == 403
        labels = await sonarr.get_labels()
        assert labels.keys() == {"tv", "movies", "tv-imported"}
        assert labels["tv"]["savePath"] == str(env.library / "tv")
        assert labels["tv-imported"]["savePath"] == str(env.library / "other")
        assert sonarr.logins == 1

        # three grabs: a short magnet (urlencoded), a long one (multipart), a .torrent
        short_magnet, short_id = magnet_of(torrent_of(short))
        long_magnet, long_id = magnet_of(torrent_of(long), trackers=40)
        assert len(short_magnet) < 1024 < len(long_magnet)
        assert await grab_magnet(sonarr, short_magnet, short_id, ["sonarr-tag"])
        seed = {"ratioLimit": 1.5, "seedingTimeLimit": 4320}  # the indexer's, accepted
        assert await grab_magnet(sonarr, long_magnet, long_id, seed=seed)
        file_id = parse_torrent_file(file_torrent).v1.upper()  # type: ignore[union-attr]
        assert await grab_torrent_file(sonarr, "Show.S01E03.1080p.torrent", file_torrent, file_id)
        adds = [c for c in sonarr.calls if c.path.endswith("/torrents/add")]
        assert [c.status for c in adds] == [200, 200, 200]

        # the polling trio: all three, none of them complete
        items = await poll(sonarr)
        assert items.keys() == {short_id, long_id, file_id}
        assert {i.category for i in items.values()} == {"tv"}
        assert {i.status for i in items.values()} <= {"Queued", "Downloading"}
        torrents = {t["hash"]: t for t in await sonarr.get_torrents()}
        assert torrents[short_id.lower()]["tags"] == "sonarr-tag"
        assert torrents[short_id.lower()]["save_path"] == str(env.library / "tv")
        props = await sonarr.get_torrent_properties(short_id.lower())
        assert props["hash"] == short_id.lower() and props["save_path"] == str(env.library / "tv")
        # qBittorrent finishes the .torrent on the seedbox (its data is there): halfway
        await wait_until(
            lambda: _progress(sonarr, file_id, 0.5), "the seedbox to finish the .torrent"
        )
        assert (await poll(sonarr))[file_id].status != "Completed"

        # home: each completes only once landed and verified, with its home path
        for download_id, rel, source in (
            (short_id, short.name, short),
            (long_id, long.name, long),
            (file_id, season.name, season),
        ):
            done, before = await follow_home(sonarr, env, download_id, rel, "tv")
            assert all(i.status != "Completed" for i in before)
            home = env.library / "tv" / rel
            assert done.output_path == str(home) and done.can_move_files
            assert done.remaining_size == 0 and done.total_size > 0
            assert digest_tree(home) == digest_tree(source)
            if download_id == file_id:
                # the progress ran on from the seedbox's half into the transfer
                assert any(0.5 * 3e6 > i.remaining_size > 0 for i in before)
                files = await sonarr.get_torrent_files(download_id.lower())
                assert sorted(f["name"] for f in files) == [
                    f"{rel}/Show.S01E03.1080p.en.srt", f"{rel}/Show.S01E03.1080p.mkv"
                ]  # fmt: skip

            # import (by copy), the post-import category, then the removal
            library = tmp_path / "series" / rel
            library.parent.mkdir(exist_ok=True)
            (shutil.copytree if home.is_dir() else shutil.copy2)(home, library)
            await imported(sonarr, done)
            assert download_id not in await poll(sonarr)
            assert home.exists()  # the policy keeps the home copy

        assert not await sonarr.get_torrents()
        sonarr.settings.category = "tv-imported"
        assert not await sonarr.get_torrents()  # deleted: no longer listed anywhere
        deletes = [c for c in sonarr.calls if c.path.endswith("/torrents/delete")]
        assert [c.status for c in deletes] == [200, 200, 200]
        # removed from the seedbox with their data (deleteFiles=true)
        await wait_until(lambda: _gone(env), "the seedbox's client to drop them")
        assert not (remote / season.name).exists()
        assert sonarr.logins == 1  # one session all along


async def _progress(app: ArrClient, download_id: str, at_least: float) -> bool:
    torrents = {t["hash"].upper(): t for t in await app.get_torrents()}
    return torrents[download_id]["progress"] >= at_least


async def _gone(env: Env) -> bool:
    client = env.bridge.clients["sb1"]
    return not await client.torrents()  # type: ignore[attr-defined]


async def test_a_release_sonarr_deleted_can_be_grabbed_again(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """Imported, removed, then the episode file is lost and a search picks the same
    release: the add is no duplicate, and the torrent comes home again for it."""
    remote = tmp_path / "seedbox"
    episode = random_file(remote / "Show.S02E01.1080p.mkv", 300_000, 7)
    magnet, download_id = magnet_of(torrent_of(episode))
    async with arr_bridge(tmp_path, mosquitto, sshd) as (env, _):
        sonarr = arr("sonarr", env, category="tv", imported_category="tv-imported")
        assert await press_test(sonarr) == []
        assert await grab_magnet(sonarr, magnet, download_id)
        done, _ = await follow_home(sonarr, env, download_id, episode.name, "tv")
        home = Path(done.output_path)
        await imported(sonarr, done)
        await wait_until(lambda: _gone(env), "the seedbox's client to drop it")
        assert download_id not in await poll(sonarr)
        home.unlink()  # the import moved it into the series folder, and it was lost there

        first = env.bridge.records.requests()[0]
        assert await grab_magnet(sonarr, magnet, download_id)  # Ok., not a duplicate
        again = env.bridge.records.requests()[0]
        assert again.id != first.id and again.info_hash == first.info_hash
        assert (await poll(sonarr))[download_id].status != "Completed"  # not home yet
        # the seedbox's hook: a new completion of the torrent
        done, before = await follow_home(
            sonarr, env, download_id, episode.name, "tv", event_id="regrab-1"
        )
        assert all(i.status != "Completed" for i in before)
        assert done.output_path == str(home) and home.read_bytes() == episode.read_bytes()
        (item,) = [i for i in env.bridge.lifecycle.items.values() if i.hash == again.info_hash]
        assert item.request_id == again.id
        assert env.bridge.records.requests()[0].state is RequestState.LANDED


async def test_a_removal_the_seedbox_missed_is_tried_again(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """The seedbox's client is down when Sonarr deletes the torrent: the removal is kept
    and done once the client is back, data and all."""
    remote = tmp_path / "seedbox"
    episode = random_file(remote / "Show.S03E01.1080p.mkv", 300_000, 8)
    data = torrent_of(episode)
    download_id = parse_torrent_file(data).v1.upper()  # type: ignore[union-attr]
    retry = {"retry_initial": 0.2, "retry_max": "2s"}
    async with arr_bridge(tmp_path, mosquitto, sshd, transfers=retry) as (env, qbt):
        sonarr = arr("sonarr", env, category="tv")
        assert await grab_torrent_file(sonarr, "Show.S03E01.1080p.torrent", data, download_id)
        done, _ = await follow_home(sonarr, env, download_id, episode.name, "tv")
        qbt.kill()
        await imported(sonarr, done)  # 200 at once: the app does not wait for the seedbox
        assert download_id not in await poll(sonarr)
        pending = ApiRemovals(env.bridge.store)
        (left,) = await wait_until(lambda: _async(pending.pending()), "the failed removal recorded")
        assert (left.key, left.delete_data) == (download_id.lower(), True)
        assert left.attempts >= 1 and left.last_error and episode.exists()
        qbt.start()
        await wait_until(lambda: _async(not pending.pending()), "the removal done", 60)
        assert not episode.exists()  # deleteFiles=true: the seedbox's data went too
        assert await _gone(env)


async def _async(value: Any) -> Any:
    return value


async def test_radarr_keeps_seeding_and_deletes_the_home_copy(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    remote = tmp_path / "seedbox"
    film = random_file(remote / "Film.2024.2160p.mkv", 400_000, 5)
    data = torrent_of(film)
    download_id = parse_torrent_file(data).v1.upper()  # type: ignore[union-attr]
    policy = {"on_delete": "keep_seeding", "delete_home_copy": True}
    async with arr_bridge(tmp_path, mosquitto, sshd, api=policy) as (env, _):
        radarr = arr("radarr", env, category="radarr", imported_category="radarr-imported")
        assert await press_test(radarr) == []
        # Basic on every call, and the cookie store on every call once logged in, the
        # probe included
        assert all(c.authorization and c.authorization.startswith("Basic ") for c in radarr.calls)
        assert all(c.status == 200 for c in radarr.calls)
        probes = [c for c in radarr.calls if c.path.endswith("webapiVersion")]
        assert not probes[0].cookie_sent and all(c.cookie_sent for c in probes[1:])
        assert {"radarr", "radarr-imported"} <= (await radarr.get_labels()).keys()

        assert await grab_torrent_file(radarr, "Film.2024.2160p.torrent", data, download_id)
        assert (await poll(radarr))[download_id].category == "radarr"
        done, _ = await follow_home(radarr, env, download_id, film.name, "radarr")
        home = env.library / "other" / film.name  # a created category: the default destination
        assert done.output_path == str(home) and home.read_bytes() == film.read_bytes()

        await imported(radarr, done)
        assert not home.exists()  # deleteFiles=true and delete_home_copy
        assert film.exists()  # keep_seeding: on the seedbox, data and all
        torrents = await env.bridge.clients["sb1"].torrents()  # type: ignore[attr-defined]
        assert [t.hash for t in torrents] == [download_id.lower()]
        radarr.settings.category = "radarr-imported"
        assert not await radarr.get_torrents()
        assert radarr.logins == 1

        # lost from the library, the film is searched for and the same release picked:
        # the seedbox still seeds it, so it is listed again and its home copy fetched again
        radarr.settings.category = "radarr"
        assert await grab_torrent_file(radarr, "Film.2024.2160p.torrent", data, download_id)
        assert (await poll(radarr))[download_id].status != "Completed"
        again = await wait_until(lambda: _completed(radarr, download_id), "the film home again")
        assert again.output_path == str(home) and home.read_bytes() == film.read_bytes()
        torrents = await env.bridge.clients["sb1"].torrents()  # type: ignore[attr-defined]
        assert [t.hash for t in torrents] == [download_id.lower()]  # added once, seeding on


async def _completed(app: ArrClient, download_id: str) -> DownloadItem | None:
    item = (await poll(app)).get(download_id)
    return item if item is not None and item.status == "Completed" else None


async def test_sonarr_with_an_api_key_and_prowlarr(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    remote = tmp_path / "seedbox"
    payload = random_file(remote / "Album.2023.FLAC" / "01.flac", 100_000, 6)
    magnet, magnet_id = magnet_of(torrent_of(payload.parent))
    single = random_file(remote / "Single.2024.FLAC.flac", 100_000, 7)
    single_torrent = torrent_of(single)
    single_id = parse_torrent_file(single_torrent).v1.upper()  # type: ignore[union-attr]
    held, held_id = magnet_of(torrent_of(random_file(remote / "Held.S01E01.mkv", 50_000, 8)))
    # its data is nowhere the seedbox's client can find it, and no peer has it: stalled
    lost = torrent_of(random_file(tmp_path / "elsewhere" / "Lost.S01E01.mkv", 50_000, 9))
    lost_id = parse_torrent_file(lost).v1.upper()  # type: ignore[union-attr]
    async with arr_bridge(tmp_path, mosquitto, sshd, api={"api_key": API_KEY}) as (env, _):
        sonarr = arr("sonarr", env, api_key=API_KEY, category="tv")
        assert await press_test(sonarr) == []
        assert sonarr.logins == 0  # no login with a key: Bearer on every call
        assert {c.authorization for c in sonarr.calls} == {f"Bearer {API_KEY}"}
        assert all(c.status == 200 for c in sonarr.calls)  # the probe too
        wrong = arr("sonarr", env, api_key="x" * 32, category="tv")
        with pytest.raises(DownloadClientError) as refused:
            await wrong.get_api_version()
        assert (refused.value.kind, refused.value.status) == ("auth", 403)

        # Prowlarr adds through Radarr's proxy code: Basic always, one cookie store;
        # Force Start sends no `stopped` and calls setForceStart once the torrent is in
        prowlarr = arr("prowlarr", env, category="prowlarr", initial_state="force_start")
        assert await press_test(prowlarr) == []
        assert await grab_magnet(prowlarr, magnet, magnet_id)
        assert await grab_torrent_file(prowlarr, "Single.torrent", single_torrent, single_id)
        forced = [c.status for c in prowlarr.calls if c.path.endswith("/setForceStart")]
        assert forced == [200, 200]
        listed = await poll(prowlarr)
        assert listed.keys() == {magnet_id, single_id}
        assert {i.category for i in listed.values()} == {"prowlarr"}
        assert listed[magnet_id].status == "Queued"  # a magnet fetching its metadata
        # Sonarr's own list holds only its category
        assert not (await poll(sonarr)).keys() & {magnet_id, single_id}

        # Initial State "Stop": `stopped=True`, as .NET writes it, adds it stopped there
        stopping = arr("sonarr", env, api_key=API_KEY, category="tv", initial_state="stop")
        assert await grab_magnet(stopping, held, held_id)
        assert (await poll(stopping))[held_id].status == "Paused"
        await wait_until(lambda: _stopped_on_seedbox(env, held_id.lower()), "a stopped torrent")
        await stopping.remove_torrent(held_id.lower(), True)

        # stalled on the seedbox: stalledDL, which the apps show as a Warning
        assert await grab_torrent_file(sonarr, "Lost.S01E01.torrent", lost, lost_id)

        async def stalled() -> bool:
            return (await poll(sonarr))[lost_id].status == "Warning"

        await wait_until(stalled, "the seedbox's client to find no peers")
        (row,) = [t for t in await sonarr.get_torrents() if t["hash"] == lost_id.lower()]
        assert (row["state"], row["q4d_phase"], row["progress"]) == ("stalledDL", "seedbox", 0)
        await sonarr.remove_torrent(lost_id.lower(), True)
        await wait_until(
            lambda: _listed_on_seedbox(env, {magnet_id.lower(), single_id.lower()}), "removals"
        )

        # a removal without deleteFiles (Sonarr leaves it out) keeps the data
        await wait_until(lambda: _progress(prowlarr, single_id, 0.5), "the seedbox's copy")
        await sonarr.remove_torrent(single_id.lower(), False)
        assert single_id not in await poll(prowlarr)
        await wait_until(lambda: _listed_on_seedbox(env, {magnet_id.lower()}), "the removal")
        assert single.exists()


async def _stopped_on_seedbox(env: Env, info_hash: str) -> bool:
    client = env.bridge.clients["sb1"]
    states = {t.hash: t.state for t in await client.torrents()}  # type: ignore[attr-defined]
    return states.get(info_hash, "").startswith(("paused", "stopped"))


async def _listed_on_seedbox(env: Env, hashes: set[str]) -> bool:
    client = env.bridge.clients["sb1"]
    return {t.hash for t in await client.torrents()} == hashes  # type: ignore[attr-defined]


async def test_an_expired_session_is_403_and_the_apps_log_in_again(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with arr_bridge(tmp_path, mosquitto, sshd, api={"session_lifetime": 1}) as (env, _):
        # the cookie alone (Sonarr and Radarr before they sent Basic, qbittorrent-api)
        for app in ("sonarr", "radarr"):
            client = arr(app, env, category="tv", basic=False)
            await poll(client)
            assert client.logins == 1
            await asyncio.sleep(1.3)  # idle past the session's lifetime
            await poll(client)
            assert client.logins == 2
            statuses = [(c.path.rsplit("/", 1)[-1], c.status) for c in client.calls]
            assert statuses[-5:] == [
                ("webapiVersion", 403), ("login", 200), ("webapiVersion", 200),
                ("preferences", 200), ("info", 200),
            ]  # fmt: skip
            # in use, a session stays alive
            for _ in range(3):
                await asyncio.sleep(0.5)
                await poll(client)
            assert client.logins == 2

        # Basic on every call, as the apps send it now: an expired session goes unnoticed
        for app in ("sonarr", "radarr"):
            client = arr(app, env, category="tv")
            await poll(client)
            await asyncio.sleep(1.3)
            await poll(client)
            assert client.logins == 1
            assert all(c.status == 200 for c in client.calls[1:])
