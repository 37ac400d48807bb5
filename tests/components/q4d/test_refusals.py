"""The completions the bridge refused: a sensor per seedbox with the last reason, bus
events the event entity and device triggers carry, and a repair issue when a seedbox's
completions keep being rejected."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.const import STATE_UNKNOWN
from homeassistant.core import Event, HomeAssistant, ServiceCall, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.q4d.const import DOMAIN

from .common import async_flush, async_send, q4d_device
from .payloads import (
    EVENT_TOPIC,
    ITEM_1,
    NOW,
    STATE_TOPIC,
    event,
    item_dict,
    last_rejection,
    seedbox,
    state,
    state_dict,
)

ENTRY = "01JQ4DENTRY000000000000000"
REJECTED = "sensor.my_seedbox_rejected_completions"
REJECTED_2 = "sensor.second_seedbox_rejected_completions"
DUPLICATES = "sensor.my_seedbox_duplicate_completions"
EVENT_ENTITY = "event.home_media_bridge_transfer"
ISSUE = "completion_rejections_seedbox1"


def rejected(at: float, seedbox_id: str | None = "seedbox1", **extra: Any) -> str:
    """A `rejected` event of the bridge, as intake/intake.py writes it."""
    fields: dict[str, Any] = {
        "reason": "unsafe_path",
        "detail": "remote path '/etc/passwd' is not inside the seedbox roots",
        "topic": f"q4d/seedbox/{seedbox_id}/completed",
        "seedbox": seedbox_id,
        "name": "passwd",
    }
    return event("rejected", None, at=at, **(fields | extra))


def issue(issue_registry: ir.IssueRegistry, issue_id: str = ISSUE) -> ir.IssueEntry | None:
    """The q4d issue with that id."""
    return issue_registry.async_get_issue(DOMAIN, f"{ENTRY}_{issue_id}")


async def test_rejected_completions_sensor(
    hass: HomeAssistant, init_integration: MockConfigEntry, entity_registry: er.EntityRegistry
) -> None:
    """The count of each seedbox, with the last rejection's reason, message and time."""
    sensor = hass.states.get(REJECTED)
    assert sensor.state == "2"
    assert sensor.attributes["last_reason"] == "unsafe_path"
    assert sensor.attributes["last_message"] == (
        "remote path '/etc/passwd' is not inside the seedbox roots"
    )
    assert sensor.attributes["last_rejected_at"] == dt_util.utc_from_timestamp(NOW - 300)
    never = hass.states.get(REJECTED_2)
    assert never.state == "0"
    assert (never.attributes["last_reason"], never.attributes["last_message"]) == (None, None)
    # duplicates: a diagnostic count, off until enabled
    duplicates = entity_registry.async_get(DUPLICATES)
    assert duplicates is not None
    assert duplicates.disabled_by is er.RegistryEntryDisabler.INTEGRATION

    boxes = state_dict()["seedboxes"]
    long_message = "remote path '/x/" + "y" * 400 + "' is not inside the seedbox roots"
    boxes["seedbox1"] = seedbox(
        "My seedbox",
        rejected=3,
        last_rejection=last_rejection(reason="malformed", message=long_message, at=NOW),
    )
    boxes["seedbox2"] = {k: v for k, v in boxes["seedbox2"].items() if k != "rejected"}
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    sensor = hass.states.get(REJECTED)
    assert sensor.state == "3"
    assert sensor.attributes["last_reason"] == "malformed"
    assert sensor.attributes["last_message"] == long_message[:254] + "…"
    assert sensor.attributes["last_rejected_at"] == dt_util.utc_from_timestamp(NOW)
    # a bridge from before the per-seedbox counts
    assert hass.states.get(REJECTED_2).state == STATE_UNKNOWN


async def test_refused_completions_fire(
    hass: HomeAssistant, init_integration: MockConfigEntry, service_calls: list[ServiceCall]
) -> None:
    """Bus events with the seedbox's device, once per bridge event; the event entity
    and the device triggers carry them."""
    fired: list[Event[Any]] = []

    @callback
    def _record(fired_event: Event[Any]) -> None:
        if fired_event.event_type.startswith("q4d_completion_"):
            fired.append(fired_event)

    hass.bus.async_listen("*", _record)
    bridge = q4d_device(hass, "home")
    sb1 = q4d_device(hass, "home:seedbox:seedbox1")
    assert bridge is not None and sb1 is not None
    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: [
                {
                    "trigger": {
                        "platform": "device",
                        "domain": DOMAIN,
                        "device_id": device_id,
                        "type": trigger_type,
                    },
                    "action": {
                        "service": "test.automation",
                        "data_template": {
                            "tag": tag,
                            "reason": "{{ trigger.event.data.reason }}",
                        },
                    },
                }
                for device_id, trigger_type, tag in (
                    (sb1.id, "completion_rejected", "seedbox1 rejected"),
                    (bridge.id, "completion_rejected", "bridge rejected"),
                    (sb1.id, "completion_duplicate", "seedbox1 duplicate"),
                )
            ]
        },
    )
    common = {
        "bridge_id": "home",
        "config_entry_id": init_integration.entry_id,
        "bridge_device_id": bridge.id,
    }
    await async_send(hass, EVENT_TOPIC, rejected(NOW + 1), flush=False)
    await async_send(hass, EVENT_TOPIC, rejected(NOW + 1), flush=False)  # at least once
    await async_flush(hass)
    state = hass.states.get(EVENT_ENTITY)
    assert state.attributes["event_type"] == "completion_rejected"
    assert {
        k: v for k, v in state.attributes.items() if k not in ("event_types", "friendly_name")
    } == {
        "event_type": "completion_rejected",
        "name": "passwd",
        "seedbox": "My seedbox",
        "reason": "unsafe_path",
        "message": "remote path '/etc/passwd' is not inside the seedbox roots",
    }

    queued = item_dict(ITEM_1, "queued")
    await async_send(hass, EVENT_TOPIC, event("duplicate", queued, at=NOW + 2, reason="hash"))
    state = hass.states.get(EVENT_ENTITY)
    assert state.attributes["event_type"] == "completion_duplicate"
    assert state.attributes["reason"] == "hash" and "message" not in state.attributes
    # a seedbox the bridge does not serve has no device; a line that names no seedbox
    await async_send(hass, EVENT_TOPIC, rejected(NOW + 3, "ghost", reason="unknown_seedbox"))
    await async_send(hass, EVENT_TOPIC, rejected(NOW + 4, None, name=None, topic="Down"))

    assert [(e.event_type, e.data) for e in fired] == [
        (
            "q4d_completion_rejected",
            common
            | {
                "device_id": sb1.id,
                "seedbox": "seedbox1",
                "name": "passwd",
                "reason": "unsafe_path",
                "message": "remote path '/etc/passwd' is not inside the seedbox roots",
                "topic": "q4d/seedbox/seedbox1/completed",
                "at": NOW + 1,
            },
        ),
        (
            "q4d_completion_duplicate",
            common
            | {
                "device_id": sb1.id,
                "item_id": ITEM_1,
                "name": "Show.S01E01.mkv",
                "seedbox": "seedbox1",
                "reason": "hash",
                "at": NOW + 2,
            },
        ),
        (
            "q4d_completion_rejected",
            common
            | {
                "device_id": None,
                "seedbox": "ghost",
                "name": "passwd",
                "reason": "unknown_seedbox",
                "message": "remote path '/etc/passwd' is not inside the seedbox roots",
                "topic": "q4d/seedbox/ghost/completed",
                "at": NOW + 3,
            },
        ),
        (
            "q4d_completion_rejected",
            common
            | {
                "device_id": None,
                "seedbox": None,
                "name": None,
                "reason": "unsafe_path",
                "message": "remote path '/etc/passwd' is not inside the seedbox roots",
                "topic": "Down",
                "at": NOW + 4,
            },
        ),
    ]
    assert sorted(call.data["tag"] for call in service_calls) == [
        "bridge rejected",
        "bridge rejected",
        "bridge rejected",
        "seedbox1 duplicate",
        "seedbox1 rejected",
    ]
    assert {call.data["reason"] for call in service_calls} == {
        "unsafe_path",
        "hash",
        "unknown_seedbox",
    }


async def test_repair_when_rejections_keep_coming(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Five rejections of a seedbox within an hour raise an issue; an accepted
    completion of the seedbox clears it, and so does an hour with fewer."""
    now = time.time()
    for n in range(4):
        await async_send(hass, EVENT_TOPIC, rejected(now - 600 + n), flush=False)
    # another seedbox's, and one of more than an hour ago (delivered late)
    await async_send(hass, EVENT_TOPIC, rejected(now, "seedbox2"), flush=False)
    await async_send(hass, EVENT_TOPIC, rejected(now - 3601), flush=False)
    assert issue(issue_registry) is None

    await async_send(hass, EVENT_TOPIC, rejected(now, reason="malformed", detail="not JSON"))
    raised = issue(issue_registry)
    assert raised is not None
    assert raised.severity is ir.IssueSeverity.WARNING
    assert raised.translation_key == "completion_rejections"
    assert raised.translation_placeholders == {
        "seedbox": "My seedbox",
        "count": "5",
        "minutes": "60",
        "reason": "malformed",
        "message": "not JSON",
    }
    assert issue(issue_registry, "completion_rejections_seedbox2") is None

    # a retry is not a completion the bridge accepted; a new one is
    retried = item_dict(ITEM_1, "queued")
    await async_send(hass, EVENT_TOPIC, event("queued", retried, at=now + 1, retry=True))
    assert issue(issue_registry) is not None
    await async_send(hass, EVENT_TOPIC, event("queued", retried, at=now + 2))
    assert issue(issue_registry) is None
    # and the count starts over
    for n in range(4):
        await async_send(hass, EVENT_TOPIC, rejected(now + 10 + n), flush=False)
    await async_flush(hass, seconds=0)
    assert issue(issue_registry) is None
    await async_send(hass, EVENT_TOPIC, rejected(now + 100), flush=False)
    await async_flush(hass, seconds=0)
    assert issue(issue_registry) is not None

    # an hour after the first of those five, four are left in the window
    freezer.tick(timedelta(seconds=3609))
    await async_flush(hass, seconds=0)
    assert issue(issue_registry) is not None
    freezer.tick(timedelta(seconds=2))
    await async_flush(hass, seconds=0)
    assert issue(issue_registry) is None


async def test_repair_leaves_with_its_seedbox(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """A seedbox removed from the bridge takes its issue along; unloading takes all."""
    now = time.time()
    for n in range(5):
        await async_send(hass, EVENT_TOPIC, rejected(now + n), flush=False)
    await async_flush(hass)
    assert issue(issue_registry) is not None
    boxes = state_dict()["seedboxes"]
    del boxes["seedbox1"]
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry) is None
    for n in range(5):  # the seedbox is gone: its rejections are not counted
        await async_send(hass, EVENT_TOPIC, rejected(now + 10 + n), flush=False)
    for n in range(5):
        await async_send(hass, EVENT_TOPIC, rejected(now + 10 + n, "seedbox2"), flush=False)
    await async_flush(hass)
    assert issue(issue_registry) is None
    assert issue(issue_registry, "completion_rejections_seedbox2") is not None

    await hass.config_entries.async_unload(init_integration.entry_id)
    assert issue(issue_registry, "completion_rejections_seedbox2") is None
