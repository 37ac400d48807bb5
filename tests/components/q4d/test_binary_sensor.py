"""Snapshot and behaviour of the q4d binary_sensor platform."""

from __future__ import annotations

import pytest
from homeassistant.const import STATE_OFF, STATE_ON, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .common import async_send
from .payloads import STATE_TOPIC, ssh, state, state_dict

SSH_LINK = "binary_sensor.my_seedbox_ssh_link"


@pytest.mark.parametrize("platforms", [[Platform.BINARY_SENSOR]])
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every binary_sensor entity, its registry entry and its state."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


async def test_ssh_link(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """An SSH link sensor exists for seedboxes the bridge holds a link to."""
    assert hass.states.get(SSH_LINK).state == STATE_ON
    assert hass.states.get("binary_sensor.second_seedbox_ssh_link") is None
    boxes = state_dict()["seedboxes"]
    boxes["seedbox1"]["ssh"] = ssh(connected=False, error="connection: timed out")
    boxes["seedbox2"]["ssh"] = ssh(connected=False, error=None, checked_at=None)
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert hass.states.get(SSH_LINK).state == STATE_OFF
    assert hass.states.get("binary_sensor.second_seedbox_ssh_link").state == STATE_OFF
