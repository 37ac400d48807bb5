"""The HA-first install: a real bridge process started from a broker-only file (no
seedbox, no destination, no rule) on a real Mosquitto is discovered by Home Assistant,
its entry loads on the empty status and state it publishes, and it shows online."""

from __future__ import annotations

from pathlib import Path

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr

from custom_components.q4d.const import DOMAIN
from tests.components.q4d.live import async_connect, wait_for
from tests.conftest import allow_loopback_sockets
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.services import Mosquitto

pytestmark = pytest.mark.timeout(120)

CONNECTIVITY = "binary_sensor.empty_connectivity"


@pytest.mark.usefixtures("mock_hass_config")
async def test_a_bridge_without_seedboxes_is_discovered_and_loads(
    hass: HomeAssistant, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    allow_loopback_sockets()
    config = {
        "bridge": {"id": "empty"},
        "data_dir": str(tmp_path / "data"),
        "broker": {"host": "127.0.0.1", "port": mosquitto.port},
    }
    bridge = BridgeProcess(tmp_path / "bridge", config)
    bridge.start()
    try:
        mqtt_entry, entry = await async_connect(hass, mosquitto, bridge)
        assert entry.data == {"bridge_id": "empty", "prefix": "q4d"}
        assert entry.state is ConfigEntryState.LOADED
        await wait_for(
            lambda: (s := hass.states.get(CONNECTIVITY)) is not None and s.state == STATE_ON,
            "the bridge online",
            bridge=bridge,
        )
        coordinator = entry.runtime_data.coordinator
        await wait_for(lambda: coordinator.state is not None, "the state", bridge=bridge)
        assert coordinator.state.seedboxes == {}
        devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
        assert [d.identifiers for d in devices] == [{(DOMAIN, "empty")}]  # the bridge alone

        assert await hass.config_entries.async_unload(entry.entry_id)
        assert await hass.config_entries.async_unload(mqtt_entry.entry_id)
        await hass.async_block_till_done()
    finally:
        bridge.stop()
    assert "Traceback" not in bridge.log()
