"""Snapshot and behaviour of the q4d button platform."""

from __future__ import annotations

import logging
from unittest.mock import patch

import pytest
from homeassistant.components.button import DOMAIN as BUTTON_DOMAIN
from homeassistant.components.button import SERVICE_PRESS
from homeassistant.const import ATTR_ENTITY_ID, STATE_UNAVAILABLE, Platform
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from .common import FakeBridge, async_send
from .payloads import ITEM_1, ITEM_3, NOW, item, item_topic

RETRY_SHOW = "button.my_seedbox_retry_show_s01e01_mkv"
CANCEL_SHOW = "button.my_seedbox_cancel_show_s01e01_mkv"
RETRY_BROKEN = "button.my_seedbox_retry_broken_iso"


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
        RETRY_BROKEN,
        CANCEL_SHOW,
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


async def test_bridge_buttons_notify(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Retry failed and rescan say what they did in a notification."""
    fake_bridge.answers["retry"] = {"ok": True, "result": {"items": [ITEM_3]}}
    fake_bridge.answers["rescan"] = {
        "ok": True,
        "result": {"seedboxes": {"seedbox1": {"enqueued": [], "error": None}}},
    }
    with patch("homeassistant.components.persistent_notification.async_create") as create:
        for entity_id in (
            "button.home_media_bridge_retry_failed_transfers",
            "button.home_media_bridge_rescan_seedboxes",
        ):
            await hass.services.async_call(
                BUTTON_DOMAIN, SERVICE_PRESS, {ATTR_ENTITY_ID: entity_id}, blocking=True
            )
    assert [c.args[1] for c in create.call_args_list] == [
        "1 failed transfer queued again: Broken.iso",
        "No missed completions.",
    ]


@pytest.mark.parametrize(
    ("item_state", "retry", "cancel"),
    [
        ("queued", False, True),
        ("transferring", False, True),
        ("verifying", False, False),
        ("waiting", False, True),
        ("done", False, False),
        ("failed", True, False),
        ("cancelled", False, False),
    ],
)
async def test_item_buttons_available(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    item_state: str,
    retry: bool,
    cancel: bool,
) -> None:
    """Retry is offered for failed items only, cancel where the bridge can still cancel."""
    await async_send(
        hass, item_topic(ITEM_1), item(ITEM_1, item_state, updated_at=NOW + 100, finished_at=NOW)
    )
    for entity_id, available in ((RETRY_SHOW, retry), (CANCEL_SHOW, cancel)):
        assert (hass.states.get(entity_id).state != STATE_UNAVAILABLE) is available, entity_id


async def test_press_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bridge refusing an item command (its copy was ahead) names the torrent."""
    fake_bridge.answers["cancel"] = {
        "ok": False,
        "error": {"code": "invalid_state", "message": f"item {ITEM_1} is done"},
    }
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            BUTTON_DOMAIN, SERVICE_PRESS, {ATTR_ENTITY_ID: CANCEL_SHOW}, blocking=True
        )
    assert err.value.translation_key == "item_command_failed"
    assert err.value.translation_placeholders == {
        "op": "cancel",
        "name": "Show.S01E01.mkv",
        "code": "invalid_state",
        "message": f"item {ITEM_1} is done",
    }
    assert str(err.value) == (
        "The q4d bridge refused the cancel command for Show.S01E01.mkv (invalid_state): "
        f"item {ITEM_1} is done"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
