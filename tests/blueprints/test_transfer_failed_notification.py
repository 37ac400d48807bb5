"""Blueprint: transfer failed -> notification with the reason, Retry, optional reminders."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant, SupportsResponse
from homeassistant.exceptions import HomeAssistantError
from pytest_homeassistant_custom_component.common import async_mock_service

from .common import (
    ENTRY_ID,
    ITEM_ID,
    OTHER_ITEM_ID,
    PHONE_NOTIFY,
    add_phone,
    async_advance,
    async_fire_transfer,
    async_setup_automations,
    async_tap,
    button_actions,
    use_blueprint,
)

BLUEPRINT = "transfer_failed_notification.yaml"


def running(hass: HomeAssistant) -> int:
    """How many runs of the automation are in progress."""
    return hass.states.get("automation.transfer_failed_notification").attributes["current"]


def failed_queue(*item_ids: str) -> dict[str, Any]:
    """A q4d.get_queue response listing these failed items."""
    return {"items": [{"id": item_id, "status": "failed"} for item_id in item_ids]}


async def test_reason_and_retry(hass: HomeAssistant) -> None:
    """The notification carries the reason and error code; Retry calls q4d.retry."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    retry = async_mock_service(hass, "q4d", "retry")
    await async_setup_automations(hass, use_blueprint(BLUEPRINT, notify_device=add_phone(hass)))

    await async_fire_transfer(hass, "completed")
    await async_fire_transfer(
        hass, "failed", error="Permission denied (publickey)", error_code="auth_failed"
    )

    assert len(notify) == 1
    data = notify[0].data
    assert data["title"] == "Transfer failed"
    assert data["message"] == (
        "Show.S01E01.mkv (1.5 GB) from seedbox1 failed: Permission denied (publickey) [auth_failed]"
    )
    assert data["data"]["tag"] == f"q4d-{ITEM_ID}"
    (retry_button,) = button_actions(data)  # no dashboard by default
    assert retry_button["title"] == "Retry"
    assert retry_button["action"].startswith("Q4D_RETRY_")

    await async_tap(hass, retry_button["action"])
    assert [call.data for call in retry] == [{"config_entry_id": ENTRY_ID, "item_id": ITEM_ID}]
    assert running(hass) == 0


async def test_reminders_while_still_failed(hass: HomeAssistant) -> None:
    """Reminders every N minutes while the bridge still lists the item as failed."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    retry = async_mock_service(hass, "q4d", "retry")
    get_queue = async_mock_service(
        hass,
        "q4d",
        "get_queue",
        response=failed_queue(OTHER_ITEM_ID, ITEM_ID),
        supports_response=SupportsResponse.ONLY,
    )
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            notify_device=add_phone(hass),
            repeat_every=30,
            max_reminders=2,
            retry_timeout=60,
            dashboard_path="/lovelace/q4d",
        ),
    )

    await async_fire_transfer(hass, "failed")
    assert [call.data["title"] for call in notify] == ["Transfer failed"]

    await async_advance(hass, minutes=29)
    assert len(notify) == 1
    await async_advance(hass, minutes=31)
    assert [call.data["title"] for call in notify] == ["Transfer failed", "Still failed"]
    assert get_queue[0].data == {"config_entry_id": ENTRY_ID, "states": ["failed"], "limit": 10000}

    await async_advance(hass, minutes=61)
    assert [call.data["title"] for call in notify] == [
        "Transfer failed",
        "Still failed",
        "Still failed",
    ]
    assert len(get_queue) == 2
    # Same run, same button, same tag: each reminder replaces the last notification.
    assert len({button_actions(call.data)[0]["action"] for call in notify}) == 1
    assert button_actions(notify[2].data)[1] == {
        "action": "URI",
        "title": "Open dashboard",
        "uri": "/lovelace/q4d",
    }
    assert notify[2].data["data"]["url"] == "/lovelace/q4d"

    # The last round waits for the Retry timeout, then the run ends.
    await async_advance(hass, minutes=200)
    assert len(notify) == 3
    assert running(hass) == 0
    await async_tap(hass, button_actions(notify[2].data)[0]["action"])
    assert retry == []


async def test_reminder_then_retry(hass: HomeAssistant) -> None:
    """A tap on a reminder's Retry retries the item and ends the reminders."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    retry = async_mock_service(hass, "q4d", "retry")
    async_mock_service(
        hass,
        "q4d",
        "get_queue",
        response=failed_queue(ITEM_ID),
        supports_response=SupportsResponse.ONLY,
    )
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, notify_device=add_phone(hass), repeat_every=10)
    )

    await async_fire_transfer(hass, "failed")
    await async_advance(hass, minutes=11)
    assert len(notify) == 2

    await async_tap(hass, button_actions(notify[1].data)[0]["action"])
    assert [call.data["item_id"] for call in retry] == [ITEM_ID]
    assert running(hass) == 0


async def test_reminders_stop_when_no_longer_failed(hass: HomeAssistant) -> None:
    """Retried elsewhere (no longer in the failed list): no more reminders."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    async_mock_service(
        hass,
        "q4d",
        "get_queue",
        response=failed_queue(OTHER_ITEM_ID),
        supports_response=SupportsResponse.ONLY,
    )
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, notify_device=add_phone(hass), repeat_every=10)
    )

    await async_fire_transfer(hass, "failed")
    await async_advance(hass, minutes=11)
    assert len(notify) == 1
    assert running(hass) == 0


async def test_filters(hass: HomeAssistant) -> None:
    """Error-code and category filters."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            notify_device=add_phone(hass),
            error_codes=["host_key_mismatch", "auth_failed"],
            categories=["tv-sonarr"],
            message="{{ error_code }}: {{ error }} after {{ duration_text }}",
        ),
    )

    await async_fire_transfer(hass, "failed")  # error code "connection"
    await async_fire_transfer(hass, "failed", error_code="auth_failed", category="radarr")
    await async_fire_transfer(hass, "failed", error_code="host_key_mismatch", error="bad key")
    assert [call.data["message"] for call in notify] == ["host_key_mismatch: bad key after 40s"]


async def test_reminders_go_on_when_the_bridge_cannot_answer(hass: HomeAssistant) -> None:
    """q4d.get_queue failing (bridge offline) does not stop the reminders."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    get_queue = async_mock_service(
        hass,
        "q4d",
        "get_queue",
        supports_response=SupportsResponse.ONLY,
        raise_exception=HomeAssistantError("The q4d bridge Home media bridge is offline"),
    )
    await async_setup_automations(
        hass,
        use_blueprint(BLUEPRINT, notify_device=add_phone(hass), repeat_every=10, max_reminders=1),
    )

    await async_fire_transfer(hass, "failed")
    await async_advance(hass, minutes=11)
    assert len(get_queue) == 1
    assert [call.data["title"] for call in notify] == ["Transfer failed", "Still failed"]
