"""End to end: HA's real MQTT client, a real Mosquitto and the real bridge from this repo.

The bridge announces itself on its retained status topic, HA discovers it, the user
confirms and opts in to item entities, the queue is paused from HA, a seedbox
completion arrives, the item shows up as paused, the queue is resumed from HA, and the
item's status sensor goes paused -> transferring -> done while
`q4d_transfer_completed` fires.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import EVENT_STATE_CHANGED, STATE_ON
from homeassistant.core import Event, HomeAssistant, callback

from custom_components.q4d.const import CONF_ITEM_ENTITIES
from tests.components.q4d.live import async_connect, wait_for
from tests.conftest import allow_loopback_sockets
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(180)

SIZE = 3_000_000
RATE = 1_000_000  # bytes/s: the transfer lasts about 3 s, long enough to be seen

STATUS = "sensor.sb1_show_s01e01_mkv_status"
PROGRESS = "sensor.sb1_show_s01e01_mkv_progress"
CONNECTIVITY = "binary_sensor.test_bridge_connectivity"
PAUSED = "switch.test_bridge_queue_paused"


def make_file(path: Path, size: int) -> None:
    """A file of `size` pseudo-random bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(b"q4d").digest() * 4096
    with path.open("wb") as file:
        left = size
        while left > 0:
            file.write(block[: min(left, len(block))])
            left -= len(block)


def state_of(hass: HomeAssistant, entity_id: str) -> str | None:
    """Current state of an entity, or None."""
    state = hass.states.get(entity_id)
    return None if state is None else state.state


@pytest.mark.usefixtures("mock_hass_config")
async def test_bridge_end_to_end(
    hass: HomeAssistant, tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """Discovery, commands, state and events against the real bridge."""
    allow_loopback_sockets()
    remote, library = tmp_path / "seedbox", tmp_path / "library"
    make_file(remote / "Show.S01E01.mkv", SIZE)
    config = bridge_config(
        tmp_path / "data",
        library,
        key=sshd.client_key,
        known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port,
        ssh_port=sshd.port,
        user=sshd.user,
        remote_root=str(remote),
    )
    config["transfers"]["bandwidth_limit"] = RATE
    config["seedboxes"][0]["engine"] = "sftp"  # the built-in engine paces itself precisely
    bridge = BridgeProcess(tmp_path / "bridge", config)
    bridge.start()
    try:
        mqtt_entry, entry = await async_connect(hass, mosquitto, bridge)
        assert entry.data == {"bridge_id": "test", "prefix": "q4d"}
        hass.config_entries.async_update_entry(entry, options={CONF_ITEM_ENTITIES: True})
        await hass.async_block_till_done()  # the entry reloads with item entities
        assert entry.state is ConfigEntryState.LOADED
        await wait_for(
            lambda: state_of(hass, CONNECTIVITY) == STATE_ON, "bridge online", bridge=bridge
        )

        # pause from HA: the bridge answers the command and publishes its state
        await hass.services.async_call("switch", "turn_on", {"entity_id": PAUSED}, blocking=True)
        await wait_for(lambda: state_of(hass, PAUSED) == STATE_ON, "queue paused", bridge=bridge)

        statuses: list[str] = []
        completed: list[dict[str, Any]] = []

        @callback
        def _record_state(event: Event[Any]) -> None:
            if event.data["entity_id"] == STATUS and event.data["new_state"] is not None:
                statuses.append(event.data["new_state"].state)

        @callback
        def _record_completed(event: Event[Any]) -> None:
            completed.append(dict(event.data))

        hass.bus.async_listen(EVENT_STATE_CHANGED, _record_state)
        hass.bus.async_listen("q4d_transfer_completed", _record_completed)

        # a seedbox announces a completion (published through HA's own MQTT client)
        await mqtt.async_publish(
            hass,
            "q4d/seedbox/sb1/completed",
            json.dumps(
                {
                    "v": 1,
                    "event_id": "e2e-1",
                    "path": str(remote / "Show.S01E01.mkv"),
                    "name": "Show.S01E01.mkv",
                    "hash": "ab" * 20,
                    "category": "tv",
                    "size": SIZE,
                }
            ),
            qos=1,
        )
        await wait_for(lambda: state_of(hass, STATUS) == "paused", "item paused", bridge=bridge)

        # resume from HA: the transfer runs and completes
        await hass.services.async_call("switch", "turn_off", {"entity_id": PAUSED}, blocking=True)
        await wait_for(lambda: state_of(hass, STATUS) == "done", "item done", 90, bridge=bridge)
        await wait_for(lambda: completed, "q4d_transfer_completed", bridge=bridge)

        assert statuses[0] == "paused"
        assert "transferring" in statuses
        assert statuses[-1] == "done"
        assert statuses.index("paused") < statuses.index("transferring") < statuses.index("done")
        assert state_of(hass, PROGRESS) == "100.0"
        event = completed[0]
        assert event["name"] == "Show.S01E01.mkv"
        assert event["seedbox"] == "sb1"
        assert event["destination"] == "tv"
        assert event["destination_path"] == str(library / "tv" / "Show.S01E01.mkv")
        assert event["size"] == SIZE
        assert event["duration"] is not None
        assert event["duration"] >= 1.0
        assert event["device_id"] is not None
        assert (library / "tv" / "Show.S01E01.mkv").read_bytes() == (
            remote / "Show.S01E01.mkv"
        ).read_bytes()

        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        bridge.stop()
