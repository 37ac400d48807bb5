"""No deprecated Home Assistant API on the integration's paths.

Home Assistant reports a custom integration's use of a deprecated API in its log
("Detected that custom integration 'q4d' calls ..., which is deprecated ..."),
months before it stops working; on the newest version the tests run on, a whole
life cycle of an entry must report nothing.
"""

from __future__ import annotations

import logging

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.q4d.const import CONF_BRIDGE_ID, CONF_PREFIX, DOMAIN

from .common import FakeBridge, async_flush, async_send, q4d_device
from .payloads import (
    EVENT_TOPIC,
    STATE_TOPIC,
    STATUS_TOPIC,
    event,
    item,
    item_dict,
    item_topic,
    state,
    state_dict,
    status,
    transferring,
)

BURST = 200


def deprecation_reports(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records about a deprecated API that name the integration (asyncio's slow
    callback reports name this test, hence the integration, too)."""
    return [
        message
        for record in caplog.records
        if record.name != "asyncio"
        and "q4d" in (message := record.getMessage())
        and "deprecat" in message.lower()
    ]


@pytest.mark.filterwarnings(r"error::DeprecationWarning:custom_components\.q4d")
async def test_life_cycle_uses_no_deprecated_api(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    entity_registry: er.EntityRegistry,
    fake_bridge: FakeBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Migration, set-up, a burst of items with their events and a command, a seedbox
    and items leaving, unload: not one deprecation report."""
    caplog.set_level(logging.DEBUG)
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Home media bridge",
        data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"},
        unique_id="home",
        version=1,  # migrated on set-up
    )
    entry.add_to_hass(hass)
    entity_registry.async_get_or_create("sensor", DOMAIN, "home_queued", config_entry=entry)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await async_send(hass, STATUS_TOPIC, status())
    ids = [f"{n:016x}" for n in range(0x1000, 0x1000 + BURST)]
    for n, item_id in enumerate(ids):
        seedbox = "seedbox1" if n % 2 else "seedbox2"
        async_fire_mqtt_message(hass, item_topic(item_id), transferring(item_id, seedbox=seedbox))
    await async_send(hass, STATE_TOPIC, state())
    assert len(entry.runtime_data.coordinator.items) == BURST
    assert q4d_device(hass, "home:seedbox:seedbox2") is not None
    for item_id in ids[:10]:
        async_fire_mqtt_message(
            hass, EVENT_TOPIC, event("completed", item_dict(item_id, "done", seedbox="seedbox1"))
        )
    await hass.services.async_call(DOMAIN, "pause", {}, blocking=True)
    assert fake_bridge.ops == [("pause", {})]

    boxes = state_dict()["seedboxes"]
    del boxes["seedbox2"]  # its device goes, its items' entities move to the bridge
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert q4d_device(hass, "home:seedbox:seedbox2") is None
    await async_send(hass, item_topic(ids[0]), item(ids[0], "failed", seedbox="seedbox1"))
    for item_id in ids:
        async_fire_mqtt_message(hass, item_topic(item_id), "")
    await async_flush(hass)
    assert entry.runtime_data.coordinator.items == {}
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    assert deprecation_reports(caplog) == []
