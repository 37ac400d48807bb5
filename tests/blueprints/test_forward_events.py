"""Blueprint: forward chosen q4d events to any notify service (Discord, Slack, Telegram ...)."""

from __future__ import annotations

import json

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_mock_service
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from .common import (
    SEEDBOX_DEVICE_ID,
    async_fire_transfer,
    async_record_services,
    async_setup_automations,
    docs_yaml_block,
    use_blueprint,
)

BLUEPRINT = "forward_events.yaml"


async def test_default_events_to_discord(hass: HomeAssistant) -> None:
    """Completed and failed by default, with Discord's channel target and an embed."""
    discord = async_mock_service(hass, "notify", "discord")
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            notify_action="notify.discord",
            notify_target=["1234567890"],
            notify_data={"embed": {"color": 65280}},
        ),
    )

    await async_fire_transfer(hass, "queued")
    await async_fire_transfer(hass, "started")
    await async_fire_transfer(hass, "completed")
    await async_fire_transfer(hass, "failed")

    assert [call.data for call in discord] == [
        {
            "title": "q4d",
            "message": "✅ Show.S01E01.mkv is home: 1.5 GB in 40s → tv",
            "target": ["1234567890"],
            "data": {"embed": {"color": 65280}},
        },
        {
            "title": "q4d",
            "message": (
                "❌ Show.S01E01.mkv failed: lftp exit 1: max-retries exceeded [connection]"
            ),
            "target": ["1234567890"],
            "data": {"embed": {"color": 65280}},
        },
    ]


async def test_every_event_in_order(hass: HomeAssistant) -> None:
    """All four events, in the order they happened, to Slack and to notify entities."""
    calls = async_record_services(hass, "notify", "slack", "send_message")
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            events=["queued", "started", "completed", "failed"],
            notify_action="notify.slack",
            notify_entities=["notify.matrix_room"],
            title="{{ event | title }}",
        ),
    )

    await async_fire_transfer(hass, "queued")
    await async_fire_transfer(hass, "started")
    await async_fire_transfer(hass, "failed", size=None)
    await async_fire_transfer(hass, "queued", retry=True)
    await async_fire_transfer(hass, "completed", duration=7384, size=42_000_000_000)
    await hass.async_block_till_done()

    slack = [(c.data["title"], c.data["message"]) for c in calls if c.service == "slack"]
    assert slack == [
        ("Queued", "📥 Queued: Show.S01E01.mkv (1.5 GB) from seedbox1"),
        ("Started", "⬇️ Transferring: Show.S01E01.mkv (1.5 GB) from seedbox1"),
        ("Failed", "❌ Show.S01E01.mkv failed: lftp exit 1: max-retries exceeded [connection]"),
        ("Queued", "📥 Queued again: Show.S01E01.mkv (1.5 GB) from seedbox1"),
        ("Completed", "✅ Show.S01E01.mkv is home: 42.0 GB in 2h 3m → tv"),
    ]
    entities = [c.data for c in calls if c.service == "send_message"]
    assert [data["message"] for data in entities] == [message for _, message in slack]
    assert entities[0]["entity_id"] == ["notify.matrix_room"]


async def test_filters_and_template(hass: HomeAssistant) -> None:
    """Category and seedbox filters; a message template using the event's data."""
    telegram = async_mock_service(hass, "notify", "telegram")
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            events=["completed"],
            notify_action="notify.telegram",
            categories=["radarr"],
            q4d_devices=[SEEDBOX_DEVICE_ID],
            message="<b>{{ name }}</b> {{ item.verified }} {{ destination_path }}",
            notify_data={"parse_mode": "html"},
        ),
    )

    await async_fire_transfer(hass, "completed")  # tv-sonarr
    await async_fire_transfer(hass, "completed", category="radarr", device_id="other-seedbox")
    await async_fire_transfer(
        hass,
        "completed",
        category="Radarr",
        name="Film.2021.mkv",
        destination_path="/media/movies/Film.2021.mkv",
    )

    assert [call.data for call in telegram] == [
        {
            "title": "q4d",
            "message": "<b>Film.2021.mkv</b> pieces /media/movies/Film.2021.mkv",
            "data": {"parse_mode": "html"},
        }
    ]


async def test_documented_n8n_automation(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """The docs' plain automation for n8n posts the raw event as JSON."""
    aioclient_mock.post("http://n8n:5678/webhook/q4d", status=200)
    example = docs_yaml_block("rest_command", "n8n_q4d")
    assert await async_setup_component(
        hass, "rest_command", {"rest_command": example["rest_command"]}
    )
    await async_setup_automations(hass, *example["automation"])

    data = await async_fire_transfer(hass, "completed")
    await hass.async_block_till_done()

    (call,) = aioclient_mock.mock_calls
    assert str(call[1]) == "http://n8n:5678/webhook/q4d"
    assert json.loads(call[2]) == {**data, "event": "q4d_transfer_completed"}
