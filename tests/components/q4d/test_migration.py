"""Config entry version 2: every entity gets an unambiguous unique id, keeps its entity id."""

from __future__ import annotations

import pytest
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.q4d.config_flow import Q4dConfigFlow
from custom_components.q4d.const import CONF_BRIDGE_ID, CONF_ITEM_ENTITIES, CONF_PREFIX, DOMAIN
from custom_components.q4d.unique_ids import Kind, parse

from .common import async_send
from .payloads import ITEM_1, STATE_TOPIC, STATUS_TOPIC, seedbox, state, state_dict, status

# version 1 unique id -> (device identifier, platform, entity id, version 2 unique id)
OLD_ENTITIES = {
    "home_queued": ("home", "sensor", "sensor.home_media_bridge_queued", "home:bridge:queued"),
    "home_connectivity": (
        "home",
        "binary_sensor",
        "binary_sensor.home_media_bridge_connectivity",
        "home:bridge:connectivity",
    ),
    "home_seedbox1_free_space": (
        "home:seedbox:seedbox1",
        "sensor",
        "sensor.my_seedbox_free_space",
        "home:seedbox:seedbox1:free_space",
    ),
    # a seedbox whose id looks like a destination's: version 1 gave both one unique id
    "home_destination_tv_free_space": (
        "home:seedbox:destination_tv",
        "sensor",
        "sensor.look_alike_free_space",
        "home:seedbox:destination_tv:free_space",
    ),
    "home_destination_movies_free_space": (
        "home",
        "sensor",
        "sensor.home_media_bridge_movies_free_space",
        "home:destination:movies:free_space",
    ),
    f"home_item_{ITEM_1}_status": (
        "home:seedbox:seedbox1",
        "sensor",
        "sensor.my_seedbox_show_s01e01_mkv_status",
        f"home:item:{ITEM_1}:status",
    ),
    f"home_item_{ITEM_1}_cancel": (
        "home:seedbox:seedbox1",
        "button",
        "button.my_seedbox_show_s01e01_mkv_cancel",
        f"home:item:{ITEM_1}:cancel",
    ),
    # an item whose seedbox left: its entities hang on the bridge device
    f"home_item_{'b' * 16}_progress": (
        "home",
        "sensor",
        "sensor.home_media_bridge_old_mkv_progress",
        f"home:item:{'b' * 16}:progress",
    ),
    # a seedbox called "item"
    "home_item_queue_length": (
        "home:seedbox:item",
        "sensor",
        "sensor.item_queue_length",
        "home:seedbox:item:queue_length",
    ),
}


def old_entry(version: int = 1) -> MockConfigEntry:
    """A version 1 entry of bridge `home`."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Home media bridge",
        data={CONF_BRIDGE_ID: "home", CONF_PREFIX: "q4d"},
        unique_id="home",
        version=version,
    )


async def test_migrate_unique_ids(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """Bridge, seedbox, destination and item entities keep their entity ids; the
    entities the integration then adds are the migrated ones, not new ones."""
    entry = old_entry()
    entry.add_to_hass(hass)
    devices = {
        identifier: device_registry.async_get_or_create(
            config_entry_id=entry.entry_id, identifiers={(DOMAIN, identifier)}
        )
        for identifier in {device for device, *_ in OLD_ENTITIES.values()}
    }
    for old_id, (device, platform, entity_id, _new_id) in OLD_ENTITIES.items():
        created = entity_registry.async_get_or_create(
            platform,
            DOMAIN,
            old_id,
            config_entry=entry,
            device_id=devices[device].id,
            suggested_object_id=entity_id.split(".", 1)[1],
        )
        assert created.entity_id == entity_id
    left_alone = [
        entity_registry.async_get_or_create(
            "sensor", DOMAIN, unique_id, config_entry=entry, device_id=device_id
        )
        for unique_id, device_id in (
            ("home_unknown_thing", None),  # on no device
            ("other_thing", devices["home"].id),
            ("other_seedbox_thing", devices["home:seedbox:seedbox1"].id),
            ("home:bridge:waiting", None),  # already current
        )
    ]
    assert len({entity.entity_id for entity in left_alone}) == 4

    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.version == Q4dConfigFlow.VERSION == 2
    # per-item entities became opt-in: an entry that had them keeps them
    assert entry.options[CONF_ITEM_ENTITIES] is True
    for old_id, (_device, platform, entity_id, new_id) in OLD_ENTITIES.items():
        assert entity_registry.async_get_entity_id(platform, DOMAIN, new_id) == entity_id, old_id
        assert entity_registry.async_get_entity_id(platform, DOMAIN, old_id) is None
    for entity in left_alone:
        assert entity_registry.async_get(entity.entity_id).unique_id == entity.unique_id

    # the bridge's entities come back under the migrated ids
    boxes = state_dict()["seedboxes"]
    boxes["destination_tv"] = seedbox("Look-alike")
    await async_send(hass, STATUS_TOPIC, status())
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert hass.states.get("sensor.home_media_bridge_queued") is not None
    assert hass.states.get("sensor.my_seedbox_free_space") is not None
    assert hass.states.get("sensor.look_alike_free_space") is not None
    assert hass.states.get("sensor.home_media_bridge_movies_free_space") is not None
    assert hass.states.get("sensor.home_media_bridge_tv_free_space") is not None
    assert hass.states.get("sensor.my_seedbox_free_space_2") is None


async def test_entry_from_a_newer_version(hass: HomeAssistant, mqtt_mock: MqttMockHAClient) -> None:
    """An entry written by a newer integration is not touched."""
    entry = old_entry(version=3)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.MIGRATION_ERROR
    assert entry.version == 3


@pytest.mark.parametrize(
    ("unique_id", "parts"),
    [
        ("home:bridge:queued", (Kind.BRIDGE, None, "queued")),
        ("home:seedbox:a:b:status", (Kind.SEEDBOX, "a:b", "status")),
        ("home:destination:tv:free_space", (Kind.DESTINATION, "tv", "free_space")),
        (f"home:item:{ITEM_1}:eta", (Kind.ITEM, ITEM_1, "eta")),
        ("home:bridge:", None),
        ("home:seedbox:status", None),
        ("home:other:x:y", None),
        ("away:bridge:queued", None),
        ("home_queued", None),
    ],
)
def test_parse(unique_id: str, parts: tuple[str, str | None, str] | None) -> None:
    """Unique ids split back into their parts; anything else is not ours."""
    assert parse("home", unique_id) == parts
