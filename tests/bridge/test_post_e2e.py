"""The whole post-landing path through the real bridge, Mosquitto, sshd, unar and a
stand-in of Sonarr's command API: a season folder of multi-volume RAR archives with an
.nfo and a Sample folder is fetched without what the rule excludes (piece verification
still passing), lands with the rule's group and modes, is unpacked and its archives
deleted, and Sonarr is told to import it; each step recorded on the item, which is done
after the last one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libtorrent as lt
import pytest
import yaml
from q4d_bridge.clients.qbittorrent import QbittorrentClient
from q4d_bridge.models import ItemState, StepState
from q4d_bridge.postprocess.base import Landed, Step
from q4d_bridge.postprocess.cleanup import find

from tests.bridge.test_arr_import import KEY, FakeArr, arr
from tests.bridge.test_commands_live import command, item_messages
from tests.bridge.test_e2e import make_file, running_bridge
from tests.bridge.test_handoff import client_config, on_seedbox
from tests.bridge.test_verify import mktorrent
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.handoff import Payload, corrupt, seeding
from tests.helpers.mqtt import publish, recording
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.rar import Member, write_rar
from tests.helpers.seeder import make_payload, make_torrent
from tests.helpers.services import Mosquitto, SshServer

__all__ = ["arr"]  # the fixture
NOGROUP = 65534


async def test_a_season_pack_lands_unpacked_and_sonarr_imports_it(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, arr: Any
) -> None:
    sonarr: FakeArr = await arr(app="sonarr")
    episode = hashlib.sha256(b"episode").digest() * 40_000  # 1.25 MiB
    remote = tmp_path / "seedbox" / "Show.S01"
    (remote / "Sample").mkdir(parents=True)
    (remote / "Sample" / "sample.mkv").write_bytes(b"s" * 300_000)
    (remote / "show.nfo").write_text("release notes")
    volumes = write_rar(remote / "show", [Member("Show.S01E01.mkv", episode)],
                        volume_size=500_000)  # fmt: skip
    assert len(volumes) == 3
    session = tmp_path / "session"  # the client's .torrent files, as {HASH}.torrent
    session.mkdir()
    info_hash = mktorrent(remote, session / "new.torrent").info_hash
    (session / "new.torrent").rename(session / f"{info_hash.upper()}.torrent")
    rules = [{
        "destination": "tv", "match": [{"field": "category", "is": "tv-sonarr"}],
        "exclude": ["*.nfo", "Sample/"], "group": NOGROUP, "file_mode": "0640",
        "extract": {"keep_archives": False},
        "arr_import": {"instance": "sonarr", "import_mode": "Copy"},
    }]  # fmt: skip
    arr_config = {"sonarr": {"type": "sonarr", "url": sonarr.url, "api_key": KEY}}
    seedbox = {"torrent_file": f"{session}/{{HASH}}.torrent"}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", rules=rules, arr=arr_config, seedbox=seedbox
    ) as env:
        await env.complete("Show.S01", info_hash, category="tv-sonarr")
        await env.wait_settled(1, timeout=60)
        (item,) = env.bridge.lifecycle.items.values()
        assert item.state is ItemState.DONE, (item.last_error, item.steps)
        landed = env.library / "tv" / "Show.S01"
        assert sorted(p.name for p in landed.iterdir()) == ["Show.S01E01.mkv"]
        assert (landed / "Show.S01E01.mkv").read_bytes() == episode
        for path in (landed, landed / "Show.S01E01.mkv"):
            assert path.stat().st_gid == NOGROUP
        assert (landed / "Show.S01E01.mkv").stat().st_mode & 0o777 == 0o640
        assert [(s.name, s.state) for s in item.steps] == [
            ("extract", StepState.DONE), ("arr_import", StepState.DONE),
        ]  # fmt: skip
        assert item.steps[0].detail == "1 file from 1 archive (RAR 3 volumes)"
        assert item.steps[1].detail.startswith("Sonarr: DownloadedEpisodesScan completed")
        (scan,) = [s for s in sonarr.seen if s.method == "POST"]
        assert scan.body == {"name": "DownloadedEpisodesScan", "path": str(landed),
                             "importMode": "Copy", "downloadClientId": info_hash.upper()}  # fmt: skip
        completed = env.recorder.events("completed")[0]
        assert completed["steps"]["extract"] == item.steps[0].detail
        landed_event = env.recorder.events("landed")[0]
        assert landed_event["verified"] == "pieces"
        states = [(m["state"], m["step"]) for m in item_messages(env, item.id)]
        assert ("processing", "extract") in states and ("processing", "arr_import") in states
        assert not (env.library / "tv" / ".q4d-partial").exists()


async def test_sigkill_mid_step_resumes_the_step_after_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, arr: Any
) -> None:
    """The bridge process killed (-9) while Sonarr holds its scan request: the item is
    still `processing` in the store, the payload in place; the restarted bridge runs the
    step again and finishes. Sonarr hands back the command still running (one import)."""
    sonarr: FakeArr = await arr(app="sonarr", hold="post")
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    make_file(remote / "Film.2024.mkv", 300_000, seed=3)
    config = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user, remote_root=str(remote),
        arr={"sonarr": {"type": "sonarr", "url": sonarr.url, "api_key": KEY}},
    )  # fmt: skip
    config["destinations"]["movies"] = {"path": str(library / "movies"), "arr_import": "sonarr"}
    config["seedboxes"][0]["engine"] = "sftp"
    bridge = BridgeProcess(tmp_path / "proc", config)
    event = {"v": 1, "event_id": "e1", "path": str(remote / "Film.2024.mkv"),
             "hash": "c" * 40, "category": "movies"}  # fmt: skip
    async with recording(mosquitto.port) as rec:
        bridge.start()
        try:
            await rec.wait_for(lambda: rec.on("q4d/bridge/test/status"), 20, "bridge online")
            await publish(
                mosquitto.port, [("q4d/seedbox/sb1/completed", json.dumps(event).encode())]
            )
            await asyncio.wait_for(sonarr.held.wait(), 30)  # the scan is with Sonarr
            bridge.kill()
            db = sqlite3.connect(tmp_path / "data" / "q4d.sqlite3")
            state, steps = db.execute("SELECT state, steps FROM items").fetchone()
            db.close()
            assert state == "processing" and json.loads(steps)[0]["state"] == "running"
            assert (library / "movies" / "Film.2024.mkv").stat().st_size == 300_000
            sonarr.hold = None
            sonarr.release.set()
            bridge.start()
            await rec.wait_for(lambda: rec.events("completed"), 30, "completed after restart")
        finally:
            bridge.stop()
    (completed,) = {json.dumps(e, sort_keys=True): e for e in rec.events("completed")}.values()
    assert completed["steps"]["arr_import"].startswith("Sonarr: DownloadedEpisodesScan completed")
    assert completed["item"]["steps"][0]["attempts"] == 2
    assert len(sonarr.commands) == 1  # the second scan followed the first command


@pytest.fixture
def home_qbt(tmp_path: Path) -> Iterator[QBittorrent]:
    with QBittorrent(tmp_path / "home-qbt") as daemon:
        yield daemon


@pytest.fixture
def seedbox_qbt(tmp_path: Path) -> Iterator[QBittorrent]:
    with QBittorrent(tmp_path / "seedbox-qbt") as daemon:
        yield daemon


def seedbox_payload(remote: Path, name: str, sizes: list[int], seed: int) -> Payload:
    files = make_payload(remote, name, sizes, seed)
    torrent = make_torrent(remote / name)
    info_hash = str(lt.torrent_info(torrent).info_hashes().v1)
    return Payload(name, remote / name, remote / name, files, torrent, info_hash)


class CorruptFirst:
    """The bridge's own hand-off step, run on a landed copy that lost a byte since it
    was verified (a disk, another program): the home client's recheck falls short, and
    the step's repair fetches the piece again from the seedbox over SSH."""

    name = "handoff"

    def __init__(self, step: Step, rel: str, offset: int) -> None:
        self.step, self.rel, self.offset = step, rel, offset
        self.corrupted: list[Path] = []

    async def run(self, landed: Landed) -> str:
        if not self.corrupted:
            self.corrupted.append(landed.path / self.rel)
            corrupt(landed.path / self.rel, self.offset)
        return await self.step.run(landed)


async def test_hand_off_to_home_qbittorrent_then_clean_up_the_seedbox(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    home_qbt: QBittorrent,
    seedbox_qbt: QBittorrent,
) -> None:
    """Through the bridge with a real seedbox qBittorrent: one torrent is handed to a
    real home qBittorrent (its recheck short of a piece corrupted after landing, that
    piece repaired from the seedbox over SSH, rechecked to 100 %, then removed from the
    seedbox with its data); another waits for its seeding-time goal, which the clean-up lists in a dry
    run (over MQTT and `q4d-bridge cleanup`) and then removes."""
    remote = tmp_path / "seedbox"
    season = seedbox_payload(remote, "Show.S03", [300 * 1024, 200 * 1024], seed=21)
    film = seedbox_payload(remote, "Film.2023.mkv", [400 * 1024], seed=22)
    seedbox = QbittorrentClient(client_config(seedbox_qbt))
    home = QbittorrentClient(client_config(home_qbt))
    try:
        for payload in (season, film):
            await seeding(seedbox, payload)
        rules = [
            {"destination": "tv", "match": [{"field": "category", "is": "tv"}],
             "handoff": {"client": "home", "tags": ["q4d"], "remove_from_seedbox": True}},
            {"destination": "movies", "match": [{"field": "category", "is": "movies"}],
             "seedbox_cleanup": {"seeding_time": "1s"}},
        ]  # fmt: skip
        homes = {"home": {"type": "qbittorrent", "url": home_qbt.url,
                          "username": home_qbt.username, "password": home_qbt.password}}  # fmt: skip
        client = {"type": "qbittorrent", "url": seedbox_qbt.url, "dispatch": False,
                  "username": seedbox_qbt.username, "password": seedbox_qbt.password}  # fmt: skip
        async with running_bridge(
            tmp_path, mosquitto, sshd, engine="sftp", rules=rules, home_clients=homes,
            seedbox={"client": client},
        ) as env:  # fmt: skip
            handoff = CorruptFirst(env.bridge.post.steps["handoff"], "extras/part01.bin", 1000)
            env.bridge.post.steps = {**env.bridge.post.steps, "handoff": handoff}
            await env.complete("Show.S03", season.hash, category="tv")
            await env.complete("Film.2023.mkv", film.hash, category="movies")
            await env.wait_settled(2, timeout=90)
            items = {i.name: i for i in env.bridge.lifecycle.items.values()}
            tv = items["Show.S03"]
            assert tv.state is ItemState.DONE, (tv.last_error, tv.steps)
            assert handoff.corrupted == [env.library / "tv" / "Show.S03" / "extras/part01.bin"]
            assert tv.steps[0].detail == (
                "home qBittorrent checked it 100 % after 1 repair; removed from the seedbox "
                "with its data"
            )
            for rel, data in season.files.items():  # repaired from the seedbox's copy
                assert (env.library / "tv" / "Show.S03" / rel).read_bytes() == data
            at_home = find(await home.torrents(), season.hash)
            assert at_home is not None and at_home.complete
            assert at_home.content_path.rstrip("/") == str(env.library / "tv" / "Show.S03")
            assert at_home.tags == ("q4d",)
            assert await on_seedbox(seedbox, season) is None
            assert not (remote / "Show.S03").exists()  # its data went with it
            assert items["Film.2023.mkv"].state is ItemState.DONE
            listing = await command(env, "seedbox_cleanup")
            assert [(t["name"], t["removed"]) for t in listing["torrents"]] == [
                ("Film.2023.mkv", False),
            ]  # fmt: skip
            assert listing["dry_run"] and await on_seedbox(seedbox, film) is not None
            config_file = tmp_path / "bridge.yaml"
            config_file.write_text(yaml.safe_dump(env.raw))
            cli = [sys.executable, "-m", "q4d_bridge.cli", "cleanup", "--now", "-c",
                   str(config_file)]  # fmt: skip
            done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True,
                                           timeout=60, check=False)  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith("sb1: Film.2023.mkv (seeding time "), done.stdout
            assert done.stdout.rstrip().endswith("): removed")
            assert await on_seedbox(seedbox, film) is None
            again = await command(env, "seedbox_cleanup", dry_run=False)
            assert again["torrents"] == []  # recorded: never looked at twice
    finally:
        await seedbox.close()
        await home.close()
