"""Snapshot and behaviour of the q4d event platform."""

from __future__ import annotations

from typing import Any
from unittest.mock import AsyncMock

import pytest
from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.components.device_automation import DeviceAutomationType
from homeassistant.components.device_automation.exceptions import (
    InvalidDeviceAutomationConfig,
)
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import Event, HomeAssistant, ServiceCall, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_get_device_automations,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.q4d import device_trigger as device_trigger_module
from custom_components.q4d.const import DOMAIN

from .common import async_flush, async_send, q4d_device
from .payloads import EVENT_TOPIC, ITEM_1, ITEM_3, NOW, STATUS_TOPIC, event, item_dict, status


def async_capture_events_of(hass: HomeAssistant) -> list[Event[Any]]:
    """Record every q4d_transfer_* bus event."""
    events: list[Event[Any]] = []

    @callback
    def _record(event: Event[Any]) -> None:
        if event.event_type.startswith("q4d_transfer_"):
            events.append(event)

    hass.bus.async_listen("*", _record)
    return events


@pytest.mark.parametrize("platforms", [[Platform.EVENT]])
@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Every event entity, its registry entry and its state."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


async def test_bus_events(
    hass: HomeAssistant, init_integration: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """Transfer events fire q4d_transfer_* with the documented data, once each."""
    events = async_capture_events_of(hass)
    bridge = q4d_device(hass, "home")
    sb1 = q4d_device(hass, "home:seedbox:seedbox1")
    assert bridge is not None and sb1 is not None

    queued = item_dict(ITEM_1, "queued")
    started = item_dict(ITEM_1, "transferring", attempts=1, started_at=NOW + 2)
    done = item_dict(ITEM_1, "done", progress=100.0, started_at=NOW + 2, finished_at=NOW + 42.5)
    failed = item_dict(
        ITEM_3,
        "failed",
        name="Broken.iso",
        started_at=NOW + 1,
        finished_at=NOW + 5,
        error={"code": "auth_failed", "message": "Permission denied (publickey)"},
    )
    for payload in (
        event("queued", queued, at=NOW),
        event("queued", queued, at=NOW),  # the outbox delivers at least once
        event("started", started, at=NOW + 2),
        event("waiting", started, at=NOW + 3),
        event("duplicate", queued, at=NOW + 4, reason="hash"),
        event("rejected", None, reason="unsafe_path", detail="x", topic="t"),
        event("breaker_open", None, seedbox="seedbox1", failures=5, until=NOW + 300),
        event("completed", done, at=NOW + 42.5, verified="pieces", repaired_pieces=2),
        event("failed", failed, at=NOW + 5),
        event("queued", item_dict(ITEM_3, "queued", name="Broken.iso"), at=NOW + 6, retry=True),
    ):
        await async_send(hass, EVENT_TOPIC, payload, flush=False)
    await async_flush(hass)

    common = {
        "bridge_id": "home",
        "config_entry_id": init_integration.entry_id,
        "bridge_device_id": bridge.id,
        "device_id": sb1.id,
        "seedbox": "seedbox1",
        "category": "tv-sonarr",
        "destination": "tv",
        "destination_path": "/media/tv/Show.S01E01.mkv",
        "size": 1500000000,
    }
    assert [(e.event_type, e.data) for e in events] == [
        (
            "q4d_transfer_queued",
            common
            | {
                "item_id": ITEM_1,
                "name": "Show.S01E01.mkv",
                "duration": None,
                "error": None,
                "error_code": None,
                "at": NOW,
                "retry": False,
            },
        ),
        (
            "q4d_transfer_started",
            common
            | {
                "item_id": ITEM_1,
                "name": "Show.S01E01.mkv",
                "duration": None,
                "error": None,
                "error_code": None,
                "at": NOW + 2,
            },
        ),
        (
            "q4d_transfer_completed",
            common
            | {
                "item_id": ITEM_1,
                "name": "Show.S01E01.mkv",
                "duration": 40.5,
                "error": None,
                "error_code": None,
                "at": NOW + 42.5,
                "verified": "pieces",
                "repaired_pieces": 2,
                "steps": None,  # no post-processing
            },
        ),
        (
            "q4d_transfer_failed",
            common
            | {
                "item_id": ITEM_3,
                "name": "Broken.iso",
                "duration": 4.0,
                "error": "Permission denied (publickey)",
                "error_code": "auth_failed",
                "at": NOW + 5,
                "step": None,  # failed before landing
            },
        ),
        (
            "q4d_transfer_queued",
            common
            | {
                "item_id": ITEM_3,
                "name": "Broken.iso",
                "duration": None,
                "error": None,
                "error_code": None,
                "at": NOW + 6,
                "retry": True,
            },
        ),
    ]


async def test_event_item_copies(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """An event's copy of an item updates it only if it is newer, and never creates one."""
    coordinator = init_integration.runtime_data.coordinator
    older = item_dict(ITEM_1, "queued", updated_at=NOW)
    await async_send(hass, EVENT_TOPIC, event("queued", older))
    assert coordinator.items[ITEM_1].state == "transferring"
    newer = item_dict(ITEM_1, "verifying", updated_at=NOW + 100)
    await async_send(hass, EVENT_TOPIC, event("waiting", newer))
    assert coordinator.items[ITEM_1].state == "verifying"
    assert hass.states.get("sensor.my_seedbox_show_s01e01_mkv_status").state == "verifying"
    pruned = item_dict("dddddddddddddddd", "done", updated_at=NOW + 100)
    await async_send(hass, EVENT_TOPIC, event("completed", pruned))
    assert "dddddddddddddddd" not in coordinator.items


async def test_event_of_another_version(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """An event of another protocol version fires nothing and changes no item."""
    events = async_capture_events_of(hass)
    coordinator = init_integration.runtime_data.coordinator
    done = item_dict(ITEM_1, "done", updated_at=NOW + 100)
    await async_send(hass, EVENT_TOPIC, event("completed", {**done, "v": 2}, v=2))
    assert events == []
    assert coordinator.items[ITEM_1].state == "transferring"
    # no `v` (null here) reads as version 1
    await async_send(hass, EVENT_TOPIC, event("completed", done, v=None))
    assert [e.event_type for e in events] == ["q4d_transfer_completed"]


async def test_event_entity(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """The event entity shows the latest transfer event, at most one per second."""
    entity_id = "event.home_media_bridge_transfer"
    entity = hass.data["entity_components"]["event"].get_entity(entity_id)
    entity._last_write = hass.loop.time()
    started = item_dict(ITEM_1, "transferring")
    done = item_dict(ITEM_1, "done", started_at=NOW, finished_at=NOW + 10)
    async_fire_mqtt_message(hass, EVENT_TOPIC, event("started", started, at=NOW))
    async_fire_mqtt_message(hass, EVENT_TOPIC, event("completed", done, at=NOW + 10))
    await hass.async_block_till_done()
    assert hass.states.get(entity_id).state == STATE_UNKNOWN
    await async_flush(hass)
    state = hass.states.get(entity_id)
    assert state.attributes["event_type"] == "completed"
    # readable: the torrent's name, its seedbox's name, units in the keys, no empty error
    assert {k: v for k, v in state.attributes.items() if k not in ("event_types",)} == {
        "event_type": "completed",
        "friendly_name": "Home media bridge Transfer",
        "name": "Show.S01E01.mkv",
        "item_id": ITEM_1,
        "seedbox": "My seedbox",
        "category": "tv-sonarr",
        "destination": "tv",
        "size_bytes": 1500000000,
        "duration_seconds": 10.0,
    }
    failed = item_dict(
        ITEM_3,
        "failed",
        name="Broken.iso",
        seedbox="gone",
        error={"code": "connection", "message": "lftp exit 1"},
    )
    await async_send(hass, EVENT_TOPIC, event("failed", failed, at=NOW + 20))
    state = hass.states.get(entity_id)
    assert state.attributes["name"] == "Broken.iso"
    assert state.attributes["seedbox"] == "gone"  # a seedbox the bridge no longer has
    assert state.attributes["error"] == "lftp exit 1"

    await async_send(hass, STATUS_TOPIC, status("offline"))
    assert hass.states.get(entity_id).state == STATE_UNAVAILABLE


async def test_device_triggers(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    service_calls: list[ServiceCall],
) -> None:
    """Bridge and seedbox devices offer transfer triggers that fire on the bus events
    (and triggers for the completions the bridge refused: test_refusals.py)."""
    bridge = q4d_device(hass, "home")
    sb1 = q4d_device(hass, "home:seedbox:seedbox1")
    sb2 = q4d_device(hass, "home:seedbox:seedbox2")
    assert bridge is not None and sb1 is not None and sb2 is not None
    expected = [
        {
            "platform": "device",
            "domain": DOMAIN,
            "device_id": sb1.id,
            "type": trigger_type,
            "metadata": {},
        }
        for trigger_type in (
            *(f"transfer_{kind}" for kind in ("queued", "started", "completed", "failed")),
            "completion_rejected",
            "completion_duplicate",
        )
    ]
    triggers = await async_get_device_automations(hass, DeviceAutomationType.TRIGGER, sb1.id)
    assert [t for t in triggers if t["domain"] == DOMAIN] == expected
    other = device_registry.async_get_or_create(
        config_entry_id=init_integration.entry_id, identifiers={("other", "x")}
    )
    assert device_trigger_module.TRIGGER_TYPES
    assert await device_trigger_module.async_get_triggers(hass, other.id) == []
    assert await device_trigger_module.async_get_triggers(hass, "missing") == []

    def automation(device_id: str, kind: str, tag: str) -> dict[str, Any]:
        return {
            "trigger": {
                "platform": "device",
                "domain": DOMAIN,
                "device_id": device_id,
                "type": f"transfer_{kind}",
            },
            "action": {
                "service": "test.automation",
                "data_template": {"tag": tag, "name": "{{ trigger.event.data.name }}"},
            },
        }

    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: [
                automation(bridge.id, "completed", "bridge"),
                automation(sb1.id, "completed", "seedbox1"),
                automation(sb2.id, "completed", "seedbox2"),
                automation(sb1.id, "failed", "failed"),
            ]
        },
    )
    done = item_dict(ITEM_1, "done", started_at=NOW, finished_at=NOW + 10)
    await async_send(hass, EVENT_TOPIC, event("completed", done, at=NOW + 10))
    assert sorted(call.data["tag"] for call in service_calls) == ["bridge", "seedbox1"]
    assert {call.data["name"] for call in service_calls} == {"Show.S01E01.mkv"}

    with pytest.raises(InvalidDeviceAutomationConfig):
        await device_trigger_module.async_attach_trigger(
            hass,
            {
                "platform": "device",
                "domain": DOMAIN,
                "device_id": other.id,
                "type": "transfer_failed",
            },
            AsyncMock(),
            {"trigger_data": {}},  # type: ignore[typeddict-item]
        )


async def test_many_events(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Remembering recent events for deduplication stays bounded."""
    events = async_capture_events_of(hass)
    started = item_dict(ITEM_1, "transferring")
    for n in range(1100):
        async_fire_mqtt_message(hass, EVENT_TOPIC, event("started", started, at=NOW + n))
    await async_flush(hass)
    assert len(events) == 1100
    assert len(init_integration.runtime_data.coordinator._recent_events) == 1000
