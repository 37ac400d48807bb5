"""Load: 10,000 items through the registry, and 1000 live items updating every second.

asyncio's debug mode (on for every other test) records a traceback for every task
and callback; with tens of thousands of entities it triples the run time, so it is
off here. So are the harness's INFO logs: Home Assistant logs at WARNING unless
started verbose, and its entity registry logs one INFO line per new entity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import EVENT_STATE_CHANGED, STATE_UNAVAILABLE
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.util.async_ import get_scheduled_timer_handles
from paho.mqtt.client import MQTTMessage
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
)

from custom_components.q4d.const import CONF_ITEM_ENTITIES, CONF_RETENTION

from .payloads import STATE_TOPIC, item, item_topic, state, transferring

ITEM_KEYS = 6  # status, progress, rate, eta sensors; retry, cancel buttons


@pytest.fixture(autouse=True)
async def enable_event_loop_debug() -> None:
    """Keep asyncio's debug mode off for load tests (overrides the harness's fixture)."""
    asyncio.get_running_loop().set_debug(False)


@pytest.fixture(autouse=True)
def default_log_level() -> Iterator[None]:
    """Log at Home Assistant's default level, not the harness's INFO."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    yield
    root.setLevel(level)


def mqtt_message(topic: str, payload: str) -> MQTTMessage:
    """A message as the MQTT client receives it from the broker."""
    message = MQTTMessage(topic=topic.encode())
    message.payload = payload.encode()
    return message


def mqtt_delivery(hass: HomeAssistant) -> Callable[[MQTTMessage], None]:
    """Hand messages to Home Assistant's MQTT client as `async_fire_mqtt_message` does,
    without the `Mock()` it makes for each, and the frozen clock's timestamp: together
    they cost more than the client's and the integration's work on the message."""
    on_message = hass.data["mqtt"].client._async_mqtt_on_message  # as the harness does
    return lambda message: on_message(None, None, message)


@callback
def async_run_due_timers(hass: HomeAssistant) -> None:
    """Run the loop's timers due by the frozen clock: `async_fire_time_changed` without
    the two `mock.patch`es it wraps around each (the time trackers' clock, which these
    timers ignore). With 2000 throttled writes a second, those cost more than the
    writes themselves, and Home Assistant's loop does not pay them."""
    now = hass.loop.time()
    for handle in list(get_scheduled_timer_handles(hass.loop)):
        if not handle.cancelled() and handle.when() <= now:
            handle._run()  # as the harness does
            handle.cancel()


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("entry_options", [{CONF_ITEM_ENTITIES: True, CONF_RETENTION: 1}])
async def test_registry_stays_bounded(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """10,000 items come and go; the registry never holds more than one batch of them."""
    entry_id = init_integration.entry_id
    coordinator = init_integration.runtime_data.coordinator
    base = len(er.async_entries_for_config_entry(entity_registry, entry_id))
    batch = 1000
    peak = 0
    for start in range(0, 10_000, batch):
        ids = [f"{n:016x}" for n in range(start + 0x1000, start + 0x1000 + batch)]
        for item_id in ids:
            async_fire_mqtt_message(
                hass, item_topic(item_id), item(item_id, name=f"Item {item_id}")
            )
        await hass.async_block_till_done()
        peak = max(peak, len(er.async_entries_for_config_entry(entity_registry, entry_id)))
        now = time.time()
        for item_id in ids:
            async_fire_mqtt_message(
                hass,
                item_topic(item_id),
                item(item_id, "done", name=f"Item {item_id}", finished_at=now, updated_at=now + 1),
            )
        await hass.async_block_till_done()
        freezer.tick(timedelta(minutes=2))
        async_fire_time_changed(hass)
        await hass.async_block_till_done()
        assert coordinator.item_entities.count == 2  # ITEM_1 and ITEM_2 are still live
    assert peak == base + batch * ITEM_KEYS
    assert len(er.async_entries_for_config_entry(entity_registry, entry_id)) == base
    assert len(coordinator.items) == 10_003
    # the bridge prunes them: the model shrinks too
    for n in range(0x1000, 0x1000 + 10_000):
        async_fire_mqtt_message(hass, item_topic(f"{n:016x}"), "")
    await hass.async_block_till_done()
    assert len(coordinator.items) == 3
    assert hass.states.get("sensor.my_seedbox_show_s01e01_mkv_status").state != STATE_UNAVAILABLE


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "entry_options",
    [{CONF_ITEM_ENTITIES: True}, {}],
    ids=["with item entities", "default: card only"],
)
async def test_thousand_live_items(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    init_integration: MockConfigEntry,
    entry_options: dict[str, Any],
) -> None:
    """1000 transferring items, each updated by the bridge every second: set-up time, and
    state writes per second (never more than one per entity). By default (no per-item
    entities) the items live in the model only, for the card: no entity writes at all.

    The CPU figures (bench/ha_load.py prints them) leave out what the harness adds and
    a running Home Assistant does not: making the messages, a mock per message and per
    timer, INFO logging."""
    item_entities = entry_options.get(CONF_ITEM_ENTITIES, False)
    base_sensors = len(hass.states.async_entity_ids("sensor"))
    ids = [f"{n:016x}" for n in range(0x1000, 0x1000 + 1000)]
    # The bridge's messages are made before the clock starts: only what Home Assistant
    # and the integration do with them is timed.
    arrive = [
        mqtt_message(item_topic(i), transferring(i, name=f"Item {i}", progress=0.0)) for i in ids
    ]
    arrive.append(mqtt_message(STATE_TOPIC, state()))
    seconds = 5
    updates = [
        [
            mqtt_message(
                item_topic(i),
                transferring(i, name=f"Item {i}", progress=progress, eta=100.0 - progress),
            )
            for i in ids
        ]
        # the bridge sends each item at most once a second; here, twice within the second
        for second in range(1, seconds + 1)
        for progress in (second * 10.0 - 5, second * 10.0)
    ]
    deliver = mqtt_delivery(hass)

    started = time.process_time()
    for message in arrive:
        deliver(message)
    await hass.async_block_till_done()
    setup_seconds = time.process_time() - started
    sensors = len(hass.states.async_entity_ids("sensor")) - base_sensors
    assert sensors == (4 * len(ids) if item_entities else 0)  # status, progress, rate, eta

    writes: Counter[str] = Counter()

    @callback
    def _count(event: Event[Any]) -> None:
        writes[event.data["entity_id"]] += 1

    hass.bus.async_listen(EVENT_STATE_CHANGED, _count)
    started = time.process_time()
    for second in range(seconds):
        for batch in updates[2 * second : 2 * second + 2]:
            for message in batch:
                deliver(message)
        await hass.async_block_till_done()
        freezer.tick(timedelta(seconds=1))
        async_run_due_timers(hass)
        await hass.async_block_till_done()
    busy = time.process_time() - started
    per_second = sum(writes.values()) / seconds
    figures = {
        "scenario": "with item entities" if item_entities else "default, no item entities",
        "items": len(ids),
        "messages_per_second": 2 * len(ids),
        "setup_cpu_s": setup_seconds,
        "update_cpu_ms_per_s": busy / seconds * 1000,
        "writes_per_s": per_second,
        "max_writes_per_entity": max(writes.values(), default=0),
        "seconds": seconds,
    }
    print(
        f"\n1000 live items ({figures['scenario']}):"
        f" set up in {setup_seconds:.1f} s; "
        f"{per_second:.0f} state writes per simulated second "
        f"({figures['max_writes_per_entity']} at most per entity in {seconds} s); "
        f"{figures['update_cpu_ms_per_s']:.0f} ms of CPU per second of updates"
        f"\nha_load {json.dumps(figures)}"  # read by bench/ha_load.py
    )
    if item_entities:
        # progress and time left change for every item: two writes per item per second
        assert per_second == 2 * len(ids)
        assert max(writes.values()) <= seconds
    else:
        assert not any(entity_id.endswith(("_progress", "_time_left")) for entity_id in writes)
