"""Actions: the commands they publish, and how results, refusals and timeouts map."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import pytest
import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import MqttMockHAClient, WebSocketGenerator

from custom_components.q4d.const import CONF_BRIDGE_ID, CONF_PREFIX, DOMAIN

from .common import FakeBridge, async_send
from .payloads import ITEM_1, ITEM_2, ITEM_3, NOW, STATUS_TOPIC, item, item_dict, item_topic, status


@pytest.mark.parametrize(
    ("service", "data", "op", "args", "response"),
    [
        ("retry", {}, "retry", {}, {"items": ["x"], "count": 1, "names": ["x"]}),
        ("retry", {"item_id": ITEM_3}, "retry", {"item_id": ITEM_3}, {"items": ["x"]}),
        (
            "retry",
            {"item_id": ITEM_3, "force": True},
            "retry",
            {"item_id": ITEM_3, "force": True},
            {"items": ["x"]},
        ),
        ("cancel", {"item_id": ITEM_1.upper()}, "cancel", {"item_id": ITEM_1}, {"items": ["x"]}),
        (
            "set_priority",
            {"item_id": ITEM_2, "priority": "10"},
            "set_priority",
            {"item_id": ITEM_2, "priority": 10},
            {"items": ["x"]},
        ),
        (
            "set_priority",
            {"item_id": ITEM_2, "priority": -5.0},
            "set_priority",
            {"item_id": ITEM_2, "priority": -5},
            {"items": ["x"]},
        ),
        ("pause", {}, "pause", {}, {"items": ["x"]}),
        ("pause", {"item_id": ITEM_2}, "pause", {"item_id": ITEM_2}, {"items": ["x"]}),
        ("resume", {}, "resume", {}, {"items": ["x"]}),
        ("resume", {"item_id": ITEM_2}, "resume", {"item_id": ITEM_2}, {"items": ["x"]}),
        ("rescan", {}, "rescan", {}, {"items": ["x"], "count": 0, "names": []}),
        (
            "rescan",
            {"seedbox": "seedbox1"},
            "rescan",
            {"seedbox": "seedbox1"},
            {"items": ["x"], "count": 0, "names": []},
        ),
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
    response: dict[str, Any],
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

    # with response data the bridge's result comes back (what retry and rescan did, too)
    assert (
        await hass.services.async_call(DOMAIN, service, data, blocking=True, return_response=True)
        == response
    )


async def test_result_without_object(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A result that is not an object gives empty response data."""
    fake_bridge.answers["pause"] = {"ok": True, "result": None}
    fake_bridge.answers["cancel"] = {"ok": True, "result": "x"}
    fake_bridge.answers["rescan"] = {"ok": True, "result": []}
    assert (
        await hass.services.async_call(DOMAIN, "pause", {}, blocking=True, return_response=True)
        == {}
    )
    assert (
        await hass.services.async_call(
            DOMAIN, "cancel", {"item_id": ITEM_1}, blocking=True, return_response=True
        )
        == {}
    )
    assert await hass.services.async_call(
        DOMAIN, "rescan", {}, blocking=True, return_response=True
    ) == {"count": 0, "names": []}


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
            ],
            "total": 9,
            "next_offset": 6,
        },
    }
    response = await hass.services.async_call(
        DOMAIN,
        "get_queue",
        {"states": ["transferring", "failed"], "limit": 4.0, "offset": "2"},
        blocking=True,
        return_response=True,
    )
    # a form's numbers arrive as floats, a template's as text: the bridge gets integers
    assert fake_bridge.ops == [
        ("get_queue", {"states": ["transferring", "failed"], "limit": 4, "offset": 2})
    ]
    assert response == {
        "total": 9,
        "next_offset": 6,
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
                "request_id": None,
                "step": None,
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
                "request_id": None,
                "step": None,
            },
        ],
    }
    fake_bridge.answers["get_queue"] = {
        "ok": True,
        "result": {"items": [], "total": 9, "next_offset": None},
    }
    response = await hass.services.async_call(
        DOMAIN, "get_queue", {"offset": 9}, blocking=True, return_response=True
    )
    assert fake_bridge.ops[-1] == ("get_queue", {"offset": 9})
    assert response == {"items": [], "total": 9, "next_offset": None}
    fake_bridge.answers["get_queue"] = {"ok": True, "result": {"items": None}}
    response = await hass.services.async_call(
        DOMAIN, "get_queue", {}, blocking=True, return_response=True
    )
    assert fake_bridge.ops[-1] == ("get_queue", {})  # no limit: the bridge's own page
    assert response == {"items": [], "total": 0, "next_offset": None}


def older_bridge(items: list[dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """get_queue as a bridge before paging answers it: every item, no total; limit and
    offset refused (its schema takes `states` only; message as it words it)."""

    def answer(command: dict[str, Any]) -> dict[str, Any]:
        extra = sorted(set(command.get("args", {})) - {"states"})
        if extra:
            message = f"get_queue: extra keys not allowed @ data['{extra[0]}']"
            return {"ok": False, "error": {"code": "invalid_args", "message": message}}
        return {"ok": True, "result": {"items": items}}

    return answer


@pytest.mark.parametrize(
    ("paging", "ids", "next_offset"),
    [
        ({}, [0, 1, 2, 3, 4], None),  # what it always listed: everything
        ({"limit": 2}, [0, 1], 2),
        ({"limit": 2, "offset": 2}, [2, 3], 4),
        ({"limit": 2, "offset": 4}, [4], None),
        ({"offset": 3}, [3, 4], None),
        ({"limit": 3, "offset": 7}, [], None),
    ],
)
async def test_get_queue_from_a_bridge_without_paging(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    paging: dict[str, int],
    ids: list[int],
    next_offset: int | None,
) -> None:
    """An older bridge refuses limit and offset: the action asks it again without them
    and cuts the page from its whole list, so automations page the same way with it."""
    listed = [f"{n:016x}" for n in range(5)]
    fake_bridge.answers["get_queue"] = older_bridge([item_dict(i, "done") for i in listed])
    response = await hass.services.async_call(
        DOMAIN, "get_queue", {"states": ["done"], **paging}, blocking=True, return_response=True
    )
    assert response is not None
    assert [i["id"] for i in response["items"]] == [listed[n] for n in ids]  # type: ignore[union-attr]
    assert (response["total"], response["next_offset"]) == (5, next_offset)
    asked = [("get_queue", {"states": ["done"], **paging})]
    assert fake_bridge.ops == (
        asked if not paging else [*asked, ("get_queue", {"states": ["done"]})]
    )


async def test_get_queue_other_refusals_are_not_retried(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Only an older bridge's refusal of the paging arguments is asked again."""
    fake_bridge.answers["get_queue"] = {
        "ok": False,
        "error": {"code": "invalid_args", "message": "get_queue: value must be at least 1"},
    }
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, "get_queue", {"limit": 5}, blocking=True, return_response=True
        )
    assert err.value.translation_placeholders["code"] == "invalid_args"  # type: ignore[index]
    assert fake_bridge.ops == [("get_queue", {"limit": 5})]


async def test_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bridge refusing a command is a translated error: a validation error (no
    traceback in the log) when it refuses the request, naming the torrent if there is one."""
    fake_bridge.answers["set_priority"] = {
        "ok": False,
        "error": {"code": "not_found", "message": f"no item {ITEM_1}"},
    }
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "set_priority", {"item_id": ITEM_1, "priority": 5}, blocking=True
        )
    assert err.value.translation_domain == DOMAIN
    assert err.value.translation_key == "item_command_failed"
    assert err.value.translation_placeholders == {
        "op": "set_priority",
        "name": "Show.S01E01.mkv",
        "code": "not_found",
        "message": f"no item {ITEM_1}",
    }
    # a fault of the bridge is not the user's: an action error
    fake_bridge.answers["set_priority"] = {
        "ok": False,
        "error": {"code": "internal", "message": "RuntimeError"},
    }
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, "set_priority", {"item_id": ITEM_1, "priority": 5}, blocking=True
        )
    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_key == "item_command_failed"
    assert str(err.value) == (
        "The q4d bridge refused the set_priority command for Show.S01E01.mkv (internal): "
        "RuntimeError"
    )
    # bridge-wide commands
    fake_bridge.answers["retry"] = {"ok": False}
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "retry", {}, blocking=True)
    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_placeholders == {"op": "retry", "code": "error", "message": ""}
    fake_bridge.answers["rescan"] = {
        "ok": False,
        "error": {"code": "not_found", "message": "no seedbox seedbox1"},
    }
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "rescan", {"seedbox": "seedbox1"}, blocking=True)
    assert err.value.translation_key == "command_failed"
    assert str(err.value) == (
        "The q4d bridge refused the rescan command (not_found): no seedbox seedbox1"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_force_needs_an_item(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Fetching every done item again is refused before anything is sent."""
    with pytest.raises(vol.Invalid, match="force needs an item_id"):
        await hass.services.async_call(DOMAIN, "retry", {"force": True}, blocking=True)
    assert not fake_bridge.commands


@pytest.mark.parametrize(
    ("service", "data", "key", "name"),
    [
        ("retry", {"item_id": ITEM_1}, "retry_unfinished", "Show.S01E01.mkv"),
        ("retry", {"item_id": ITEM_2}, "retry_unfinished", "Film.2021.mkv"),
        ("cancel", {"item_id": ITEM_3}, "cancel_finished", "Broken.iso"),
        ("pause", {"item_id": ITEM_3}, "pause_finished", "Broken.iso"),
        ("resume", {"item_id": ITEM_3}, "resume_finished", "Broken.iso"),
    ],
)
async def test_wrong_state(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    caplog: pytest.LogCaptureFixture,
    service: str,
    data: dict[str, Any],
    key: str,
    name: str,
) -> None:
    """A command for an item in a state it does not apply to is refused before it is
    sent, naming the torrent."""
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, service, data, blocking=True)
    assert err.value.translation_key == key
    assert err.value.translation_placeholders == {"name": name}
    assert str(err.value).startswith(name)
    assert fake_bridge.commands == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_verifying(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A verifying item cannot be cancelled or paused: it finishes in a moment."""
    await async_send(hass, item_topic(ITEM_1), item(ITEM_1, "verifying", updated_at=NOW + 100))
    for service, done in (("cancel", "cancelled"), ("pause", "paused")):
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(DOMAIN, service, {"item_id": ITEM_1}, blocking=True)
        assert err.value.translation_key == f"{service}_verifying"
        assert str(err.value) == (
            f"Show.S01E01.mkv cannot be {done}: it is being verified and moved into the "
            "library, which finishes in a moment"
        )
    assert fake_bridge.commands == []


async def test_refusal_over_websocket(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    hass_ws_client: WebSocketGenerator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """From the frontend, a refusal shows its translated message and logs no traceback."""
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {
            "type": "call_service",
            "domain": DOMAIN,
            "service": "cancel",
            "service_data": {"item_id": ITEM_3},
        }
    )
    answer = await client.receive_json()
    assert not answer["success"]
    assert answer["error"]["translation_key"] == "cancel_finished"
    assert answer["error"]["translation_placeholders"] == {"name": "Broken.iso"}
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]


async def test_retry_failed_reports(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Retrying every failed item says which were queued again: in the response, and in a
    notification when no response is asked for."""
    with patch("homeassistant.components.persistent_notification.async_create") as create:
        fake_bridge.answers["retry"] = {"ok": True, "result": {"items": []}}
        await hass.services.async_call(DOMAIN, "retry", {}, blocking=True)
        fake_bridge.answers["retry"] = {"ok": True, "result": {"items": [ITEM_3, ITEM_2]}}
        await hass.services.async_call(DOMAIN, "retry", {}, blocking=True)
        # a newer bridge sends the count and the names
        fake_bridge.answers["retry"] = {
            "ok": True,
            "result": {"items": ["a" * 16], "count": 1, "names": ["New.mkv"]},
        }
        await hass.services.async_call(DOMAIN, "retry", {}, blocking=True)
        # no notification when the caller takes the response
        response = await hass.services.async_call(
            DOMAIN, "retry", {}, blocking=True, return_response=True
        )
        # nor for one item
        await hass.services.async_call(DOMAIN, "retry", {"item_id": ITEM_3}, blocking=True)
    assert response == {"items": ["a" * 16], "count": 1, "names": ["New.mkv"]}
    assert [c.args[1:] for c in create.call_args_list] == [
        ("No failed transfers to retry.",),
        ("2 failed transfers queued again: Broken.iso, Film.2021.mkv",),
        ("1 failed transfer queued again: New.mkv",),
    ]
    assert {c.kwargs["title"] for c in create.call_args_list} == {
        "Retry failed transfers on Home media bridge"
    }
    assert {c.kwargs["notification_id"] for c in create.call_args_list} == {
        f"q4d_{init_integration.entry_id}_retry"
    }


async def test_rescan_reports(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A rescan says what it queued and which seedboxes it could not ask."""
    unknown = [f"{n:016x}" for n in range(25)]
    fake_bridge.answers["rescan"] = {
        "ok": True,
        "result": {
            "seedboxes": {
                "seedbox1": {"enqueued": [ITEM_1], "error": None},
                "seedbox2": {"enqueued": [], "error": "no torrent client configured"},
                "junk": None,
            }
        },
    }
    with patch("homeassistant.components.persistent_notification.async_create") as create:
        await hass.services.async_call(DOMAIN, "rescan", {}, blocking=True)
        fake_bridge.answers["rescan"] = {
            "ok": True,
            "result": {"seedboxes": {"seedbox1": {"enqueued": [ITEM_1, *unknown]}}},
        }
        response = await hass.services.async_call(
            DOMAIN, "rescan", {}, blocking=True, return_response=True
        )
        await hass.services.async_call(DOMAIN, "rescan", {}, blocking=True)
    assert response is not None
    assert response["count"] == 26
    assert response["names"] == ["Show.S01E01.mkv", *unknown]
    assert [c.args[1] for c in create.call_args_list] == [
        "1 missed completion queued: Show.S01E01.mkv\n\n"
        "Second seedbox was not checked: no torrent client configured",
        "26 missed completions queued: "
        + ", ".join(["Show.S01E01.mkv", *unknown[:19]])
        + " and 6 more",
    ]
    assert (
        create.call_args_list[0].kwargs["title"] == "Rescan of the seedboxes of Home media bridge"
    )


async def test_unknown_item_before_sync(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Before all items are known, an unknown id goes to the bridge; its refusal names it."""
    init_integration.runtime_data.coordinator._sync.synced = False
    fake_bridge.answers["cancel"] = {
        "ok": False,
        "error": {"code": "not_found", "message": "no item ffffffffffffffff"},
    }
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "cancel", {"item_id": "ffffffffffffffff"}, blocking=True
        )
    assert err.value.translation_placeholders is not None
    assert err.value.translation_placeholders["name"] == "ffffffffffffffff"


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
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "cancel", {"item_id": ITEM_1}, blocking=True)
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
        ("get_queue", {"limit": 0}),
        ("get_queue", {"limit": 10001}),
        ("get_queue", {"limit": 2.5}),
        ("get_queue", {"limit": True}),
        ("get_queue", {"offset": -1}),
        ("get_queue", {"offset": "first"}),
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
