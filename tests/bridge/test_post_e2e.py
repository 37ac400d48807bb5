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
from pathlib import Path
from typing import Any

from q4d_bridge.models import ItemState, StepState

from tests.bridge.test_arr_import import KEY, FakeArr, arr
from tests.bridge.test_commands_live import item_messages
from tests.bridge.test_e2e import make_file, running_bridge
from tests.bridge.test_verify import mktorrent
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import publish, recording
from tests.helpers.rar import Member, write_rar
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
