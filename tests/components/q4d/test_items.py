"""Queue items: entities appear with the item, follow it, and leave after the retention."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
)
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.q4d.const import CONF_ITEM_ENTITIES, CONF_RETENTION, DOMAIN

from .common import async_flush, async_send, q4d_device
from .payloads import (
    ITEM_1,
    ITEM_2,
    ITEM_3,
    REQUEST_1,
    STATE_TOPIC,
    STATUS_TOPIC,
    item,
    item_topic,
    request_item,
    state,
    status,
    transferring,
)

NEW = "aaaaaaaaaaaaaaaa"
NEW_STATUS = "sensor.my_seedbox_new_mkv_status"
ITEM_KEYS = 6  # status, progress, rate, eta sensors; retry, cancel buttons


def item_entities(entity_registry: er.EntityRegistry, entry_id: str) -> list[er.RegistryEntry]:
    """Registry entries of item entities."""
    return [
        e
        for e in er.async_entries_for_config_entry(entity_registry, entry_id)
        if e.unique_id.startswith("home:item:")
    ]


async def test_item_appears_and_follows(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """A new item gets its entities under its seedbox's device, and they follow it."""
    await async_send(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    status_entry = entity_registry.async_get(NEW_STATUS)
    assert status_entry is not None
    device = device_registry.async_get(status_entry.device_id)
    assert device is not None
    assert (DOMAIN, "home:seedbox:seedbox1") in device.identifiers
    assert hass.states.get(NEW_STATUS).state == "queued"
    assert (
        len(
            [
                e
                for e in item_entities(entity_registry, init_integration.entry_id)
                if NEW in e.unique_id
            ]
        )
        == ITEM_KEYS
    )

    await async_send(hass, item_topic(NEW), transferring(NEW, name="New.mkv", progress=50.0))
    assert hass.states.get(NEW_STATUS).state == "transferring"
    assert hass.states.get("sensor.my_seedbox_new_mkv_progress").state == "50.0"
    assert hass.states.get("sensor.my_seedbox_new_mkv_time_left").state == "18.6"

    await async_send(
        hass,
        item_topic(NEW),
        item(
            NEW,
            "waiting",
            name="New.mkv",
            error={"code": "connection", "message": "lftp exit 1"},
            updated_at=time.time(),
        ),
    )
    attributes = hass.states.get(NEW_STATUS).attributes
    assert attributes["error_code"] == "connection"
    assert attributes["error"] == "lftp exit 1"

    # the bridge removes the item: its entities go
    await async_send(hass, item_topic(NEW), "")
    assert entity_registry.async_get(NEW_STATUS) is None
    assert hass.states.get(NEW_STATUS) is None
    # removing an unknown item is harmless
    await async_send(hass, item_topic("bbbbbbbbbbbbbbbb"), "")


async def test_torrent_requests_have_no_entities(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """A torrent request gets no item entities in any state (the card shows it); the queue
    item its download became gets them as any item does."""
    before = len(item_entities(entity_registry, init_integration.entry_id))
    failure = {"code": "client_error", "message": "refused"}
    for payload in (
        request_item(state="requested", progress=0.0),
        request_item(),
        request_item(state="failed", error=failure),
    ):
        await async_send(hass, item_topic(REQUEST_1), payload)
        assert len(item_entities(entity_registry, init_integration.entry_id)) == before
    assert init_integration.runtime_data.coordinator.items[REQUEST_1].is_request

    await async_send(hass, item_topic(REQUEST_1), "", flush=False)
    await async_send(hass, item_topic(NEW), item(NEW, name="New.mkv", request_id=REQUEST_1))
    assert hass.states.get(NEW_STATUS).state == "queued"
    assert len(item_entities(entity_registry, init_integration.entry_id)) == before + ITEM_KEYS


async def test_writes_are_throttled(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Many updates inside a second become one write at the end of it."""
    entity_id = "sensor.my_seedbox_show_s01e01_mkv_progress"
    writes: list[str] = []

    @callback
    def _record(event: Event[Any]) -> None:
        if event.data["entity_id"] == entity_id:
            writes.append(event.data["new_state"].state)

    hass.bus.async_listen(EVENT_STATE_CHANGED, _record)
    entity = hass.data["entity_components"]["sensor"].get_entity(entity_id)
    entity._last_write = hass.loop.time()  # as if it had just written
    for progress in range(40, 50):
        async_fire_mqtt_message(
            hass, item_topic(ITEM_1), transferring(ITEM_1, progress=float(progress))
        )
        await hass.async_block_till_done()
    assert writes == []
    await async_flush(hass)
    assert writes == ["49.0"]
    # an update that changes nothing writes nothing
    async_fire_mqtt_message(hass, item_topic(ITEM_1), transferring(ITEM_1, progress=49.0))
    await async_flush(hass)
    assert writes == ["49.0"]
    # the value went back before the write was due: nothing to write
    entity._last_write = hass.loop.time()
    async_fire_mqtt_message(hass, item_topic(ITEM_1), transferring(ITEM_1, progress=48.0))
    async_fire_mqtt_message(hass, item_topic(ITEM_1), transferring(ITEM_1, progress=49.0))
    await async_flush(hass)
    assert writes == ["49.0"]


async def test_progress_reaches_only_its_entities(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """An update that changes only progress fields reaches the item's listeners that
    show one of them; any other change, or the connection's, reaches them all."""
    coordinator = init_integration.runtime_data.coordinator
    heard: list[str] = []
    for name, fields in (("all", frozenset()), ("progress", frozenset({"progress"}))):
        coordinator.async_add_listener(lambda name=name: heard.append(name), ITEM_1, fields)
    for payload in (
        transferring(ITEM_1, progress=40.0),  # progress alone
        transferring(ITEM_1, progress=40.0, eta=3.0),  # not a field the listeners show
        transferring(ITEM_1, progress=40.0, eta=3.0),  # nothing
        transferring(ITEM_1, progress=41.0, attempts=2),  # progress and something else
    ):
        async_fire_mqtt_message(hass, item_topic(ITEM_1), payload)
        await hass.async_block_till_done()
    assert heard == ["progress", "all", "progress"]
    heard.clear()
    await async_send(hass, STATUS_TOPIC, status("offline"))
    assert sorted(heard) == ["all", "progress"]


@pytest.mark.parametrize("entry_options", [{CONF_ITEM_ENTITIES: True, CONF_RETENTION: 1}])
async def test_retention(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Finished items keep their entities for the retention, then lose them."""
    entry_id = init_integration.entry_id
    # the failed item finished long ago: no entities at all
    assert entity_registry.async_get("sensor.my_seedbox_broken_iso_status") is None
    assert entity_registry.async_get("sensor.my_seedbox_show_s01e01_mkv_status") is not None

    now = time.time()
    await async_send(
        hass,
        item_topic(ITEM_1),
        item(ITEM_1, "done", progress=100.0, finished_at=now, updated_at=now),
    )
    assert hass.states.get("sensor.my_seedbox_show_s01e01_mkv_status").state == "done"
    freezer.tick(timedelta(seconds=40))
    await async_flush(hass)
    assert entity_registry.async_get("sensor.my_seedbox_show_s01e01_mkv_status") is not None
    # done twice (a duplicate update) does not move the deadline
    await async_send(
        hass,
        item_topic(ITEM_1),
        item(ITEM_1, "done", progress=100.0, finished_at=now, updated_at=now + 1),
    )
    freezer.tick(timedelta(seconds=60))
    await async_flush(hass, seconds=31)
    assert entity_registry.async_get("sensor.my_seedbox_show_s01e01_mkv_status") is None
    assert not [e for e in item_entities(entity_registry, entry_id) if ITEM_1 in e.unique_id]
    # further updates of the finished item create nothing
    await async_send(
        hass,
        item_topic(ITEM_1),
        item(ITEM_1, "done", progress=100.0, finished_at=now, updated_at=now + 2),
    )
    assert entity_registry.async_get("sensor.my_seedbox_show_s01e01_mkv_status") is None

    # a retry brings the item, and its entities, back
    await async_send(hass, item_topic(ITEM_1), item(ITEM_1, "queued", updated_at=now + 3))
    assert hass.states.get("sensor.my_seedbox_show_s01e01_mkv_status").state == "queued"

    # running again, it is no longer due for removal
    await async_send(hass, item_topic(ITEM_3), item(ITEM_3, "queued", name="Broken.iso"))
    await async_send(
        hass,
        item_topic(ITEM_3),
        item(ITEM_3, "cancelled", name="Broken.iso", finished_at=time.time()),
    )
    await async_send(hass, item_topic(ITEM_3), item(ITEM_3, "queued", name="Broken.iso"))
    freezer.tick(timedelta(minutes=5))
    await async_flush(hass, seconds=31)
    assert hass.states.get("sensor.my_seedbox_broken_iso_status").state == "queued"


@pytest.mark.parametrize("entry_options", [{CONF_ITEM_ENTITIES: True, CONF_RETENTION: 0}])
async def test_no_retention(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """With retention 0, finished items lose their entities at once."""
    await async_send(
        hass,
        item_topic(ITEM_2),
        item(ITEM_2, "cancelled", name="Film.2021.mkv", seedbox="seedbox2"),
    )
    assert entity_registry.async_get("sensor.second_seedbox_film_2021_mkv_status") is None

    # an item that finishes while its entities are being added removes them once added
    async_fire_mqtt_message(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    for _ in range(3):
        await asyncio.sleep(0)
    async_fire_mqtt_message(
        hass, item_topic(NEW), item(NEW, "cancelled", name="New.mkv", finished_at=time.time())
    )
    await async_flush(hass)
    assert entity_registry.async_get(NEW_STATUS) is None
    assert hass.states.get(NEW_STATUS) is None


@pytest.mark.parametrize("entry_options", [{CONF_ITEM_ENTITIES: False, CONF_RETENTION: 60}])
async def test_items_without_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """With item entities off, items are tracked but get no entities."""
    assert item_entities(entity_registry, init_integration.entry_id) == []
    assert len(init_integration.runtime_data.coordinator.items) == 3


async def test_items_wait_for_the_first_state(
    hass: HomeAssistant,
    setup_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Item entities are added once the state has named the seedbox devices."""
    await async_send(hass, STATUS_TOPIC, status())
    await async_send(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    await async_send(hass, item_topic(NEW), item(NEW, name="New.mkv", priority=3))
    assert entity_registry.async_get(NEW_STATUS) is None
    await async_send(hass, STATE_TOPIC, state())
    assert hass.states.get(NEW_STATUS).state == "queued"


async def test_stale_item_entities_removed_when_synced(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Entities of items the bridge no longer has are removed once all items are in."""
    mock_config_entry.add_to_hass(hass)
    stale = entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"home:item:{'c' * 16}:status", config_entry=mock_config_entry
    )
    kept = entity_registry.async_get_or_create(
        "sensor", DOMAIN, f"home:item:{ITEM_1}:status", config_entry=mock_config_entry
    )
    other = entity_registry.async_get_or_create(
        "sensor", DOMAIN, "home:bridge:queued", config_entry=mock_config_entry
    )
    seedbox_named_item = entity_registry.async_get_or_create(
        "sensor", DOMAIN, "home:seedbox:item:queue_length", config_entry=mock_config_entry
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await async_send(hass, STATUS_TOPIC, status())
    await async_send(hass, STATE_TOPIC, state())  # three items announced
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1))
    assert entity_registry.async_get(stale.entity_id) is not None
    await async_send(hass, item_topic(ITEM_2), item(ITEM_2))
    await async_send(hass, item_topic(ITEM_3), item(ITEM_3))
    coordinator = mock_config_entry.runtime_data.coordinator
    assert coordinator.synced
    assert entity_registry.async_get(stale.entity_id) is None
    assert entity_registry.async_get(kept.entity_id) is not None
    assert entity_registry.async_get(other.entity_id) is not None
    assert entity_registry.async_get(seedbox_named_item.entity_id) is not None


async def test_synced_after_grace(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, mock_config_entry: MockConfigEntry
) -> None:
    """If items never add up to the counts, the model counts as synced after a while."""
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await async_send(hass, STATUS_TOPIC, status())
    await async_send(hass, STATE_TOPIC, state())
    coordinator = mock_config_entry.runtime_data.coordinator
    assert not coordinator.synced
    await async_flush(hass, seconds=61)
    assert coordinator.synced


async def test_item_gone_before_its_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An item removed in the same breath as it appeared gets no entities."""
    async_fire_mqtt_message(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    async_fire_mqtt_message(hass, item_topic(NEW), "")
    await async_flush(hass)
    assert entity_registry.async_get(NEW_STATUS) is None
    # ... and one that comes, goes and comes back gets its entities once
    async_fire_mqtt_message(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    async_fire_mqtt_message(hass, item_topic(NEW), "")
    async_fire_mqtt_message(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    await async_flush(hass)
    assert hass.states.get(NEW_STATUS).state == "queued"
    assert "does not generate unique IDs" not in caplog.text


async def test_entity_removes_itself_if_unwanted(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """An item entity added after its item lost its entities removes itself."""
    coordinator = init_integration.runtime_data.coordinator
    with patch.object(coordinator.item_entities, "has_entities", return_value=False):
        await async_send(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    assert entity_registry.async_get(NEW_STATUS) is None
    assert hass.states.get(NEW_STATUS) is None


async def test_unload_with_items_pending(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """Unloading right after an item arrived adds nothing afterwards."""
    async_fire_mqtt_message(hass, item_topic(NEW), item(NEW, name="New.mkv"))
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await async_flush(hass)
    assert entity_registry.async_get(NEW_STATUS) is None


async def test_immediate_and_cancelled_writes(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """The first change after a quiet second is written at once; a pending write dies
    with its entity."""
    progress = "sensor.my_seedbox_show_s01e01_mkv_progress"
    entity = hass.data["entity_components"]["sensor"].get_entity(progress)
    entity._last_write = 0.0
    async_fire_mqtt_message(hass, item_topic(ITEM_1), transferring(ITEM_1, progress=77.0))
    await hass.async_block_till_done()
    assert hass.states.get(progress).state == "77.0"
    # a write is pending when the item goes away
    async_fire_mqtt_message(hass, item_topic(ITEM_1), transferring(ITEM_1, progress=78.0))
    await hass.async_block_till_done()
    assert entity._write_timer is not None
    await async_send(hass, item_topic(ITEM_1), "")
    assert entity._write_timer is None
    assert hass.states.get(progress) is None


async def test_item_of_unknown_seedbox(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """An item of a seedbox the state does not list goes under the bridge device: no
    stray seedbox device is made for it."""
    await async_send(hass, item_topic(NEW), item(NEW, name="New.mkv", seedbox="seedbox9"))
    entry = entity_registry.async_get("sensor.home_media_bridge_new_mkv_status")
    assert entry is not None
    device = device_registry.async_get(entry.device_id)
    assert device is not None
    assert (DOMAIN, "home") in device.identifiers
    assert q4d_device(hass, "home:seedbox:seedbox9") is None
    await async_send(hass, STATE_TOPIC, state())
    assert hass.states.get("sensor.home_media_bridge_new_mkv_status").state == "queued"
