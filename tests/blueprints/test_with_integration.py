"""The blueprints against the real q4d integration (mocked MQTT, a fake bridge).

The bridge's MQTT messages go through the integration, which fires the real
`q4d_transfer_*` events and keeps the real entities; the blueprints' q4d actions
reach the fake bridge as commands.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
    async_fire_time_changed,
    async_mock_service,
)

from tests.components.q4d.common import FakeBridge, async_send, q4d_device
from tests.components.q4d.payloads import (
    EVENT_TOPIC,
    ITEM_1,
    ITEM_3,
    NOW,
    STATE_TOPIC,
    client_stats,
    destination,
    event,
    item_dict,
    seedbox,
    state,
)

from .common import (
    PHONE_NOTIFY,
    add_phone,
    async_advance,
    async_record_services,
    async_settle,
    async_setup_automations,
    async_tap,
    button_actions,
    use_blueprint,
)

SWITCH = "switch.home_media_bridge_queue_paused"
SEEDBOX_FREE = "sensor.my_seedbox_free_space"
TV_FREE = "sensor.home_media_bridge_tv_free_space"

DONE = item_dict(
    ITEM_1, "done", progress=100.0, attempts=1, started_at=NOW + 2, finished_at=NOW + 42.5
)
FAILED = item_dict(
    ITEM_3,
    "failed",
    name="Broken.iso",
    attempts=3,
    error={"code": "auth_failed", "message": "Permission denied (publickey)"},
    started_at=NOW + 1,
    finished_at=NOW + 5,
)


async def async_bridge_event(hass: HomeAssistant, payload: str) -> None:
    """An event from the bridge, through the integration (runs may keep waiting)."""
    async_fire_mqtt_message(hass, EVENT_TOPIC, payload)
    await async_settle(hass)


async def test_notifications_and_retry(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Completed and failed transfers notify the phone; Retry reaches the bridge."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    await async_setup_automations(
        hass,
        use_blueprint(
            "transfer_completed_notification.yaml",
            notify_device=add_phone(hass),
            notify_failures=False,
        ),
        use_blueprint("transfer_failed_notification.yaml", notify_device=add_phone(hass)),
    )

    await async_bridge_event(hass, event("completed", DONE, at=NOW + 42.5, verified="pieces"))
    await async_bridge_event(hass, event("failed", FAILED, at=NOW + 5))

    assert [(call.data["title"], call.data["message"]) for call in notify] == [
        ("Transfer complete", "Show.S01E01.mkv is home: 1.5 GB in 40s → tv"),
        (
            "Transfer failed",
            "Broken.iso (1.5 GB) from seedbox1 failed: Permission denied (publickey) [auth_failed]",
        ),
    ]
    retry_action = button_actions(notify[1].data)[0]["action"]
    await async_tap(hass, retry_action)
    await async_settle(hass)
    assert fake_bridge.ops == [("retry", {"item_id": ITEM_3})]


async def test_forward_with_device_filter(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Events of one seedbox device only, with the integration's real event data."""
    seedbox1 = q4d_device(hass, "home:seedbox:seedbox1")
    assert seedbox1 is not None
    discord = async_mock_service(hass, "notify", "discord")
    await async_setup_automations(
        hass,
        use_blueprint(
            "forward_events.yaml",
            events=["started", "completed"],
            notify_action="notify.discord",
            notify_target=["42"],
            q4d_devices=[seedbox1.id],
        ),
    )

    started = item_dict(ITEM_1, "transferring", attempts=1, started_at=NOW + 2)
    other = item_dict(ITEM_1, "transferring", seedbox="seedbox2", started_at=NOW + 3)
    await async_send(hass, EVENT_TOPIC, event("started", started, at=NOW + 2))
    await async_send(hass, EVENT_TOPIC, event("started", other, at=NOW + 3))
    await async_send(hass, EVENT_TOPIC, event("completed", DONE, at=NOW + 42.5))

    assert [call.data["message"] for call in discord] == [
        "⬇️ Transferring: Show.S01E01.mkv (1.5 GB) from seedbox1",
        "✅ Show.S01E01.mkv is home: 1.5 GB in 40s → tv",
    ]
    assert discord[0].data["target"] == ["42"]


async def test_low_space_on_real_sensors(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The seedbox and destination free-space sensors; auto-pause pauses the bridge."""
    assert hass.states.get(SEEDBOX_FREE).attributes["unit_of_measurement"] == "GB"
    assert hass.states.get(TV_FREE) is not None
    notes = async_record_services(hass, "persistent_notification", "create", "dismiss")
    await async_setup_automations(
        hass,
        use_blueprint(
            "low_free_space.yaml",
            seedbox_sensors=[SEEDBOX_FREE],
            destination_sensors=[TV_FREE],
            threshold=100,
            for_minutes=0,
            auto_pause=True,
        ),
    )

    await async_send(
        hass,
        STATE_TOPIC,
        state(
            seedboxes={
                "seedbox1": seedbox("My seedbox", client=client_stats(free_space=20_000_000_000))
            },
            destinations={"tv": destination(3_298_534_883_328)},
        ),
    )
    assert [call.data["message"] for call in notes] == [
        "My seedbox Free space: 20.0 GB free, below 100 GB."
    ]
    assert fake_bridge.ops == []  # a seedbox does not pause

    await async_send(
        hass,
        STATE_TOPIC,
        state(
            seedboxes={
                "seedbox1": seedbox("My seedbox", client=client_stats(free_space=20_000_000_000))
            },
            destinations={"tv": destination(12_345_000_000)},
        ),
    )
    await async_settle(hass)
    assert notes[-1].data == {
        "title": "Low free space",
        "message": "Home media bridge tv free space: 12.3 GB free, below 100 GB; q4d transfers are paused.",
        "notification_id": "q4d_low_space_sensor_home_media_bridge_tv_free_space",
    }
    assert fake_bridge.ops == [("pause", {})]


async def test_pause_while_streaming_real_switch(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """The real Queue paused switch: pause and resume commands reach the bridge."""
    hass.states.async_set("media_player.tv", "idle")
    await async_setup_automations(
        hass,
        use_blueprint(
            "pause_while_streaming.yaml",
            media_players=["media_player.tv"],
            queue_switch=SWITCH,
            start_delay=0,
            resume_delay=30,
        ),
    )

    hass.states.async_set("media_player.tv", "playing")
    await async_settle(hass)
    await async_settle(hass)
    assert fake_bridge.ops == [("pause", {})]
    async_fire_mqtt_message(hass, STATE_TOPIC, state(paused=True))
    await async_advance(hass, seconds=2)
    assert hass.states.get(SWITCH).state == "on"

    hass.states.async_set("media_player.tv", "idle")
    await async_settle(hass)
    await async_advance(hass, seconds=31)
    await async_settle(hass)
    assert fake_bridge.ops == [("pause", {}), ("resume", {})]


@pytest.mark.parametrize("expected_lingering_timers", [True])
async def test_digest_from_the_bridge(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    freezer: FrozenDateTimeFactory,
) -> None:
    """The digest asks the bridge (get_queue) and counts what finished in 24 hours."""
    now = dt_util.now().replace(hour=20, minute=0, second=0, microsecond=0)
    freezer.move_to(now)
    today = now.timestamp()
    fake_bridge.answers["get_queue"] = {
        "ok": True,
        "result": {
            "items": [
                item_dict(ITEM_1, "done", finished_at=today - 3600, updated_at=today),
                item_dict(
                    "8afaca10a21c7251",
                    "done",
                    name="Film.2021.mkv",
                    size=8_000_000_000,
                    finished_at=today - 7200,
                ),
                {**FAILED, "finished_at": today - 60},
                item_dict("ffffffffffffffff", "done", finished_at=today - 90000),
            ]
        },
    }
    notes = async_record_services(hass, "persistent_notification", "create")
    await async_setup_automations(hass, use_blueprint("daily_digest.yaml", digest_time="21:00:00"))

    freezer.move_to(now + timedelta(hours=1))
    async_fire_time_changed(hass, dt_util.utcnow())
    await async_settle(hass)
    await hass.async_block_till_done()

    assert fake_bridge.ops == [
        ("get_queue", {"states": ["done", "failed", "cancelled"], "limit": 10000})
    ]
    assert [call.data["message"] for call in notes] == [
        "2 completed (9.5 GB), 1 failed, 0 cancelled.\n\n"
        "Completed: Show.S01E01.mkv, Film.2021.mkv\n\n"
        "Failed: Broken.iso (Permission denied (publickey))"
    ]
