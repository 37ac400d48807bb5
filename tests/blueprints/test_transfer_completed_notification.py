"""Blueprint: transfer finished -> phone notification with Open dashboard / Retry."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import async_mock_service

from .common import (
    BRIDGE_DEVICE_ID,
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

BLUEPRINT = "transfer_completed_notification.yaml"


def running(hass: HomeAssistant) -> int:
    """How many runs of the automation are in progress."""
    return hass.states.get("automation.transfer_completed_notification").attributes["current"]


async def test_completed(hass: HomeAssistant) -> None:
    """A completed transfer: title, message, tag, tap target and the Open dashboard button."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    await async_setup_automations(hass, use_blueprint(BLUEPRINT, notify_device=add_phone(hass)))

    await async_fire_transfer(hass, "completed")

    assert len(notify) == 1
    assert notify[0].data == {
        "title": "Transfer complete",
        "message": "Show.S01E01.mkv is home: 1.5 GB in 40s → tv",
        "data": {
            "tag": f"q4d-{ITEM_ID}",
            "group": "q4d",
            "url": "/lovelace/0",
            "clickAction": "/lovelace/0",
            "actions": [{"action": "URI", "title": "Open dashboard", "uri": "/lovelace/0"}],
        },
    }


async def test_failed_retry_round_trip(hass: HomeAssistant) -> None:
    """A failure gets a Retry button; tapping it calls q4d.retry for that item."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    retry = async_mock_service(hass, "q4d", "retry")
    await async_setup_automations(hass, use_blueprint(BLUEPRINT, notify_device=add_phone(hass)))

    await async_fire_transfer(hass, "failed")

    assert len(notify) == 1
    data = notify[0].data
    assert data["title"] == "Transfer failed"
    assert (
        data["message"] == "Show.S01E01.mkv from seedbox1 failed: lftp exit 1: max-retries exceeded"
    )
    retry_button, open_button = button_actions(data)
    assert retry_button["title"] == "Retry"
    assert retry_button["action"].startswith("Q4D_RETRY_")
    assert open_button == {"action": "URI", "title": "Open dashboard", "uri": "/lovelace/0"}

    await async_tap(hass, "Q4D_RETRY_somebody_else")
    await async_tap(hass, "URI")
    assert retry == []

    await async_tap(hass, retry_button["action"])
    assert len(retry) == 1
    assert retry[0].data == {"config_entry_id": ENTRY_ID, "item_id": ITEM_ID}

    # The run has ended: a second tap does nothing.
    await async_tap(hass, retry_button["action"])
    assert len(retry) == 1


async def test_action_ids_unique_per_run(hass: HomeAssistant) -> None:
    """Two failures wait side by side; each Retry button retries its own item."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    retry = async_mock_service(hass, "q4d", "retry")
    await async_setup_automations(hass, use_blueprint(BLUEPRINT, notify_device=add_phone(hass)))

    await async_fire_transfer(hass, "failed")
    await async_fire_transfer(hass, "failed", item_id=OTHER_ITEM_ID, name="Broken.iso")

    first, second = (button_actions(call.data)[0]["action"] for call in notify)
    assert first != second
    assert notify[0].data["data"]["tag"] == f"q4d-{ITEM_ID}"
    assert notify[1].data["data"]["tag"] == f"q4d-{OTHER_ITEM_ID}"

    await async_tap(hass, second)
    assert [call.data["item_id"] for call in retry] == [OTHER_ITEM_ID]
    await async_tap(hass, first)
    assert [call.data["item_id"] for call in retry] == [OTHER_ITEM_ID, ITEM_ID]


async def test_retry_times_out(hass: HomeAssistant) -> None:
    """After the Retry timeout the run has ended and a late tap does nothing."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    retry = async_mock_service(hass, "q4d", "retry")
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, notify_device=add_phone(hass), retry_timeout=30)
    )

    await async_fire_transfer(hass, "failed")
    action = button_actions(notify[0].data)[0]["action"]

    await async_advance(hass, minutes=29)
    assert running(hass) == 1

    await async_advance(hass, minutes=31)
    assert running(hass) == 0
    await async_tap(hass, action)
    assert retry == []


async def test_filters_and_options(hass: HomeAssistant) -> None:
    """Category and device filters, failures off, custom texts and no dashboard."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            notify_device=add_phone(hass),
            notify_failures=False,
            categories=["TV-Sonarr", "radarr"],
            q4d_devices=[BRIDGE_DEVICE_ID],
            dashboard_path="",
            completed_title="{{ seedbox }}: {{ category }}",
            completed_message="{{ item.item_id }} {{ destination_path }} {{ size_text }} {{ duration_text }}",
        ),
    )

    await async_fire_transfer(hass, "failed")
    await async_fire_transfer(hass, "completed", category="lidarr")
    await async_fire_transfer(hass, "completed", category=None)
    await async_fire_transfer(hass, "completed", bridge_device_id="other-bridge")
    assert notify == []

    await async_fire_transfer(hass, "completed", size=None, duration=3725)
    await async_fire_transfer(hass, "completed", category="radarr", size=999, duration=61)
    assert [(c.data["title"], c.data["message"]) for c in notify] == [
        ("seedbox1: tv-sonarr", f"{ITEM_ID} /media/tv/Show.S01E01.mkv size unknown 1h 2m"),
        ("seedbox1: radarr", f"{ITEM_ID} /media/tv/Show.S01E01.mkv 999 B 1m 1s"),
    ]
    assert notify[0].data["data"] == {"tag": f"q4d-{ITEM_ID}", "group": "q4d", "actions": []}
