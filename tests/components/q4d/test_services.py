"""Actions: the commands they publish, and how results, refusals and timeouts map."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from unittest.mock import patch

import pytest
import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient

from custom_components.q4d.const import CONF_BRIDGE_ID, CONF_PREFIX, DOMAIN

from .common import FakeBridge, async_send
from .payloads import ITEM_1, ITEM_2, ITEM_3, STATUS_TOPIC, item_dict, status


@pytest.mark.parametrize(
    ("service", "data", "op", "args"),
    [
        ("retry", {}, "retry", {}),
        ("retry", {"item_id": ITEM_3}, "retry", {"item_id": ITEM_3}),
        ("cancel", {"item_id": ITEM_1.upper()}, "cancel", {"item_id": ITEM_1}),
        (
            "set_priority",
            {"item_id": ITEM_2, "priority": "10"},
            "set_priority",
            {"item_id": ITEM_2, "priority": 10},
        ),
        (
            "set_priority",
            {"item_id": ITEM_2, "priority": -5.0},
            "set_priority",
            {"item_id": ITEM_2, "priority": -5},
        ),
        ("pause", {}, "pause", {}),
        ("pause", {"item_id": ITEM_2}, "pause", {"item_id": ITEM_2}),
        ("resume", {}, "resume", {}),
        ("resume", {"item_id": ITEM_2}, "resume", {"item_id": ITEM_2}),
        ("rescan", {}, "rescan", {}),
        ("rescan", {"seedbox": "seedbox1"}, "rescan", {"seedbox": "seedbox1"}),
    ],
)
async def test_commands(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    service: str,
    data: dict[str, Any],
    op: str,
    args: dict[str, Any],
) -> None:
    """Each action publishes `{id, op, args}` on the command topic (QoS 1, not retained)."""
    fake_bridge.answers[op] = {"ok": True, "result": {"items": ["x"]}}
    await hass.services.async_call(DOMAIN, service, data, blocking=True)
    assert fake_bridge.ops == [(op, args)]
    command = fake_bridge.commands[0]
    assert set(command) == {"id", "op", "args"}
    assert command["id"].startswith("ha-")
    # newer Home Assistant passes more (keyword) arguments: the first four tell it all
    assert ("q4d/bridge/home/command", json.dumps(command), 1, False) in [
        c.args[:4] for c in mqtt_mock.async_publish.call_args_list
    ]

    # with response data the bridge's result comes back
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert response == {"items": ["x"]}


async def test_result_without_object(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A result that is not an object gives empty response data."""
    fake_bridge.answers["pause"] = {"ok": True, "result": None}
    fake_bridge.answers["rescan"] = {"ok": True, "result": []}
    assert (
        await hass.services.async_call(DOMAIN, "pause", {}, blocking=True, return_response=True)
        == {}
    )
    assert (
        await hass.services.async_call(DOMAIN, "rescan", {}, blocking=True, return_response=True)
        == {}
    )


async def test_get_queue(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """get_queue returns the items in a stable, documented shape."""
    failed = item_dict(
        ITEM_3,
        "failed",
        error={"code": "host_key_mismatch", "message": "Host key verification failed"},
    )
    fake_bridge.answers["get_queue"] = {
        "ok": True,
        "result": {
            "items": [
                item_dict(ITEM_1, "transferring", progress=35.0, rate=1.5, eta=18.6),
                failed,
                {"id": "bad"},
                "junk",
            ]
        },
    }
    response = await hass.services.async_call(
        DOMAIN,
        "get_queue",
        {"states": ["transferring", "failed"]},
        blocking=True,
        return_response=True,
    )
    assert fake_bridge.ops == [("get_queue", {"states": ["transferring", "failed"]})]
    assert response == {
        "items": [
            {
                "id": ITEM_1,
                "name": "Show.S01E01.mkv",
                "status": "transferring",
                "progress": 35.0,
                "rate": 1.5,
                "eta": 18.6,
                "seedbox": "seedbox1",
                "destination": "tv",
                "destination_path": "/media/tv/Show.S01E01.mkv",
                "category": "tv-sonarr",
                "size": 1500000000,
                "priority": 0,
                "paused": False,
                "attempts": 0,
                "error": None,
                "received_at": 1700000000.0,
                "finished_at": None,
            },
            {
                "id": ITEM_3,
                "name": "Show.S01E01.mkv",
                "status": "failed",
                "progress": 0.0,
                "rate": 0.0,
                "eta": None,
                "seedbox": "seedbox1",
                "destination": "tv",
                "destination_path": "/media/tv/Show.S01E01.mkv",
                "category": "tv-sonarr",
                "size": 1500000000,
                "priority": 0,
                "paused": False,
                "attempts": 0,
                "error": {"code": "host_key_mismatch", "message": "Host key verification failed"},
                "received_at": 1700000000.0,
                "finished_at": None,
            },
        ]
    }
    fake_bridge.answers["get_queue"] = {"ok": True, "result": {"items": None}}
    response = await hass.services.async_call(
        DOMAIN, "get_queue", {}, blocking=True, return_response=True
    )
    assert response == {"items": []}


async def test_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The bridge refusing a command is a translated HomeAssistantError."""
    fake_bridge.answers["set_priority"] = {
        "ok": False,
        "error": {"code": "invalid_args", "message": "set_priority: value must be at most 100"},
    }
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, "set_priority", {"item_id": ITEM_1, "priority": 5}, blocking=True
        )
    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == "command_failed"
    assert err.value.translation_placeholders == {
        "op": "set_priority",
        "code": "invalid_args",
        "message": "set_priority: value must be at most 100",
    }
    assert str(err.value) == (
        "The q4d bridge refused the set_priority command (invalid_args): "
        "set_priority: value must be at most 100"
    )
    fake_bridge.answers["retry"] = {"ok": False}
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "retry", {}, blocking=True)
    assert err.value.translation_placeholders == {"op": "retry", "code": "error", "message": ""}


async def test_timeout(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """No answer within the time limit is a translated HomeAssistantError."""
    fake_bridge.silent = True
    with (
        patch("custom_components.q4d.bridge_client.COMMAND_TIMEOUT", 0.05),
        pytest.raises(HomeAssistantError) as err,
    ):
        await hass.services.async_call(DOMAIN, "pause", {}, blocking=True)
    assert err.value.translation_key == "command_timeout"
    assert err.value.translation_placeholders == {
        "op": "pause",
        "bridge": "Home media bridge",
        "timeout": "0.05",
    }
    with (
        patch("custom_components.q4d.services.RESCAN_TIMEOUT", 0.05),
        pytest.raises(HomeAssistantError) as err,
    ):
        await hass.services.async_call(DOMAIN, "rescan", {}, blocking=True)
    assert err.value.translation_placeholders["timeout"] == "0.05"
    assert init_integration.runtime_data.coordinator.client._pending == {}


async def test_bridge_offline(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Commands to an offline bridge fail at once, without publishing."""
    await async_send(hass, STATUS_TOPIC, status("offline"))
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "pause", {}, blocking=True)
    assert err.value.translation_key == "bridge_offline"
    assert fake_bridge.commands == []


async def test_unloaded_while_waiting(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Unloading the entry fails commands still waiting for an answer."""
    fake_bridge.silent = True
    task = hass.async_create_task(hass.services.async_call(DOMAIN, "pause", {}, blocking=True))
    for _ in range(10):
        await asyncio.sleep(0)
        if fake_bridge.commands:
            break
    assert fake_bridge.commands
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    with pytest.raises(HomeAssistantError) as err:
        await task
    assert err.value.translation_key == "entry_unloaded"


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("cancel", {}),
        ("cancel", {"item_id": "nothex"}),
        ("cancel", {"item_id": "483d7eec632f74"}),
        ("set_priority", {"item_id": ITEM_1}),
        ("set_priority", {"item_id": ITEM_1, "priority": 101}),
        ("set_priority", {"item_id": ITEM_1, "priority": "high"}),
        ("set_priority", {"item_id": ITEM_1, "priority": 2.7}),
        ("set_priority", {"item_id": ITEM_1, "priority": "2.7"}),
        ("set_priority", {"item_id": ITEM_1, "priority": True}),
        ("set_priority", {"item_id": ITEM_1, "priority": [1]}),
        ("get_queue", {"states": ["lost"]}),
        ("pause", {"unknown": 1}),
    ],
)
async def test_schema(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    service: str,
    data: dict[str, Any],
) -> None:
    """Malformed input is refused before anything is sent."""
    with pytest.raises(vol.Invalid):
        await hass.services.async_call(
            DOMAIN, service, data, blocking=True, return_response=service == "get_queue"
        )
    assert fake_bridge.commands == []


async def test_unknown_item_and_seedbox(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Items and seedboxes the bridge does not have are bad input."""
    assert init_integration.runtime_data.coordinator.synced
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "cancel", {"item_id": "ffffffffffffffff"}, blocking=True
        )
    assert err.value.translation_key == "unknown_item"
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "rescan", {"seedbox": "nope"}, blocking=True)
    assert err.value.translation_key == "unknown_seedbox"
    assert fake_bridge.commands == []


async def test_entry_selection(
    hass: HomeAssistant,
    mqtt_mock: MqttMockHAClient,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
) -> None:
    """The bridge is the one named, or the only one loaded."""
    entry_id = init_integration.entry_id
    await hass.services.async_call(DOMAIN, "pause", {"config_entry_id": entry_id}, blocking=True)
    assert fake_bridge.ops == [("pause", {})]

    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "pause", {"config_entry_id": "nope"}, blocking=True)
    assert err.value.translation_key == "invalid_config_entry"

    other_domain = MockConfigEntry(domain="mqtt_other")
    other_domain.add_to_hass(hass)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "pause", {"config_entry_id": other_domain.entry_id}, blocking=True
        )
    assert err.value.translation_key == "invalid_config_entry"

    second = MockConfigEntry(
        domain=DOMAIN,
        title="Other bridge",
        data={CONF_BRIDGE_ID: "other", CONF_PREFIX: "q4d"},
        unique_id="other",
    )
    second.add_to_hass(hass)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "pause", {"config_entry_id": second.entry_id}, blocking=True
        )
    assert err.value.translation_key == "config_entry_not_loaded"

    assert await hass.config_entries.async_setup(second.entry_id)
    await hass.async_block_till_done()
    assert second.state is ConfigEntryState.LOADED
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "pause", {}, blocking=True)
    assert err.value.translation_key == "several_bridges"

    for entry in (init_integration, second):
        assert await hass.config_entries.async_unload(entry.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "pause", {}, blocking=True)
    assert err.value.translation_key == "no_bridge"
