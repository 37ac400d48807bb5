"""Snapshot and behaviour of the q4d sensor platform."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from pytest_homeassistant_custom_component.typing import MqttMockHAClient
from syrupy.assertion import SnapshotAssertion

from custom_components.q4d.const import DISPATCH_REASONS, DOMAIN
from custom_components.q4d.models import ITEM_STATUSES

from .common import async_flush, async_send
from .payloads import (
    GIB,
    ITEM_1,
    ITEM_2,
    NOW,
    STATE_TOPIC,
    STATUS_TOPIC,
    destination,
    dumps,
    item,
    item_topic,
    state,
    state_dict,
    status,
)
from .payloads import dispatch as dispatch_payload
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


BANDWIDTH = "sensor.home_media_bridge_bandwidth"
SHOW_STATUS = "sensor.my_seedbox_show_s01e01_mkv_status"
FILM_STATUS = "sensor.second_seedbox_film_2021_mkv_status"
BROKEN_STATUS = "sensor.my_seedbox_broken_iso_status"


async def test_bandwidth(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """A bandwidth limit of 0 reads "unlimited"."""
    assert hass.states.get(BANDWIDTH).state == "limited"
    limits = {"max_concurrent": 3, "bandwidth_limit": 0, "per_seedbox": {}}
    await async_send(hass, STATE_TOPIC, state(limits=limits))
    assert hass.states.get(BANDWIDTH).state == "unlimited"
    await async_send(hass, STATE_TOPIC, state(limits={}))
    assert hass.states.get(BANDWIDTH).state == STATE_UNKNOWN


async def test_item_status_follows_the_queue(
    hass: HomeAssistant, init_integration: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    """Pausing the queue shows its queued items as paused, with no item published."""
    assert hass.states.get(FILM_STATUS).state == "queued"
    await async_send(hass, STATE_TOPIC, state(paused=True))
    assert hass.states.get(FILM_STATUS).state == "paused"
    assert hass.states.get(SHOW_STATUS).state == "transferring"  # the bridge stops it
    await async_send(hass, STATE_TOPIC, state())
    assert hass.states.get(FILM_STATUS).state == "queued"

    # an open circuit breaker holds the seedbox's queued items, until its cool-down ends
    await async_send(hass, item_topic(ITEM_2), item(ITEM_2, name="Film.2021.mkv"))
    boxes = state_dict()["seedboxes"]
    boxes["seedbox1"].update(breaker="open", breaker_until=time.time() + 300)
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert hass.states.get(FILM_STATUS).state == "on_hold"
    freezer.tick(timedelta(seconds=301))
    await async_flush(hass, seconds=0)
    await async_flush(hass)
    assert hass.states.get(FILM_STATUS).state == "queued"


async def test_item_status_attributes(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Readable details: units in the keys, the seedbox's name, nothing that is absent."""
    assert dict(hass.states.get(SHOW_STATUS).attributes) == {
        "device_class": "enum",
        "friendly_name": "My seedbox Show.S01E01.mkv status",
        "options": list(ITEM_STATUSES),
        "item_id": ITEM_1,
        "seedbox": "My seedbox",
        "destination": "tv",
        "library_path": "/media/tv/Show.S01E01.mkv",
        "category": "tv-sonarr",
        "size_bytes": 1500000000,
        "priority": 0,
        "attempts": 1,
    }
    failed = hass.states.get(BROKEN_STATUS).attributes
    assert failed["error_code"] == "connection"
    assert failed["error"] == "lftp exit 1: max-retries exceeded"
    assert failed["finished_at"] == "2023-11-14T22:13:25+00:00"

    # done: no error left over, a finish time
    done = item(ITEM_1, "done", finished_at=NOW + 20, updated_at=NOW + 20)
    await async_send(hass, item_topic(ITEM_1), done)
    attributes = hass.states.get(SHOW_STATUS).attributes
    assert "error" not in attributes
    assert "error_code" not in attributes
    assert attributes["finished_at"] == "2023-11-14T22:13:40+00:00"
    # a cancelled item keeps its last attempt's error; it is no longer why
    cancelled = item(
        ITEM_1,
        "cancelled",
        error={"code": "connection", "message": "lftp exit 1"},
        finished_at=NOW + 30,
        updated_at=NOW + 30,
    )
    await async_send(hass, item_topic(ITEM_1), cancelled)
    assert "error" not in hass.states.get(SHOW_STATUS).attributes


DISPATCH = "sensor.my_seedbox_dispatch"
DISPATCH_SCORE = "sensor.my_seedbox_dispatch_score"


async def test_dispatch_sensors(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """How the bridge scores a seedbox's client for new torrents, and why it would or
    would not send it one; only for seedboxes with a client."""
    assert hass.states.get(DISPATCH_SCORE).state == "3.254"
    assert entity_registry.async_get(DISPATCH_SCORE).options["sensor"] == {
        "suggested_display_precision": 1
    }
    dispatch = hass.states.get(DISPATCH)
    assert dispatch.state == "eligible"
    assert dispatch.attributes["options"] == list(DISPATCH_REASONS)
    assert hass.states.get("sensor.second_seedbox_dispatch") is None
    assert hass.states.get("sensor.second_seedbox_dispatch_score") is None

    async def scored(**client: Any) -> tuple[str, str]:
        boxes = state_dict()["seedboxes"]
        boxes["seedbox1"]["client"].update(client)
        await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
        return hass.states.get(DISPATCH_SCORE).state, hass.states.get(DISPATCH).state

    low = dispatch_payload(score=-2.5, eligible=False, reason_code="below_min_free")
    assert await scored(dispatch=low) == ("-2.5", "below_min_free")
    off = dispatch_payload(score=None, eligible=False, reason_code="unreachable")
    assert await scored(reachable=False, dispatch=off) == (STATE_UNKNOWN, "unreachable")
    # a reason newer than this integration
    newer = dispatch_payload(reason_code="rate_limited")
    assert await scored(dispatch=newer) == ("3.254", STATE_UNKNOWN)
    # a bridge from before torrent dispatch
    assert await scored(dispatch=None) == (STATE_UNKNOWN, STATE_UNKNOWN)

    await async_send(hass, STATUS_TOPIC, status("offline"))
    assert hass.states.get(DISPATCH).state == STATE_UNAVAILABLE
    assert hass.states.get(DISPATCH_SCORE).state == STATE_UNAVAILABLE
