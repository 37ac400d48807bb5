"""Repair issues: raised from what the bridge reports, cleared when it ends."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.q4d.const import DOMAIN, OFFLINE_ISSUE_AFTER

from .common import async_flush, async_send
from .payloads import (
    ITEM_1,
    ITEM_2,
    ITEM_3,
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

ENTRY = "01JQ4DENTRY000000000000000"


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
        "My seedbox", breaker="open", breaker_until=1.0, consecutive_failures=5
    )
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    raised = issue(issue_registry, "breaker_open_seedbox1")
    assert raised is not None
    assert raised.severity is ir.IssueSeverity.WARNING
    assert raised.translation_placeholders == {"seedbox": "My seedbox", "failures": "5"}
    assert hass.states.get("binary_sensor.my_seedbox_circuit_breaker").state == "on"

    await async_send(hass, STATE_TOPIC, state())
    assert issue(issue_registry, "breaker_open_seedbox1") is None

    # a seedbox that leaves takes its issue along
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "breaker_open_seedbox1") is not None
    del boxes["seedbox1"]
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    assert issue(issue_registry, "breaker_open_seedbox1") is None


async def test_destination_space(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """Items waiting for free space raise one issue per destination."""
    space = {"code": "insufficient_space", "message": "need 1.5 GB, 1 GB free"}
    await async_send(hass, item_topic(ITEM_1), item(ITEM_1, "waiting", error=space))
    raised = issue(issue_registry, "destination_space_tv")
    assert raised is not None
    assert raised.translation_placeholders == {"destination": "tv", "item": "Show.S01E01.mkv"}
    await async_send(
        hass,
        item_topic(ITEM_2),
        item(ITEM_2, "failed", destination="tv", error={"code": "no_space", "message": "x"}),
    )
    await async_send(hass, item_topic(ITEM_1), item(ITEM_1, "waiting", error=space, attempts=2))
    await async_send(hass, item_topic(ITEM_1), transferring(ITEM_1))
    assert issue(issue_registry, "destination_space_tv") is not None
    await async_send(hass, item_topic(ITEM_2), "")
    assert issue(issue_registry, "destination_space_tv") is None

    # no destination in the payload
    await async_send(
        hass, item_topic(ITEM_3), item(ITEM_3, "waiting", destination=None, error=space)
    )
    assert issue(issue_registry, "destination_space_default") is not None


async def test_host_key_mismatch(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """A failed item refused for its host key raises an issue until it is retried."""
    mismatch = {"code": "host_key_mismatch", "message": "Host key verification failed"}
    await async_send(hass, item_topic(ITEM_3), item(ITEM_3, "failed", error=mismatch))
    raised = issue(issue_registry, "host_key_mismatch_seedbox1")
    assert raised is not None
    assert raised.severity is ir.IssueSeverity.ERROR
    assert raised.translation_placeholders == {"seedbox": "My seedbox"}
    await async_send(hass, item_topic(ITEM_3), item(ITEM_3, "queued"))
    assert issue(issue_registry, "host_key_mismatch_seedbox1") is None
