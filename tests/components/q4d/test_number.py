"""Snapshot and behaviour of the q4d number platform."""

from __future__ import annotations

import pytest
from homeassistant.components.number import (
    ATTR_VALUE,
    SERVICE_SET_VALUE,
)
from homeassistant.components.number import (
    DOMAIN as NUMBER_DOMAIN,
)
from homeassistant.const import ATTR_ENTITY_ID, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .common import FakeBridge, async_send
from .payloads import STATE_TOPIC, state


@pytest.mark.parametrize("platforms", [[Platform.NUMBER]])
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every number entity, its registry entry and its state."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


async def test_set_limits(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The numbers send set_limits in the bridge's units (the limit is typed in MB/s, the
    unit the rate sensors show)."""
    await hass.services.async_call(
        NUMBER_DOMAIN,
        SERVICE_SET_VALUE,
        {ATTR_ENTITY_ID: "number.home_media_bridge_maximum_concurrent_transfers", ATTR_VALUE: 6},
        blocking=True,
    )
    await hass.services.async_call(
        NUMBER_DOMAIN,
        SERVICE_SET_VALUE,
        {ATTR_ENTITY_ID: "number.home_media_bridge_bandwidth_limit", ATTR_VALUE: 2.5},
        blocking=True,
    )
    assert fake_bridge.ops == [
        ("set_limits", {"max_concurrent": 6}),
        ("set_limits", {"bandwidth_limit": 2500000}),
    ]
    limit = "number.home_media_bridge_bandwidth_limit"
    assert hass.states.get(limit).state == "10.49"  # 10 MiB/s, set in the bridge's config
    assert hass.states.get(limit).attributes["unit_of_measurement"] == "MB/s"
    assert (
        hass.states.get("sensor.home_media_bridge_transfer_rate").attributes["unit_of_measurement"]
        == "MB/s"
    )
    await async_send(
        hass,
        STATE_TOPIC,
        state(limits={"max_concurrent": 6, "bandwidth_limit": 0, "per_seedbox": {}}),
    )
    assert hass.states.get("number.home_media_bridge_maximum_concurrent_transfers").state == "6"
    assert hass.states.get("number.home_media_bridge_bandwidth_limit").state == "0.0"
    await async_send(hass, STATE_TOPIC, state(limits={}))
    assert hass.states.get("number.home_media_bridge_bandwidth_limit").state == STATE_UNKNOWN
