"""Set-up, unload, availability and devices of the q4d integration."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.components import mqtt
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import (
    MqttMockHAClient,
    WebSocketGenerator,
)

from custom_components.q4d.const import (
    CONF_ITEM_ENTITIES,
    CONF_RETENTION,
    DOMAIN,
    ITEM_STATES,
    SYNC_GRACE,
)

from .common import async_flush, async_remove_device, async_send, q4d_device
from .payloads import (
    ITEM_1,
    ITEM_2,
    ITEM_3,
    NOW,
    STATE_TOPIC,
    STATUS_TOPIC,
    item,
    item_topic,
    seedbox,
    state,
    state_dict,
    status,
    transferring,
)

CONNECTIVITY = "binary_sensor.home_media_bridge_connectivity"
QUEUED = "sensor.home_media_bridge_queued"
ITEM_STATUS = "sensor.my_seedbox_show_s01e01_mkv_status"
FILM = "sensor.second_seedbox_film_2021_mkv_status"
NEW = "aaaaaaaaaaaaaaaa"


async def test_setup_and_unload(
    hass: HomeAssistant, mqtt_mock: MqttMockHAClient, init_integration: MockConfigEntry
) -> None:
    """The entry loads, subscribes to the bridge's topics, and unloads cleanly."""
    assert init_integration.state is ConfigEntryState.LOADED
    subscribed = {call[0][0] for call in mqtt_mock.async_subscribe.call_args_list}
    assert {
        "q4d/bridge/home/status",
        "q4d/bridge/home/state",
        "q4d/bridge/home/item/+",
        "q4d/bridge/home/event",
        "q4d/bridge/home/command/result",
    } <= subscribed
    assert hass.states.get(QUEUED).state == "1"

    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED

    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(QUEUED).state == STATE_UNAVAILABLE
    client = hass.data["mqtt"].client
    assert not [t for t in client._simple_subscriptions if t.startswith("q4d/bridge/home/")]
    assert not [s for s in client._wildcard_subscriptions if s.topic.startswith("q4d/bridge/home/")]
    # nothing listens any more: a new state changes nothing
    await async_send(hass, STATE_TOPIC, state(counts={"queued": 5}))
    assert hass.states.get(QUEUED).state == STATE_UNAVAILABLE


async def test_mqtt_not_available(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    """Without the MQTT integration the entry is retried later."""
    assert await async_setup_component(hass, "homeassistant", {})
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_offline_and_back(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Entities go unavailable with the bridge's last will and recover without a reload."""
    assert hass.states.get(CONNECTIVITY).state == STATE_ON
    assert hass.states.get(ITEM_STATUS).state == "transferring"

    await async_send(hass, STATUS_TOPIC, status("offline"))
    assert hass.states.get(CONNECTIVITY).state == STATE_OFF
    assert hass.states.get(QUEUED).state == STATE_UNAVAILABLE
    assert hass.states.get(ITEM_STATUS).state == STATE_UNAVAILABLE

    await async_send(hass, STATUS_TOPIC, status("online"))
    assert hass.states.get(CONNECTIVITY).state == STATE_ON
    assert hass.states.get(QUEUED).state == "1"
    assert hass.states.get(ITEM_STATUS).state == "transferring"


async def test_mqtt_disconnect(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """Losing the broker makes everything unavailable until it is back."""
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, False)
    await async_flush(hass)
    assert hass.states.get(CONNECTIVITY).state == STATE_UNAVAILABLE
    assert hass.states.get(QUEUED).state == STATE_UNAVAILABLE
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, False)  # no change
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, True)
    await async_flush(hass)
    assert hass.states.get(CONNECTIVITY).state == STATE_ON
    assert hass.states.get(QUEUED).state == "1"


async def test_invalid_payloads_are_ignored(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """Payloads that are not the protocol are logged and change nothing."""
    for topic, payload in (
        (STATUS_TOPIC, "not json"),
        (STATUS_TOPIC, '{"v": 1, "state": "sleeping", "bridge_id": "home"}'),
        (STATUS_TOPIC, status(bridge_id="other")),
        (STATUS_TOPIC, '{"v": 2, "state": "online", "bridge_id": "home"}'),
        (STATUS_TOPIC, "[1, 2]"),
        (STATUS_TOPIC, ""),
        (STATE_TOPIC, '{"v": 1}'),
        (STATE_TOPIC, '{"v": 1, "counts": {}}'),
        (STATE_TOPIC, ""),
        (item_topic(ITEM_1), '{"v": 1, "id": "483d7eec632f7436", "state": "lost"}'),
        (item_topic(ITEM_1), '{"v": 1, "id": "483d7eec632f7436"}'),
        (item_topic("ffffffffffffffff"), transferring(ITEM_1)),
        ("q4d/bridge/home/event", "{"),
        ("q4d/bridge/home/event", '{"v": 1}'),
        ("q4d/bridge/home/command/result", '{"v": 1, "id": "x"}'),
        ("q4d/bridge/home/command/result", '{"v": 1, "id": null, "ok": false}'),
        ("q4d/bridge/home/command/result", '{"v": 1, "id": "unknown", "ok": true}'),
    ):
        await async_send(hass, topic, payload, flush=False)
    await async_flush(hass)
    assert hass.states.get(CONNECTIVITY).state == STATE_ON
    assert hass.states.get(QUEUED).state == "1"
    assert hass.states.get(ITEM_STATUS).state == "transferring"
    assert "Ignoring invalid status" in caplog.text
    assert "Ignoring status for bridge other" in caplog.text
    assert "Ignoring invalid state" in caplog.text
    assert "Ignoring invalid item" in caplog.text
    assert "published on the topic of" in caplog.text
    assert "Ignoring invalid event" in caplog.text
    assert "could not read a command" in caplog.text


async def test_devices(
    hass: HomeAssistant, init_integration: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """A bridge device, and one device per seedbox via the bridge."""
    bridge = q4d_device(hass, "home")
    assert bridge is not None
    assert bridge.name == "Home media bridge"
    assert bridge.sw_version == "0.1.0"
    sb1 = q4d_device(hass, "home:seedbox:seedbox1")
    sb2 = q4d_device(hass, "home:seedbox:seedbox2")
    assert sb1 is not None and sb2 is not None
    assert sb1.name == "My seedbox"
    assert sb1.via_device_id == bridge.id
    assert sb2.via_device_id == bridge.id

    # a new version is picked up from the status
    await async_send(hass, STATUS_TOPIC, status(version="0.2.0"))
    assert device_registry.async_get(bridge.id).sw_version == "0.2.0"
    # a renamed seedbox renames its device
    renamed = state_dict()
    renamed["seedboxes"]["seedbox2"]["name"] = "Renamed"
    await async_send(hass, STATE_TOPIC, state(seedboxes=renamed["seedboxes"]))
    assert device_registry.async_get(sb2.id).name == "Renamed"


@pytest.mark.parametrize(
    ("client", "model", "version"),
    [
        ({"type": "transmission", "version": "4.0.6"}, "Transmission", "4.0.6"),
        ({"type": "deluge", "version": "2.1.1"}, "Deluge", "2.1.1"),
        ({"type": "rtorrent", "version": "0.9.8"}, "rTorrent", "0.9.8"),
        ({"type": "aria2", "version": "1.37"}, "aria2", "1.37"),  # a newer bridge's
        # not asked yet, or unreachable: the version known before stays
        ({"version": None, "reachable": False}, "qBittorrent", "5.0.4"),
        ({"type": None, "version": None}, "Seedbox", "5.0.4"),  # an older bridge
    ],
)
async def test_seedbox_device_shows_its_client(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    client: dict[str, Any],
    model: str,
    version: str,
) -> None:
    """A seedbox device's model is its torrent client, its version the client's."""
    device = q4d_device(hass, "home:seedbox:seedbox1")
    assert device is not None
    assert (device.model, device.sw_version) == ("qBittorrent", "5.0.4")
    sb2 = q4d_device(hass, "home:seedbox:seedbox2")
    assert sb2 is not None
    assert (sb2.model, sb2.sw_version) == ("Seedbox", None)  # no torrent client

    boxes = state_dict()["seedboxes"]
    boxes["seedbox1"]["client"].update(client)
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    device = device_registry.async_get(device.id)
    assert device is not None
    assert (device.model, device.sw_version) == (model, version)

    # its client removed from the bridge's configuration
    boxes["seedbox1"]["client"] = None
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    device = device_registry.async_get(device.id)
    assert device is not None
    assert (device.model, device.sw_version) == ("Seedbox", None)


async def test_seedbox_appears_and_disappears(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Seedbox devices follow the state snapshot: added as they appear, removed when gone."""
    boxes = state_dict()["seedboxes"]
    boxes["seedbox3"] = seedbox("Third", with_client=True)
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    sb3 = q4d_device(hass, "home:seedbox:seedbox3")
    assert sb3 is not None
    assert hass.states.get("sensor.third_free_space") is not None

    del boxes["seedbox3"]
    del boxes["seedbox2"]
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert q4d_device(hass, "home:seedbox:seedbox3") is None
    assert q4d_device(hass, "home:seedbox:seedbox2") is None
    assert entity_registry.async_get("sensor.third_free_space") is None
    assert hass.states.get("sensor.third_free_space") is None

    # and it comes back with its entities
    boxes["seedbox3"] = seedbox("Third", with_client=True)
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert hass.states.get("sensor.third_free_space") is not None


async def test_stale_seedbox_device_removed_on_startup(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mock_config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """A seedbox device left from before is removed once the first state lacks it."""
    mock_config_entry.add_to_hass(hass)
    device_registry.async_get_or_create(
        config_entry_id=mock_config_entry.entry_id,
        identifiers={(DOMAIN, "home:seedbox:gone")},
        name="Gone",
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await async_send(hass, STATUS_TOPIC, status())
    assert q4d_device(hass, "home:seedbox:gone")
    await async_send(hass, STATE_TOPIC, state())
    assert q4d_device(hass, "home:seedbox:gone") is None


async def test_remove_device(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """The bridge and live seedboxes cannot be removed by hand; stale devices can."""
    assert await async_setup_component(hass, "config", {})
    client = await hass_ws_client(hass)
    entry_id = init_integration.entry_id

    async def remove(device_id: str) -> bool:
        return await async_remove_device(client, device_id, entry_id)

    bridge = q4d_device(hass, "home")
    sb1 = q4d_device(hass, "home:seedbox:seedbox1")
    assert bridge is not None and sb1 is not None
    assert not await remove(bridge.id)
    assert not await remove(sb1.id)
    stale = device_registry.async_get_or_create(
        config_entry_id=entry_id, identifiers={(DOMAIN, "home:seedbox:old")}
    )
    assert await remove(stale.id)
    other = device_registry.async_get_or_create(
        config_entry_id=entry_id, identifiers={("other", "thing")}
    )
    assert await remove(other.id)


@pytest.mark.parametrize("entry_options", [{CONF_ITEM_ENTITIES: True, CONF_RETENTION: 5}])
async def test_options_update_reloads(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """Turning item entities off reloads the entry and removes them."""
    assert entity_registry.async_get(ITEM_STATUS) is not None
    hass.config_entries.async_update_entry(
        init_integration, options={CONF_ITEM_ENTITIES: False, CONF_RETENTION: 5}
    )
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED
    assert entity_registry.async_get(ITEM_STATUS) is None
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1, progress=50.0))
    assert entity_registry.async_get(ITEM_STATUS) is None

    # a title change needs no reload
    coordinator = init_integration.runtime_data.coordinator
    hass.config_entries.async_update_entry(init_integration, title="Renamed")
    await hass.async_block_till_done()
    assert init_integration.runtime_data.coordinator is coordinator


async def test_version_kept_until_the_status(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mock_config_entry: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """A restart does not wipe the bridge version stored from last time."""
    mock_config_entry.add_to_hass(hass)
    device_registry.async_get_or_create(
        config_entry_id=mock_config_entry.entry_id,
        identifiers={(DOMAIN, "home")},
        name="Home media bridge",
        sw_version="0.0.9",
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    bridge = q4d_device(hass, "home")
    assert bridge is not None
    assert bridge.sw_version == "0.0.9"
    await async_send(hass, STATUS_TOPIC, status())
    assert device_registry.async_get(bridge.id).sw_version == "0.1.0"


async def test_seedbox_leaves_with_items(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The items of a seedbox that leaves keep their entities, on the bridge device; a
    stray seedbox device goes at the next state, not only at start-up."""
    film = "sensor.second_seedbox_film_2021_mkv_status"
    bridge = q4d_device(hass, "home")
    assert bridge is not None
    assert entity_registry.async_get(film) is not None
    boxes = state_dict()["seedboxes"]
    del boxes["seedbox2"]
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert q4d_device(hass, "home:seedbox:seedbox2") is None
    assert entity_registry.async_get("sensor.second_seedbox_queue_length") is None
    entry = entity_registry.async_get(film)
    assert entry is not None
    assert entry.device_id == bridge.id
    assert hass.states.get(film).state == "queued"
    # the item still follows its updates, and a new item of that seedbox makes no device
    await async_send(
        hass,
        item_topic(ITEM_2),
        item(ITEM_2, "failed", name="Film.2021.mkv", seedbox="seedbox2", finished_at=NOW + 9),
    )
    assert hass.states.get(film).state == "failed"
    await async_send(
        hass, item_topic(NEW), item(NEW, name="New.mkv", seedbox="seedbox2", updated_at=NOW + 9)
    )
    new = entity_registry.async_get("sensor.home_media_bridge_new_mkv_status")
    assert new is not None
    assert new.device_id == bridge.id
    assert q4d_device(hass, "home:seedbox:seedbox2") is None

    stray = device_registry.async_get_or_create(
        config_entry_id=init_integration.entry_id, identifiers={(DOMAIN, "home:seedbox:stray")}
    )
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert device_registry.async_get(stray.id) is None


def counts(**values: int) -> dict[str, int]:
    """Item counts of a state snapshot."""
    return {s: values.get(s, 0) for s in ITEM_STATES}


async def test_items_removed_while_disconnected(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """Items cleared while Home Assistant was off the broker are forgotten after the
    reconnect: their retained messages do not come again."""
    coordinator = init_integration.runtime_data.coordinator
    assert coordinator.synced
    assert entity_registry.async_get(FILM) is not None
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, False)
    await async_flush(hass, seconds=SYNC_GRACE + 1)  # no sync while disconnected
    assert ITEM_2 in coordinator.items
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, True)
    await async_flush(hass)
    assert not coordinator.synced
    # the broker delivers the retained messages again: all but the cleared item
    await async_send(hass, STATUS_TOPIC, status())
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1))
    await async_send(hass, item_topic(ITEM_3), "not json")  # still there, even unreadable
    assert ITEM_2 in coordinator.items
    assert not coordinator.synced
    # a state that counts no more items than came: in sync at once
    await async_send(hass, STATE_TOPIC, state(counts=counts(transferring=1, failed=1)))
    assert coordinator.synced
    assert ITEM_2 not in coordinator.items
    assert ITEM_3 in coordinator.items
    assert entity_registry.async_get(FILM) is None
    assert hass.states.get(FILM) is None
    assert hass.states.get(ITEM_STATUS).state == "transferring"


async def test_items_removed_while_disconnected_after_grace(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """Without a state that adds up, unseen items go when the grace period ends."""
    coordinator = init_integration.runtime_data.coordinator
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, False)
    async_dispatcher_send(hass, mqtt.MQTT_CONNECTION_STATE, True)
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1))
    await async_send(hass, item_topic(ITEM_3), "")  # removed now: gone at once
    await async_send(hass, STATE_TOPIC, state())  # still counts three
    assert ITEM_3 not in coordinator.items
    await async_flush(hass, seconds=SYNC_GRACE / 2)
    assert ITEM_2 in coordinator.items
    await async_flush(hass, seconds=SYNC_GRACE + 1)
    assert coordinator.synced
    assert set(coordinator.items) == {ITEM_1}
    assert entity_registry.async_get(FILM) is None


async def test_items_removed_while_bridge_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """Back online, the bridge re-publishes every item it has; the others are forgotten."""
    coordinator = init_integration.runtime_data.coordinator
    await async_send(hass, STATUS_TOPIC, status("offline"))
    assert coordinator.synced
    await async_send(hass, STATUS_TOPIC, status())
    assert not coordinator.synced
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1))
    await async_send(hass, item_topic(ITEM_3), item(ITEM_3, "failed", name="Broken.iso"))
    await async_flush(hass, seconds=SYNC_GRACE + 1)
    assert coordinator.synced
    assert set(coordinator.items) == {ITEM_1, ITEM_3}
    assert entity_registry.async_get(FILM) is None
    # a retained online status delivered again changes nothing
    await async_send(hass, STATUS_TOPIC, status())
    assert coordinator.synced


async def test_unsupported_version_logged_once(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """Payloads of another protocol version are ignored, with one warning per kind."""
    v2 = '{"v": 2, "state": "online", "bridge_id": "home", "id": "x", "ok": true}'
    topics = (
        STATUS_TOPIC,
        STATE_TOPIC,
        item_topic(ITEM_1),
        "q4d/bridge/home/event",
        "q4d/bridge/home/command/result",
    )
    for _ in range(3):
        for topic in topics:
            await async_send(hass, topic, v2, flush=False)
    await async_flush(hass)
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and "unsupported protocol version 2" in r.getMessage()
    ]
    assert len(warnings) == 5
    for kind in ("status", "state", "item", "event", "command result"):
        assert sum(w.startswith(f"Ignoring {kind} payloads") for w in warnings) == 1, kind
    assert hass.states.get(CONNECTIVITY).state == STATE_ON
    assert hass.states.get(ITEM_STATUS).state == "transferring"
