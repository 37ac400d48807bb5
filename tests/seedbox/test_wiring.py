"""The hook wired exactly as docs/seedbox.md says, fired by the real torrent clients:
qBittorrent's "run external program", Transmission's script-torrent-done, rTorrent's
method.set_key and Deluge's Execute plugin. bin/q4d-hook runs as they start it (its
`#!/usr/bin/env python3` line, the default config path under $HOME)."""

from __future__ import annotations

import base64
import json
import os
import sys
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import pytest
from q4d_seedbox.clients.rtorrent import server_proxy

from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto
from tests.seedbox.support import (
    COMPLETED,
    HOOK,
    HOOK_DELUGE,
    SEEDBOX_ID,
    Deluge,
    DelugeWeb,
    QbtApi,
    RTorrent,
    Subscriber,
    Transmission,
    TransmissionRpc,
    make_torrent,
    need,
    torrent_hash,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(180)

# The argument lists documented in docs/seedbox.md.
QBT_AUTORUN_ARGS = 'qbittorrent "%I" "%N" "%F" "%L" "%G" "%Z" "%T"'
RTORRENT_EXECUTE = (
    "execute.nothrow.bg={hook},rtorrent,$d.hash=,$d.name=,$d.base_path=,$d.custom1=,$d.size_bytes="
)

HOSTILE_NAME = "Show \"quoted\" 'single' $(touch pwned) `x` é ☃.mkv"


@pytest.fixture
def home(tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user home with the default config, and `python3` on PATH being this venv's
    Python (it has paho-mqtt), for the daemons started from here to inherit."""
    home = tmp_path / "home"
    config = home / ".config" / "q4d" / "seedbox.conf"
    config.parent.mkdir(parents=True)
    write_config(
        config,
        {
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "seedbox_id": SEEDBOX_ID},
            "hook": {"timeout": 5},
        },
    )
    bindir = tmp_path / "pybin"
    bindir.mkdir()
    python3 = bindir / "python3"
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("Q4D_SEEDBOX_CONFIG", raising=False)
    return home


def payload(tmp_path: Path, directory: str, name: str = HOSTILE_NAME) -> tuple[Path, bytes, str]:
    data = tmp_path / directory / name
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(os.urandom(200 * 1024))
    raw = make_torrent(data, tmp_path / f"{directory}.torrent")
    return data, raw, torrent_hash(raw)


def test_qbittorrent_autorun(
    home: Path, tmp_path: Path, mosquitto: Mosquitto, subscribe: Callable[..., Subscriber]
) -> None:
    sub = subscribe(COMPLETED)
    data, raw, h = payload(tmp_path, "qbt-data")
    with QBittorrent(tmp_path / "qbt") as qbt:
        api = QbtApi(qbt.url, qbt.username, qbt.password)
        api.set_preferences(autorun_enabled=True, autorun_program=f"{HOOK} {QBT_AUTORUN_ARGS}")
        # The data is there already: the hash check finishes the torrent at once.
        api.add(raw, data.parent, category="tv sonarr", tags="hd,x265")
        event = sub.wait_count(COMPLETED, 1, timeout=60)[0].json()
    assert (event["client"], event["hash"], event["name"], event["path"]) == (
        "qbittorrent",
        h,
        HOSTILE_NAME,
        str(data),
    )
    assert (event["category"], sorted(event["tags"]), event["size"]) == (
        "tv sonarr",
        ["hd", "x265"],
        200 * 1024,
    )
    assert event.get("tracker") in (None, "127.0.0.1")  # none contacted yet
    assert not (home / "pwned").exists()
    assert (home / ".local" / "state" / "q4d" / "hook.log").exists()


def test_transmission_script_torrent_done(
    home: Path, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    need("transmission-daemon")
    sub = subscribe(COMPLETED)
    data, raw, h = payload(tmp_path, "tr-made")
    # Transmission keeps '"' in the torrent name but writes it as '_' on disk.
    on_disk = tmp_path / "tr-data" / HOSTILE_NAME.replace('"', "_")
    on_disk.parent.mkdir()
    data.rename(on_disk)
    with Transmission(tmp_path / "transmission", done_script=HOOK) as daemon:
        rpc = TransmissionRpc(daemon)
        added = rpc(
            "torrent-add",
            metainfo=base64.b64encode(raw).decode(),
            **{"download-dir": str(on_disk.parent)},
        )
        rpc("torrent-set", ids=[added["torrent-added"]["id"]], labels=["tv"])
        event = sub.wait_count(COMPLETED, 1, timeout=60)[0].json()
    # The event carries the path that exists, and the name Transmission shows.
    assert (event["client"], event["hash"], event["name"], event["path"], event["size"]) == (
        "transmission",
        h,
        HOSTILE_NAME,
        str(on_disk),
        200 * 1024,
    )


def test_rtorrent_method_set_key(
    home: Path, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    """The README's command string, hung on event.download.hash_done instead of
    .finished: .finished needs a real download from a peer, and the string (argument
    splitting, the $d.* calls) is the same."""
    need("rtorrent")
    sub = subscribe(COMPLETED)
    data, raw, h = payload(tmp_path, "rt-data")
    daemon = RTorrent(tmp_path / "rtorrent", unix=True)
    rc = daemon.workdir / "rtorrent.rc"
    command = RTORRENT_EXECUTE.format(hook=HOOK)
    rc.write_text(rc.read_text() + f'method.set_key = event.download.hash_done, q4d, "{command}"\n')
    daemon.start()
    try:
        proxy = server_proxy(daemon.url, None, None, 5)
        proxy.load.raw_start(
            "",
            xmlrpc.client.Binary(raw),
            f"d.directory.set={data.parent}",
            "d.custom1.set=TV%20Shows",
        )
        event = sub.wait_count(COMPLETED, 1, timeout=60)[0].json()
    finally:
        daemon.stop()
    assert (event["client"], event["hash"], event["name"], event["path"]) == (
        "rtorrent",
        h,
        HOSTILE_NAME,
        str(data),
    )
    assert (event["category"], event["size"]) == ("TV Shows", 200 * 1024)


def test_deluge_execute_plugin(
    home: Path, tmp_path: Path, subscribe: Callable[..., Subscriber]
) -> None:
    """A real download (from a qBittorrent seeder) so Deluge's `complete` event fires."""
    need("deluged")
    need("deluge-web")
    sub = subscribe(COMPLETED)
    data, raw, h = payload(tmp_path, "seed-data")
    deluge = Deluge(tmp_path / "deluge")
    with QBittorrent(tmp_path / "seeder") as seeder:
        QbtApi(seeder.url, seeder.username, seeder.password).add(raw, data.parent)
        deluge.start()
        try:
            web = DelugeWeb(deluge.url)
            web("core.enable_plugin", "Execute")
            wait_until(
                lambda: "Execute" in web("core.get_enabled_plugins"), 10, "the Execute plugin"
            )
            web("execute.add_command", "complete", str(HOOK_DELUGE))
            # Execute registers its handlers when enabled: a new command needs a re-enable
            # (or a deluged restart), as docs/seedbox.md says.
            web("core.disable_plugin", "Execute")
            wait_until(lambda: "Execute" not in web("core.get_enabled_plugins"), 10, "Execute off")
            web("core.enable_plugin", "Execute")
            wait_until(lambda: "Execute" in web("core.get_enabled_plugins"), 10, "Execute on")
            torrent_id = web(
                "core.add_torrent_file",
                "t.torrent",
                base64.b64encode(raw).decode(),
                {"download_location": str(deluge.downloads)},
            )
            web("core.connect_peer", torrent_id, "127.0.0.1", seeder.peer_port)
            event = sub.wait_count(COMPLETED, 1, timeout=90)[0].json()
        finally:
            deluge.stop()
    assert (event["client"], event["hash"], event["name"], event["path"], event["size"]) == (
        "deluge",
        h,
        HOSTILE_NAME,
        str(deluge.downloads / HOSTILE_NAME),
        200 * 1024,
    )
    assert json.dumps(event)  # plain JSON all the way
