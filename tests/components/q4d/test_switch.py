"""Snapshot and behaviour of the q4d switch platform."""

from __future__ import annotations

import pytest
from homeassistant.components.switch import DOMAIN as SWITCH_DOMAIN
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    Platform,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .common import FakeBridge, async_send
from .payloads import STATE_TOPIC, state


@pytest.mark.parametrize("platforms", [[Platform.SWITCH]])
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every switch entity, its registry entry and its state."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


async def test_pause_and_resume(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The switch sends pause/resume and shows the paused flag of the state."""
    entity_id = "switch.home_media_bridge_queue_paused"
    await hass.services.async_call(
        SWITCH_DOMAIN, SERVICE_TURN_ON, {ATTR_ENTITY_ID: entity_id}, blocking=True
    )
    await async_send(hass, STATE_TOPIC, state(paused=True))
    assert hass.states.get(entity_id).state == STATE_ON
    await hass.services.async_call(
        SWITCH_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: entity_id}, blocking=True
    )
    await async_send(hass, STATE_TOPIC, state(paused=False))
    assert hass.states.get(entity_id).state == STATE_OFF
    assert fake_bridge.ops == [("pause", {}), ("resume", {})]


async def test_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A refusal is a translated error."""
    fake_bridge.answers["pause"] = {"ok": False, "error": {"code": "internal", "message": "boom"}}
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            SWITCH_DOMAIN,
            SERVICE_TURN_ON,
            {ATTR_ENTITY_ID: "switch.home_media_bridge_queue_paused"},
            blocking=True,
        )
    assert err.value.translation_key == "command_failed"
    assert err.value.translation_placeholders == {
        "op": "pause",
        "code": "internal",
        "message": "boom",
    }
