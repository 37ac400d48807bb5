"""A home client and the dispatch settings set over MQTT on a running bridge (Mosquitto,
sshd, a seedbox qbittorrent-nox and a home one, all on loopback), no restart needed:
the home client passes config_test, and the next payload a rule hands off to it is
rechecked there to 100 %; the next dispatch decision follows new settings (min_score,
size_estimate, categories). Both persist across a restart; removing them goes back;
the home client's password reaches no log line, no MQTT message and no store."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from q4d_bridge.bridge import Bridge
from q4d_bridge.clients.qbittorrent import QbittorrentClient
from q4d_bridge.models import Item, ItemState
from q4d_bridge.mqtt.remote import RemoteError
from q4d_bridge.postprocess.cleanup import find

from tests.bridge.test_handoff import client_config
from tests.bridge.test_post_e2e import seedbox_payload
from tests.bridge.test_runtime_config_bridge import ask, running, said_by_bridge
from tests.helpers.configs import bridge_config
from tests.helpers.handoff import seeding
from tests.helpers.mqtt import publish
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(180)
HOME_PASSWORD = "home-Secret-81fa"
MAGNET = f"magnet:?xt=urn:btih:{'cd' * 20}&dn=Some.Film.2024"


@pytest.fixture
def home_qbt(tmp_path: Path) -> Iterator[QBittorrent]:
    with QBittorrent(tmp_path / "home-qbt", password=HOME_PASSWORD) as daemon:
        yield daemon


@pytest.fixture
def seedbox_qbt(tmp_path: Path) -> Iterator[QBittorrent]:
    with QBittorrent(tmp_path / "seedbox-qbt") as daemon:
        yield daemon


async def done(bridge: Bridge, name: str, timeout: float = 90) -> Item:
    """The item of that name once done (its steps run), failing the test if it fails."""
    for _ in range(int(timeout * 10)):
        item = next((i for i in bridge.lifecycle.items.values() if i.name == name), None)
        if item is not None and item.state is ItemState.DONE:
            return item
        assert item is None or item.state is not ItemState.FAILED, (item.last_error, item.steps)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} was not done in {timeout} s")


async def refused(bridge: Bridge, op: str, **args: Any) -> RemoteError:
    with pytest.raises(RemoteError) as err:
        await ask(bridge, op, **args)
    return err.value


async def test_home_client_and_dispatch_set_live_persist_and_stay_secret(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    home_qbt: QBittorrent,
    seedbox_qbt: QBittorrent,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    season = seedbox_payload(remote, "Show.S05", [300 * 1024, 200 * 1024], seed=31)
    seedbox = QbittorrentClient(client_config(seedbox_qbt))
    home = QbittorrentClient(client_config(home_qbt))
    raw = bridge_config(
        tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user, remote_root=str(remote),
    )  # fmt: skip
    raw["seedboxes"][0].update(
        engine="sftp",
        # min_free 0: the decisions below do not depend on this machine's free space
        client={"type": "qbittorrent", "url": seedbox_qbt.url, "username": seedbox_qbt.username,
                "password": seedbox_qbt.password, "min_free": 0},
        reconcile={"interval": 0},  # the payload comes by its event only
    )  # fmt: skip
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(raw))
    settings = {"type": "qbittorrent", "url": home_qbt.url, "username": home_qbt.username,
                "password": HOME_PASSWORD}  # fmt: skip
    heard: list[bytes] = []
    try:
        await seeding(seedbox, season)
        async with running(path, mosquitto.port) as (bridge, recorder):
            tested = await ask(bridge, "config_test", kind="home_client", value=settings)
            assert (tested["kind"], tested["type"]) == ("home_client", "qbittorrent")
            assert tested["version"]
            result = await ask(bridge, "config_set", section="home_clients", id="home",
                               value=settings)  # fmt: skip
            assert result["applied"]["home_clients"] is True
            assert result["applied"]["restart_required"] == []
            tested = await ask(bridge, "config_test", kind="home_client", value={"id": "home"})
            assert tested["type"] == "qbittorrent"
            rule = {"destination": "tv", "match": [{"field": "category", "is": "tv"}],
                    "handoff": {"client": "home", "tags": ["q4d"]}}  # fmt: skip
            await ask(bridge, "config_set", section="rules", id="shows", value=rule)

            # The next payload the rule hands off goes to the client set a moment ago.
            event = {"v": 1, "event_id": "s05", "path": str(remote / season.name),
                     "hash": season.hash, "category": "tv"}  # fmt: skip
            await publish(mosquitto.port, [("q4d/seedbox/sb1/completed",
                                             json.dumps(event).encode())])  # fmt: skip
            item = await done(bridge, season.name)
            assert item.steps[0].detail == "home qBittorrent checked it 100 %", item.steps
            at_home = find(await home.torrents(), season.hash)
            assert at_home is not None and at_home.complete and at_home.tags == ("q4d",)
            assert at_home.content_path.rstrip("/") == str(library / "tv" / season.name)

            # Dispatch: the next decision follows each change.
            decision = (await ask(bridge, "preview", magnet=MAGNET, size=1))["decision"]
            assert decision["chosen"] == "sb1", decision
            err = await refused(bridge, "preview", magnet=MAGNET, category="music")
            assert err.code == "unknown_category", err.message
            result = await ask(
                bridge, "config_set", section="dispatch", id="dispatch",
                value={"min_score": 1e9, "size_estimate": "1KiB", "categories": ["music"]},
            )  # fmt: skip
            assert (result["applied"]["dispatch"], result["applied"]["restart_required"]) == (
                True, [],
            )  # fmt: skip
            err = await refused(bridge, "preview", magnet=MAGNET, category="music")
            assert err.code == "no_eligible_client" and "below min_score 1e+09" in err.message
            await ask(bridge, "config_set", section="dispatch", id="dispatch",
                      value={"size_estimate": "1KiB", "categories": ["music"]})  # fmt: skip
            decision = (await ask(bridge, "preview", magnet=MAGNET, category="music"))["decision"]
            assert (decision["chosen"], decision["size"], decision["size_estimated"]) == (
                "sb1", 1024, True,
            )  # fmt: skip
            heard += said_by_bridge(recorder)

        async with running(path, mosquitto.port) as (bridge, recorder):
            assert bridge.config.home_clients["home"].password == HOME_PASSWORD
            assert bridge.config.dispatch.size_estimate == 1024
            listed = (await ask(bridge, "config_get"))["sections"]
            [entry] = listed["home_clients"]
            assert (entry["source"], entry["has_password"]) == ("runtime", True)
            [dispatch] = listed["dispatch"]
            assert (dispatch["source"], dispatch["value"]["categories"]) == ("runtime", ["music"])
            decision = (await ask(bridge, "preview", magnet=MAGNET, category="music"))["decision"]
            assert decision["size"] == 1024

            result = await ask(bridge, "config_remove", section="dispatch", id="dispatch")
            assert result["applied"]["dispatch"] is True
            err = await refused(bridge, "preview", magnet=MAGNET, category="music")
            assert err.code == "unknown_category", err.message
            err = await refused(bridge, "config_remove", section="home_clients", id="home")
            assert (err.code, err.detail["used_by"]) == ("in_use", ["rules.shows"])
            await ask(bridge, "config_remove", section="rules", id="shows")
            result = await ask(bridge, "config_remove", section="home_clients", id="home")
            assert result["applied"]["home_clients"] is True and bridge.config.home_clients == {}
            err = await refused(bridge, "config_test", kind="home_client", value={"id": "home"})
            assert err.code == "not_found"
            heard += said_by_bridge(recorder)
    finally:
        await seedbox.close()
        await home.close()

    assert not (tmp_path / "data" / "secrets" / "home_clients-home-password").exists()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("q4d.sqlite3*"))
    said = b"".join(heard) + caplog.text.encode()
    assert HOME_PASSWORD.encode() not in said and HOME_PASSWORD.encode() not in stored
