"""From Home Assistant to the library, every part real: `q4d.add_torrent` with a magnet
in Home Assistant (its real MQTT client, a real Mosquitto), the bridge process picks the
seedbox's qBittorrent, which downloads the torrent from a local seeder; qBittorrent runs
q4d-hook (installed by install.sh), the bridge transfers the payload home over SFTP, and
the request ends `landed` with the library path. The time from the action to
"downloading on the seedbox" is printed (the closing note of issue 15 quotes it); the
seeder is slowed so that the download lasts long enough to be seen."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import mqtt
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant, callback

from custom_components.q4d.const import DOMAIN
from tests.components.q4d.live import async_connect, wait_for
from tests.conftest import allow_loopback_sockets
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.seeder import Seeder
from tests.helpers.services import Mosquitto, SshServer
from tests.seedbox.support import install_hook

pytestmark = pytest.mark.timeout(240)
ITEMS = "q4d/bridge/test/item/+"
CONNECTIVITY = "binary_sensor.test_bridge_connectivity"


@pytest.mark.usefixtures("mock_hass_config")
async def test_add_torrent_from_home_assistant_to_the_library(
    hass: HomeAssistant, tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, seeder: Seeder
) -> None:
    allow_loopback_sockets()
    remote, library, home = tmp_path / "seedbox", tmp_path / "library", tmp_path / "home"
    remote.mkdir()
    home.mkdir()
    seeded = seeder.seed("Film.2024.1080p.mkv", (8 * 2**20,), seed=15)
    seeder.limit_upload(2 * 2**20)  # about 4 s on the seedbox, to be seen downloading
    with QBittorrent(tmp_path / "box") as box:
        install_hook(home, tmp_path, box, mosquitto.port)
        config = bridge_config(
            tmp_path / "data", library, key=sshd.client_key, known_hosts=sshd.known_hosts,
            broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user,
            remote_root=str(remote),
        )  # fmt: skip
        config["seedboxes"][0].update(
            engine="sftp",
            hook_flush=f"{shlex.quote(str(home / '.local' / 'bin' / 'q4d-hook'))} flush",
            client={
                "type": "qbittorrent",
                "url": box.url,
                "username": box.username,
                "password": box.password,
                "poll_interval": 1,
                "min_free": 0,
                "save_path": str(remote),
            },
            reconcile={"interval": 0},
        )
        bridge = BridgeProcess(tmp_path / "bridge", config)
        bridge.start()
        seen: dict[str, list[tuple[float, dict[str, Any] | None]]] = {}

        @callback
        def _on_item(msg: mqtt.ReceiveMessage) -> None:
            payload = json.loads(msg.payload) if msg.payload else None
            seen.setdefault(msg.topic.rsplit("/", 1)[1], []).append((time.monotonic(), payload))

        try:
            mqtt_entry, entry = await async_connect(hass, mosquitto, bridge)
            unsubscribe = await mqtt.async_subscribe(hass, ITEMS, _on_item, qos=1)
            online = hass.states.get
            await wait_for(
                lambda: (s := online(CONNECTIVITY)) is not None and s.state == STATE_ON,
                "the bridge online in Home Assistant", 30, bridge,
            )  # fmt: skip
            preview = await hass.services.async_call(
                DOMAIN, "preview_dispatch", {"magnet": seeded.magnet, "category": "movies"},
                blocking=True, return_response=True,
            )  # fmt: skip
            assert preview is not None and preview["chosen"] == "sb1"

            asked = time.monotonic()
            added = await hass.services.async_call(
                DOMAIN, "add_torrent", {"magnet": seeded.magnet, "category": "movies"},
                blocking=True, return_response=True,
            )  # fmt: skip
            answered = time.monotonic()
            assert added is not None
            assert (added["seedbox"], added["info_hash"]) == ("sb1", seeded.info_hash)
            request_id = added["request_id"]

            def phase(state: str) -> float | None:
                return next(
                    (at for at, p in seen.get(request_id, []) if p and p["state"] == state), None
                )

            downloading = await wait_for(lambda: phase("downloading"), "downloading", 30, bridge)
            # the figure the closing note quotes
            print(
                f"\nq4d.add_torrent answered in {answered - asked:.2f} s; "
                f"'downloading on seedbox' after {downloading - asked:.2f} s "
                "(default dispatch.watch_interval, 5 s)"
            )

            def landed() -> dict[str, Any] | None:
                for topic_id, payloads in seen.items():
                    for _, p in payloads:
                        ours = p and p.get("request_id") == request_id and topic_id != request_id
                        if ours and p and p["state"] == "done":
                            return p
                return None

            item = await wait_for(landed, "the payload landed", 120, bridge)
            assert item["local_path"] == str(library / "movies" / seeded.name)
            assert seeded.differences(library / "movies" / seeded.name) == []
            assert seen[request_id][-1][1] is None  # its queue entry retracted for the item

            results: list[dict[str, Any]] = []
            unanswered = await mqtt.async_subscribe(
                hass, "q4d/bridge/test/command/result",
                lambda msg: results.append(json.loads(msg.payload)), qos=1,
            )  # fmt: skip
            await mqtt.async_publish(
                hass,
                "q4d/bridge/test/command",
                json.dumps({"id": "e2e-requests", "op": "requests"}),
            )
            (answer,) = await wait_for(
                lambda: [r for r in results if r["id"] == "e2e-requests"], "requests", 15, bridge
            )
            (request,) = answer["result"]["requests"]
            assert (request["state"], request["source"], request["item_id"]) == (
                "landed", "ha", item["id"]
            )  # fmt: skip
            assert request["local_path"] == str(library / "movies" / seeded.name)
            unanswered()
            unsubscribe()
            assert await hass.config_entries.async_unload(entry.entry_id)
            assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
            await hass.async_block_till_done()
        finally:
            bridge.stop()
