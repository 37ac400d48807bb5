"""The runtime configuration layer in a running bridge, against Mosquitto and sshd on
loopback: a destination and a rule set over MQTT route the next completion without a
restart; a seedbox set with a private key (passphrase) and a confirmed host key works
after a restart; the export passes check-config and loads the same configuration;
removing the rule routes the next completion elsewhere; no secret reaches a log, an
MQTT message or the store's file."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml
from q4d_bridge import cli
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.source import ConfigSource
from q4d_bridge.models import ItemState
from q4d_bridge.mqtt.remote import RemoteError, call_bridge
from q4d_bridge.mqtt.topics import Topics

from tests.bridge.test_e2e import make_file
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import Recorder, publish, recording
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)
PASSPHRASE = "pp-Secret-5be1"
TOPICS = Topics("q4d", "test")


@contextlib.asynccontextmanager
async def running(path: Path, port: int) -> AsyncIterator[tuple[Bridge, Recorder]]:
    """A bridge started as `q4d-bridge run` starts it: the file and the stored layer."""
    source = ConfigSource.read(path, {})
    bridge = Bridge(source.load(), source=source)
    async with recording(port) as recorder:
        task = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(bridge.connected.wait(), 15)
            yield bridge, recorder
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)


def said_by_bridge(recorder: Recorder) -> list[bytes]:
    """Every message but the commands (what was asked holds the secrets it sets)."""
    return [m.payload for m in recorder.messages if m.topic != TOPICS.command]


async def ask(bridge: Bridge, op: str, **args: Any) -> Any:
    return await call_bridge(bridge.config.broker, TOPICS, op, args, within=20)


async def land(bridge: Bridge, seedbox: str, path: Path, category: str) -> Path:
    """A completion from seedbox; where its item landed."""
    event = {"v": 1, "event_id": hashlib.sha1(str(path).encode()).hexdigest()[:12],
             "path": str(path), "hash": None, "category": category}  # fmt: skip
    port = bridge.config.broker.port
    await publish(port, [(f"q4d/seedbox/{seedbox}/completed", json.dumps(event).encode())])
    for _ in range(600):
        item = next((i for i in bridge.lifecycle.items.values() if i.name == path.name), None)
        if item is not None and item.state is ItemState.DONE:
            return Path(item.local_path)
        assert item is None or item.state is not ItemState.FAILED, item
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path.name} did not land")


async def test_runtime_entries_apply_persist_export_and_stay_secret(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    remote, remote2, library = tmp_path / "seedbox", tmp_path / "seedbox2", tmp_path / "library"
    raw = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user, remote_root=str(remote),
    )  # fmt: skip
    raw["seedboxes"][0]["engine"] = "sftp"
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    # the test sshd's client key, encrypted (few KDF rounds: each connection unlocks it)
    pem = (
        asyncssh.read_private_key(sshd.client_key)
        .export_private_key(passphrase=PASSPHRASE, rounds=16, ignore_few_rounds=True)
        .decode()
    )
    films = library / "films"
    heard: list[bytes] = []

    async with running(path, mosquitto.port) as (bridge, recorder):
        await ask(bridge, "config_set", section="destinations", id="films", value=str(films))
        rule = {"destination": "films", "match": [{"field": "category", "is": "films"}]}
        result = await ask(bridge, "config_set", section="rules", id="films", value=rule)
        assert result["revision"] == 2
        assert result["applied"] == {
            "routing": True,
            "arr": False,
            "home_clients": False,
            "dispatch": False,
            "seedboxes": {"added": [], "changed": [], "removed": []},
            "unconfigured": [],
            "restart_required": [],
        }
        with pytest.raises(RemoteError) as refused:
            await ask(bridge, "config_set", section="rules", id="bad",
                      value={"destination": "nowhere"})  # fmt: skip
        assert (refused.value.code, refused.value.detail["fields"]) == (
            "invalid", {"destination": "'nowhere' is not in destinations"},
        )  # fmt: skip
        assert refused.value.detail["errors"] == [
            "rules[1].destination: 'nowhere' is not in destinations"
        ]
        # No restart: the next completion follows the new rule.
        make_file(remote / "Film.2024.mkv", 300_000, seed=1)
        assert await land(bridge, "sb1", remote / "Film.2024.mkv", "films") == (
            films / "Film.2024.mkv"
        )
        result = await ask(
            bridge, "config_set", section="seedboxes", id="sb2",
            value={"host": "127.0.0.1", "port": sshd.port, "user": sshd.user, "engine": "sftp",
                   "remote_roots": [str(remote2)], "private_key": pem, "passphrase": PASSPHRASE,
                   "host_key": sshd.host_public_key},
        )  # fmt: skip
        assert result["applied"]["seedboxes"]["added"] == ["sb2"]
        config_topic = recorder.on(TOPICS.config)
        assert config_topic[-1].json()["revision"] == 3
        heard += said_by_bridge(recorder)

    async with running(path, mosquitto.port) as (bridge, recorder):
        assert set(bridge.config.seedboxes) == {"sb1", "sb2"}
        async with recording(mosquitto.port, TOPICS.config) as retained:
            body = (await retained.wait_for(lambda: retained.messages, 10, "config"))[0]
            assert body.retain and body.json() == bridge.config_desk.body()  # type: ignore[union-attr]
        sb2 = next(e for e in body.json()["sections"]["seedboxes"] if e["id"] == "sb2")
        assert (sb2["source"], sb2["has_key"], sb2["has_passphrase"], sb2["has_host_key"]) == (
            "runtime", True, True, True,
        )  # fmt: skip
        # The seedbox set at runtime logs in with its key and the host key confirmed.
        make_file(remote2 / "Other.Film.mkv", 200_000, seed=2)
        landed = await land(bridge, "sb2", remote2 / "Other.Film.mkv", "films")
        assert landed == films / "Other.Film.mkv" and landed.stat().st_size == 200_000

        code = await asyncio.to_thread(cli.main, ["config", "export", "-c", str(path)])
        exported = capsys.readouterr().out
        assert code == 0 and "films" in exported
        out = tmp_path / "exported.yaml"
        out.write_text(exported)
        code = await asyncio.to_thread(cli.main, ["check-config", "-c", str(out)])
        assert code == 0 and "OK" in capsys.readouterr().out
        # The same configuration from the file alone: with the same data_dir (the
        # stored entries are then the file's) and with a fresh one.
        for data_dir in (None, tmp_path / "fresh"):
            moved = yaml.safe_load(exported)
            moved["data_dir"] = str(data_dir or moved["data_dir"])
            loaded = ConfigSource(moved, out).load()
            assert loaded.seedboxes == bridge.config.seedboxes
            assert loaded.routing.rules == bridge.config.routing.rules
            assert loaded.routing.destinations == bridge.config.routing.destinations

        # A rule removed: the next completion goes where it went before the rule.
        await ask(bridge, "config_remove", section="rules", id="films")
        make_file(remote / "Another.Film.mkv", 100_000, seed=3)
        landed = await land(bridge, "sb1", remote / "Another.Film.mkv", "films")
        assert landed == library / "other" / "Another.Film.mkv"
        heard += said_by_bridge(recorder)

    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("q4d.sqlite3*"))
    said = b"".join(heard) + caplog.text.encode() + exported.encode()
    for secret in (PASSPHRASE, *pem.splitlines()[1:3]):
        assert secret.encode() not in said and secret.encode() not in stored, secret
    assert (tmp_path / "data" / "secrets" / "seedboxes-sb2-passphrase").read_text() == PASSPHRASE


async def test_a_change_that_strands_queued_items_is_refused_before_it_is_stored(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """A destination given another path while an item waits for it: refused with the
    item (nothing stored, the revision unchanged) until confirmed; confirmed, the item
    fails as not configured and the new path is used."""
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    raw = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user, remote_root=str(remote),
    )  # fmt: skip
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    async with running(path, mosquitto.port) as (bridge, _):
        first = await ask(bridge, "config_set", section="destinations", id="films",
                          value=str(library / "films"))  # fmt: skip
        rule = {"destination": "films", "match": [{"field": "category", "is": "films"}]}
        await ask(bridge, "config_set", section="rules", id="films", value=rule)
        await ask(bridge, "pause")
        make_file(remote / "Waiting.mkv", 1000, seed=2)
        event = {"v": 1, "event_id": "w1", "path": str(remote / "Waiting.mkv"), "hash": None,
                 "category": "films"}  # fmt: skip
        await publish(mosquitto.port, [("q4d/seedbox/sb1/completed", json.dumps(event).encode())])
        for _ in range(200):
            waiting = [i for i in bridge.lifecycle.unfinished.values() if i.destination == "films"]
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert [i.name for i in waiting] == ["Waiting.mkv"]
        moved = str(tmp_path / "elsewhere")
        with pytest.raises(RemoteError) as refused:
            await ask(bridge, "config_set", section="destinations", id="films", value=moved)
        assert refused.value.code == "confirm_required"
        assert refused.value.detail["items"] == [waiting[0].id]
        listed = await ask(bridge, "config_get")
        assert listed["revision"] == first["revision"] + 1  # the rule's, nothing since
        assert bridge.config.routing.destinations["films"] == library / "films"
        done = await ask(bridge, "config_set", section="destinations", id="films", value=moved,
                         confirm=True)  # fmt: skip
        assert done["applied"]["unconfigured"] == [waiting[0].id]
        assert bridge.config.routing.destinations["films"] == Path(moved)
        assert bridge.lifecycle.items[waiting[0].id].state is ItemState.FAILED
