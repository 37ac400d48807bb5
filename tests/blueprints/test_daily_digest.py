"""Blueprint: daily digest of the finished transfers (from q4d.get_queue)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant, ServiceCall, SupportsResponse
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    async_fire_time_changed,
    async_mock_service,
)

from .common import ENTRY_ID, async_record_services, async_setup_automations, use_blueprint

BLUEPRINT = "daily_digest.yaml"

# The automation's time trigger keeps its timer for the next day.
pytestmark = pytest.mark.parametrize("expected_lingering_timers", [True])


def at(hour: int, minute: int = 0, day: int = 14) -> datetime:
    """A local time on a day of March 2025."""
    return datetime(2025, 3, day, hour, minute, tzinfo=dt_util.get_default_time_zone())


def finished(
    name: str, status: str, when: datetime, size: int | None = None, **extra: Any
) -> dict[str, Any]:
    """An item of q4d.get_queue's response."""
    return {
        "id": f"{abs(hash(name)):016x}"[:16],
        "name": name,
        "status": status,
        "size": size,
        "error": extra.get("error"),
        "received_at": when.timestamp() - 600,
        "finished_at": when.timestamp(),
    }


def queue() -> dict[str, Any]:
    """The finished items the bridge holds at 21:00 on March 14 (hass's time zone)."""
    return {
        "items": [
            finished("Show.S01E01.mkv", "done", at(20, 30), 1_500_000_000),
            finished("Film.2021.mkv", "done", at(9, 15), 8_000_000_000),
            finished("Album", "done", at(21, 30, day=13), 300_000_000),  # 23.5 h ago: counted
            finished("Old.Show.mkv", "done", at(20, 0, day=13), 9_000_000_000),  # 25 h ago: not
            finished(
                "Broken.iso",
                "failed",
                at(12, 0),
                4_000_000,
                error={"code": "connection", "message": "lftp exit 1: max-retries exceeded"},
            ),
            finished("Unwanted.mkv", "cancelled", at(13, 0)),
            {**finished("Never.mkv", "done", at(13, 0)), "finished_at": None},
        ]
    }


async def async_run_digest(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> None:
    """It is 21:00."""
    freezer.move_to(at(21))
    async_fire_time_changed(hass, dt_util.utcnow())
    await hass.async_block_till_done()


@pytest.fixture
def get_queue(hass: HomeAssistant, freezer: FrozenDateTimeFactory) -> list[ServiceCall]:
    """q4d.get_queue answering queue(); the clock at 20:59."""
    freezer.move_to(at(20, 59))
    return async_mock_service(
        hass, "q4d", "get_queue", response=queue(), supports_response=SupportsResponse.ONLY
    )


async def test_digest(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, get_queue: list[ServiceCall]
) -> None:
    """Counts, bytes moved and names of the last 24 hours, as a persistent notification."""
    notes = async_record_services(hass, "persistent_notification", "create")
    await async_setup_automations(hass, use_blueprint(BLUEPRINT))

    await async_run_digest(hass, freezer)

    assert [call.data for call in get_queue] == [
        {"states": ["done", "failed", "cancelled"], "limit": 10000}
    ]
    assert [call.data for call in notes] == [
        {
            "title": "q4d: 3 home, 1 failed in the last 24 h",
            "message": (
                "3 completed (9.8 GB), 1 failed, 1 cancelled.\n\n"
                "Completed: Show.S01E01.mkv, Film.2021.mkv, Album\n\n"
                "Failed: Broken.iso (lftp exit 1: max-retries exceeded)"
            ),
            "notification_id": "q4d_daily_digest",
        }
    ]


async def test_digest_to_notify_service(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, get_queue: list[ServiceCall]
) -> None:
    """Telegram (or any notify action), a chosen bridge, names capped, custom template."""
    sent = async_record_services(hass, "notify", "telegram", "send_message")
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            digest_time="21:00:00",
            bridge=ENTRY_ID,
            max_names=1,
            notify_action="notify.telegram",
            notify_data={"parse_mode": "html"},
            notify_entities=["notify.family"],
            title="Digest",
            message=(
                "{{ completed }}/{{ failed }}/{{ cancelled }} {{ bytes_moved }} "
                "{{ completed_names }} {{ failed_names }} {{ cancelled_names }}"
            ),
        ),
    )

    await async_run_digest(hass, freezer)

    assert get_queue[0].data == {
        "states": ["done", "failed", "cancelled"],
        "limit": 10000,
        "config_entry_id": ENTRY_ID,
    }
    message = "3/1/1 9800000000 ['Show.S01E01.mkv'] ['Broken.iso'] ['Unwanted.mkv']"
    assert [(call.service, dict(call.data)) for call in sent] == [
        ("telegram", {"message": message, "title": "Digest", "data": {"parse_mode": "html"}}),
        ("send_message", {"entity_id": ["notify.family"], "title": "Digest", "message": message}),
    ]


@pytest.mark.parametrize(("skip_empty", "sent"), [(True, 0), (False, 1)])
async def test_quiet_day(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, skip_empty: bool, sent: int
) -> None:
    """Nothing finished: no digest, unless asked for."""
    freezer.move_to(at(20, 59))
    async_mock_service(
        hass,
        "q4d",
        "get_queue",
        response={"items": [queue()["items"][3]]},
        supports_response=SupportsResponse.ONLY,
    )
    notes = async_record_services(hass, "persistent_notification", "create")
    await async_setup_automations(hass, use_blueprint(BLUEPRINT, skip_empty=skip_empty))

    freezer.move_to(at(20, 59) + timedelta(seconds=30))
    async_fire_time_changed(hass, dt_util.utcnow())
    await hass.async_block_till_done()
    assert notes == []

    await async_run_digest(hass, freezer)
    assert len(notes) == sent
    if sent:
        assert notes[0].data["message"] == "0 completed (0 B), 0 failed, 0 cancelled."
