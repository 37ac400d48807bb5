"""Snapshot and behaviour of the q4d button platform."""

from __future__ import annotations

import pytest
from homeassistant.components.button import DOMAIN as BUTTON_DOMAIN
from homeassistant.components.button import SERVICE_PRESS
from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .common import FakeBridge
from .payloads import ITEM_1, ITEM_3


@pytest.mark.parametrize("platforms", [[Platform.BUTTON]])
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every button entity, its registry entry and its state."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


async def test_press(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Bridge and item buttons send their commands."""
    for entity_id in (
        "button.home_media_bridge_retry_failed_transfers",
        "button.home_media_bridge_rescan_seedboxes",
        "button.my_seedbox_retry_broken_iso",
        "button.my_seedbox_cancel_show_s01e01_mkv",
    ):
        await hass.services.async_call(
            BUTTON_DOMAIN, SERVICE_PRESS, {ATTR_ENTITY_ID: entity_id}, blocking=True
        )
    assert fake_bridge.ops == [
        ("retry", {}),
        ("rescan", {}),
        ("retry", {"item_id": ITEM_3}),
        ("cancel", {"item_id": ITEM_1}),
    ]


async def test_press_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The bridge refusing an item command is a translated error."""
    fake_bridge.answers["cancel"] = {
        "ok": False,
        "error": {"code": "invalid_state", "message": f"item {ITEM_3} is failed"},
    }
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            BUTTON_DOMAIN,
            SERVICE_PRESS,
            {ATTR_ENTITY_ID: "button.my_seedbox_cancel_broken_iso"},
            blocking=True,
        )
    assert err.value.translation_key == "command_failed"
    assert err.value.translation_placeholders["code"] == "invalid_state"
