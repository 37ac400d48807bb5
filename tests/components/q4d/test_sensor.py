"""Snapshot and behaviour of the q4d sensor platform."""

from __future__ import annotations

import pytest
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from pytest_homeassistant_custom_component.typing import MqttMockHAClient
from syrupy.assertion import SnapshotAssertion

from custom_components.q4d.const import DOMAIN

from .common import async_send
from .payloads import (
    GIB,
    NOW,
    STATE_TOPIC,
    STATUS_TOPIC,
    destination,
    dumps,
    state,
    state_dict,
    status,
)
from .payloads import seedbox as seedbox_payload

LAST_COMPLETED = "sensor.home_media_bridge_last_completed"
TV_FREE = "sensor.home_media_bridge_tv_free_space"
MOVIES_FREE = "sensor.home_media_bridge_movies_free_space"
MUSIC_FREE = "sensor.home_media_bridge_music_free_space"


@pytest.mark.parametrize("platforms", [[Platform.SENSOR]])
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every sensor entity, its registry entry and its state."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


async def test_last_completed_long_name(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A name longer than a state may be is cut to 255 characters."""
    name = "Very.Long.Name." * 40
    last = {"id": "ffffffffffffffff", "name": name, "at": NOW}
    await async_send(hass, STATE_TOPIC, state(last_completed=last))
    value = hass.states.get(LAST_COMPLETED).state
    assert len(value) == 255
    assert value == name[:254] + "…"
    assert "Failed to set state" not in caplog.text
    last["name"] = "x" * 255
    await async_send(hass, STATE_TOPIC, state(last_completed=last))
    assert hass.states.get(LAST_COMPLETED).state == "x" * 255


async def test_destination_free_space(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """One free-space sensor per destination, added and removed with the destination."""
    tv = hass.states.get(TV_FREE)
    assert tv is not None
    assert float(tv.state) == pytest.approx(3298.534883328)
    assert tv.attributes["unit_of_measurement"] == "GB"
    assert tv.attributes["min_free_space"] == GIB
    assert hass.states.get(MOVIES_FREE).state == STATE_UNKNOWN
    entry = entity_registry.async_get(TV_FREE)
    assert entry is not None
    assert entry.unique_id == "home:destination:tv:free_space"

    await async_send(
        hass,
        STATE_TOPIC,
        state(destinations={"tv": destination(10**9, 0), "music": destination(5 * 10**9)}),
    )
    assert float(hass.states.get(TV_FREE).state) == pytest.approx(1.0)
    assert float(hass.states.get(MUSIC_FREE).state) == pytest.approx(5.0)
    assert entity_registry.async_get(MOVIES_FREE) is None
    assert hass.states.get(MOVIES_FREE) is None

    # an older bridge reports no destinations: their sensors go
    old = state_dict()
    del old["destinations"]
    await async_send(hass, STATE_TOPIC, dumps(old))
    assert entity_registry.async_get(TV_FREE) is None
    assert entity_registry.async_get(MUSIC_FREE) is None
    # and they come back with the destinations
    await async_send(hass, STATE_TOPIC, state())
    assert hass.states.get(TV_FREE) is not None
    assert hass.states.get(MOVIES_FREE) is not None

    await async_send(hass, STATUS_TOPIC, status("offline"))
    assert hass.states.get(TV_FREE).state == STATE_UNAVAILABLE


async def test_stale_destination_sensor_removed_on_startup(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mock_config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """A destination removed while Home Assistant was down loses its sensor."""
    mock_config_entry.add_to_hass(hass)
    bridge = device_registry.async_get_or_create(
        config_entry_id=mock_config_entry.entry_id, identifiers={(DOMAIN, "home")}
    )
    seedbox = device_registry.async_get_or_create(
        config_entry_id=mock_config_entry.entry_id,
        identifiers={(DOMAIN, "home:seedbox:destination_x")},
    )
    stale = entity_registry.async_get_or_create(
        "sensor",
        DOMAIN,
        "home:destination:old:free_space",
        config_entry=mock_config_entry,
        device_id=bridge.id,
    )
    kept = entity_registry.async_get_or_create(
        "sensor",
        DOMAIN,
        "home:destination:tv:free_space",
        config_entry=mock_config_entry,
        device_id=bridge.id,
    )
    # seedbox `destination_x`'s free space (its version 1 unique id looked like a
    # destination's)
    lookalike = entity_registry.async_get_or_create(
        "sensor",
        DOMAIN,
        "home:seedbox:destination_x:free_space",
        config_entry=mock_config_entry,
        device_id=seedbox.id,
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await async_send(hass, STATUS_TOPIC, status())
    boxes = state_dict()["seedboxes"]
    boxes["destination_x"] = seedbox_payload("Look-alike")
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert entity_registry.async_get(stale.entity_id) is None
    assert entity_registry.async_get(kept.entity_id) is not None
    assert entity_registry.async_get(lookalike.entity_id) is not None
