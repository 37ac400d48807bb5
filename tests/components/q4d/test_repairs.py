"""Repair issues: raised from what the bridge reports, cleared when it ends."""

from __future__ import annotations

import time
from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.q4d.const import DOMAIN, OFFLINE_ISSUE_AFTER

from .common import async_flush, async_send
from .payloads import (
    GIB,
    ITEM_1,
    ITEM_2,
    ITEM_3,
    STATE_TOPIC,
    STATUS_TOPIC,
    destination,
    dumps,
    item,
    item_topic,
    seedbox,
    ssh,
    state,
    state_dict,
    status,
    transferring,
)

ENTRY = "01JQ4DENTRY000000000000000"
BREAKER = "binary_sensor.my_seedbox_circuit_breaker"
BREAKER_2 = "binary_sensor.second_seedbox_circuit_breaker"


def issue(issue_registry: ir.IssueRegistry, issue_id: str) -> ir.IssueEntry | None:
    """The q4d issue with that id."""
    return issue_registry.async_get_issue(DOMAIN, f"{ENTRY}_{issue_id}")


async def test_bridge_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """Offline for longer than the limit raises an issue; back online clears it."""
    await async_send(hass, STATUS_TOPIC, status("offline"))
    await async_flush(hass, seconds=OFFLINE_ISSUE_AFTER / 2)
    assert issue(issue_registry, "bridge_offline") is None
    # back in time: nothing is raised
    await async_send(hass, STATUS_TOPIC, status("online"))
    await async_flush(hass, seconds=OFFLINE_ISSUE_AFTER + 1)
    assert issue(issue_registry, "bridge_offline") is None

    await async_send(hass, STATUS_TOPIC, status("offline"))
    await async_send(hass, STATUS_TOPIC, status("offline"))  # retained again
    await async_flush(hass, seconds=OFFLINE_ISSUE_AFTER + 1)
    raised = issue(issue_registry, "bridge_offline")
    assert raised is not None
    assert raised.severity is ir.IssueSeverity.ERROR
    assert raised.translation_key == "bridge_offline"
    assert raised.translation_placeholders == {"bridge": "Home media bridge", "minutes": "10"}
    assert not raised.is_fixable

    await async_send(hass, STATUS_TOPIC, status("online"))
    assert issue(issue_registry, "bridge_offline") is None


async def test_bridge_never_seen(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    mock_config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """A bridge that never shows up is reported like an offline one."""
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await async_flush(hass, seconds=OFFLINE_ISSUE_AFTER + 1)
    raised = issue(issue_registry, "bridge_offline")
    assert raised is not None
    assert raised.translation_placeholders == {"bridge": "Home media bridge", "minutes": "10"}
    # unloading removes the entry's issues
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    assert issue(issue_registry, "bridge_offline") is None


async def test_breaker_open(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """An open circuit breaker raises an issue per seedbox until it closes."""
    boxes = state_dict()["seedboxes"]
    boxes["seedbox1"] = seedbox(
        "My seedbox", breaker="open", breaker_until=time.time() + 600, consecutive_failures=5
    )
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    raised = issue(issue_registry, "breaker_open_seedbox1")
    assert raised is not None
    assert raised.severity is ir.IssueSeverity.WARNING
    assert raised.translation_placeholders == {"seedbox": "My seedbox", "failures": "5"}
    assert hass.states.get(BREAKER).state == "on"

    await async_send(hass, STATE_TOPIC, state())
    assert issue(issue_registry, "breaker_open_seedbox1") is None
    assert hass.states.get(BREAKER).state == "off"

    # a seedbox that leaves takes its issue along
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "breaker_open_seedbox1") is not None
    del boxes["seedbox1"]
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "breaker_open_seedbox1") is None


async def test_breaker_cool_down_ends(
    hass: HomeAssistant,
    freezer: FrozenDateTimeFactory,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """The bridge does not re-publish when a cool-down ends: the breaker closes at
    `breaker_until` by itself."""
    now = time.time()
    boxes = state_dict()["seedboxes"]
    boxes["seedbox1"] = seedbox(
        "My seedbox", breaker="open", breaker_until=now + 300, consecutive_failures=5
    )
    boxes["seedbox2"] = seedbox(
        "Second seedbox", breaker="open", breaker_until=now + 600, consecutive_failures=9
    )
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "breaker_open_seedbox1") is not None
    assert issue(issue_registry, "breaker_open_seedbox2") is not None
    assert hass.states.get(BREAKER).state == "on"

    freezer.tick(timedelta(seconds=299))
    await async_flush(hass, seconds=0)
    assert issue(issue_registry, "breaker_open_seedbox1") is not None
    freezer.tick(timedelta(seconds=2))
    await async_flush(hass, seconds=0)
    await async_flush(hass)
    assert issue(issue_registry, "breaker_open_seedbox1") is None
    assert hass.states.get(BREAKER).state == "off"
    assert issue(issue_registry, "breaker_open_seedbox2") is not None
    assert hass.states.get(BREAKER_2).state == "on"

    freezer.tick(timedelta(seconds=300))
    await async_flush(hass, seconds=0)
    await async_flush(hass)
    assert issue(issue_registry, "breaker_open_seedbox2") is None
    assert hass.states.get(BREAKER_2).state == "off"

    # the same stale snapshot again (say, after a reconnect) raises nothing
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "breaker_open_seedbox1") is None
    assert hass.states.get(BREAKER).state == "off"


async def test_destination_short_of_space(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """A destination with less free space than the bridge's margin raises an issue until
    space is freed."""
    assert issue(issue_registry, "destination_space_tv") is None
    short = {"tv": destination(GIB - 1), "movies": destination(None)}
    await async_send(hass, STATE_TOPIC, state(destinations=short))
    raised = issue(issue_registry, "destination_space_tv")
    assert raised is not None
    assert raised.severity is ir.IssueSeverity.WARNING
    assert raised.translation_placeholders == {"destination": "tv"}
    assert issue(issue_registry, "destination_space_movies") is None  # unknown: no issue
    await async_send(hass, STATE_TOPIC, state(destinations=short))
    await async_send(hass, STATE_TOPIC, state())
    assert issue(issue_registry, "destination_space_tv") is None


async def test_items_waiting_for_space(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """Items waiting for free space raise one issue per destination; failed items in the
    history do not."""
    space = {"code": "insufficient_space", "message": "need 1.5 GB, 1 GB free"}
    await async_send(hass, item_topic(ITEM_1), item(ITEM_1, "waiting", error=space))
    raised = issue(issue_registry, "destination_space_tv")
    assert raised is not None
    assert raised.translation_placeholders == {"destination": "tv"}
    await async_send(
        hass,
        item_topic(ITEM_2),
        item(ITEM_2, "waiting", destination="tv", error={"code": "no_space", "message": "x"}),
    )
    await async_send(hass, item_topic(ITEM_1), item(ITEM_1, "waiting", error=space, attempts=2))
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1))
    assert issue(issue_registry, "destination_space_tv") is not None
    # the second item ran out of attempts: it stays failed in the history for days
    await async_send(
        hass,
        item_topic(ITEM_2),
        item(ITEM_2, "failed", destination="tv", error={"code": "no_space", "message": "x"}),
    )
    assert issue(issue_registry, "destination_space_tv") is None
    # waiting for space while the destination is short too: both must end
    await async_send(hass, item_topic(ITEM_1), item(ITEM_1, "waiting", error=space))
    await async_send(hass, STATE_TOPIC, state(destinations={"tv": destination(0)}))
    await async_send(hass, item_topic(ITEM_1), "")
    assert issue(issue_registry, "destination_space_tv") is not None
    await async_send(hass, STATE_TOPIC, state())
    assert issue(issue_registry, "destination_space_tv") is None

    # no destination in the payload
    await async_send(
        hass, item_topic(ITEM_3), item(ITEM_3, "waiting", destination=None, error=space)
    )
    assert issue(issue_registry, "destination_space_default") is not None


async def test_host_key_mismatch_on_ssh_link(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """A held SSH link refused for its host key raises an issue until it connects."""
    refused = ssh(connected=False, error="host_key_mismatch: Host key is not trusted")
    boxes = state_dict()["seedboxes"]
    boxes["seedbox1"]["ssh"] = refused
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    raised = issue(issue_registry, "host_key_mismatch_seedbox1")
    assert raised is not None
    assert raised.severity is ir.IssueSeverity.ERROR
    assert raised.translation_placeholders == {"seedbox": "My seedbox"}
    assert hass.states.get("binary_sensor.my_seedbox_ssh_link").state == "off"
    # a later attempt fails otherwise: the key is still not known to be fixed
    boxes["seedbox1"]["ssh"] = ssh(connected=False, error="connection: timed out")
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "host_key_mismatch_seedbox1") is not None
    # failed items of a seedbox with a link do not count; the link decides
    mismatch = {"code": "host_key_mismatch", "message": "Host key verification failed"}
    await async_send(hass, item_topic(ITEM_3), item(ITEM_3, "failed", error=mismatch))
    await async_send(hass, STATE_TOPIC, state())  # connected
    assert issue(issue_registry, "host_key_mismatch_seedbox1") is None
    assert hass.states.get("binary_sensor.my_seedbox_ssh_link").state == "on"
    # a different error does not raise it
    boxes["seedbox1"]["ssh"] = ssh(connected=False, error="auth_failed: Permission denied")
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "host_key_mismatch_seedbox1") is None


async def test_host_key_mismatch_without_ssh_link(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """Without a held SSH link, a failed item refused for its host key raises an issue
    until it is retried."""
    mismatch = {"code": "host_key_mismatch", "message": "Host key verification failed"}
    await async_send(
        hass, item_topic(ITEM_2), item(ITEM_2, "failed", seedbox="seedbox2", error=mismatch)
    )
    raised = issue(issue_registry, "host_key_mismatch_seedbox2")
    assert raised is not None
    assert raised.translation_placeholders == {"seedbox": "Second seedbox"}
    await async_send(hass, item_topic(ITEM_2), item(ITEM_2, "queued", seedbox="seedbox2"))
    assert issue(issue_registry, "host_key_mismatch_seedbox2") is None
    # an older bridge reports no link at all: the failed items decide
    await async_send(
        hass, item_topic(ITEM_3), item(ITEM_3, "failed", seedbox="seedbox1", error=mismatch)
    )
    assert issue(issue_registry, "host_key_mismatch_seedbox1") is None
    old = state_dict()
    for box in old["seedboxes"].values():
        del box["ssh"]
    await async_send(hass, STATE_TOPIC, dumps(old))
    assert issue(issue_registry, "host_key_mismatch_seedbox1") is not None
    # a seedbox the bridge no longer has takes its issue along
    del old["seedboxes"]["seedbox1"]
    await async_send(hass, STATE_TOPIC, dumps(old))
    assert issue(issue_registry, "host_key_mismatch_seedbox1") is None
