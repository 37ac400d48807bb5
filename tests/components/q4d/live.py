"""Home Assistant's real MQTT client on a real Mosquitto, with a real bridge process:
set up MQTT, let the bridge's retained status start discovery, confirm it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.q4d.const import DOMAIN
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.services import Mosquitto


async def wait_for(
    condition: Callable[[], Any],
    what: str,
    timeout: float = 30.0,
    bridge: BridgeProcess | None = None,
) -> Any:
    """Poll until `condition()` is truthy (real time: the broker and the bridge are real)."""
    deadline = time.monotonic() + timeout
    while True:
        if result := condition():
            return result
        if time.monotonic() > deadline:
            log = bridge.log()[-3000:] if bridge is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{log}")
        await asyncio.sleep(0.05)


async def async_connect(
    hass: HomeAssistant, mosquitto: Mosquitto, bridge: BridgeProcess
) -> tuple[MockConfigEntry, ConfigEntry]:
    """HA's MQTT entry, then the q4d entry the discovery of `bridge` creates."""
    mqtt_entry = MockConfigEntry(
        domain=mqtt.DOMAIN,
        data={mqtt.CONF_BROKER: "127.0.0.1", "port": mosquitto.port},
        version=1,
        minor_version=2,
    )
    mqtt_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mqtt_entry.entry_id)
    await hass.async_block_till_done()
    # the bridge's retained status starts a discovery flow
    flows = await wait_for(
        lambda: hass.config_entries.flow.async_progress_by_handler(DOMAIN),
        "the bridge to be discovered",
        bridge=bridge,
    )
    assert flows[0]["context"]["source"] == "mqtt"
    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    return mqtt_entry, result["result"]
