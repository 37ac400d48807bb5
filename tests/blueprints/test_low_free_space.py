"""Blueprint: low free space on a destination or a seedbox -> alert, optional pause/resume."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.core import CoreState, HomeAssistant, ServiceCall
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .common import (
    ENTRY_ID,
    async_advance,
    async_record_services,
    async_settle,
    async_setup_automations,
    use_blueprint,
)

BLUEPRINT = "low_free_space.yaml"
SEEDBOX = "sensor.my_seedbox_free_space"
LIBRARY = "sensor.disk_free_media"


def set_free(hass: HomeAssistant, entity_id: str, value: Any, unit: str | None = "GB") -> None:
    """A free-space sensor reports a value."""
    name = "My seedbox Free space" if entity_id == SEEDBOX else "Disk free /media"
    attributes: dict[str, Any] = {"friendly_name": name, "device_class": "data_size"}
    if unit is not None:
        attributes["unit_of_measurement"] = unit
    hass.states.async_set(entity_id, str(value), attributes)


@pytest.fixture
def calls(hass: HomeAssistant) -> list[ServiceCall]:
    """Every notification and q4d action, in call order; the sensors start with plenty of space."""
    set_free(hass, SEEDBOX, 512.0)
    set_free(hass, LIBRARY, 3.0, "TiB")
    recorded: list[ServiceCall] = []
    async_record_services(hass, "persistent_notification", "create", "dismiss", calls=recorded)
    async_record_services(hass, "q4d", "pause", "resume", calls=recorded)
    async_record_services(hass, "notify", "discord", "send_message", calls=recorded)
    return recorded


def log(calls: list[ServiceCall]) -> list[tuple[str, dict[str, Any]]]:
    """(domain.action, data) of every recorded call."""
    return [(f"{call.domain}.{call.service}", dict(call.data)) for call in calls]


async def async_set_and_wait(
    hass: HomeAssistant, entity_id: str, value: Any, unit: str | None = "GB", minutes: float = 6
) -> None:
    """Report a value and let the `for` time pass."""
    set_free(hass, entity_id, value, unit)
    await async_settle(hass)
    await async_advance(hass, minutes=minutes)


async def test_seedbox_low_and_recovered(hass: HomeAssistant, calls: list[ServiceCall]) -> None:
    """Seedbox below the threshold for 5 min: persistent alert; above threshold + margin: dismissed."""
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, seedbox_sensors=[SEEDBOX], auto_pause=True)
    )

    set_free(hass, SEEDBOX, 40.0)
    await async_settle(hass)
    await async_advance(hass, minutes=4)
    assert log(calls) == []
    await async_advance(hass, minutes=6)
    assert log(calls) == [
        (
            "persistent_notification.create",
            {
                "title": "Low free space",
                "message": "My seedbox Free space: 40.0 GB free, below 50 GB.",
                "notification_id": "q4d_low_space_sensor_my_seedbox_free_space",
            },
        )
    ]  # a seedbox never pauses the queue

    await async_set_and_wait(hass, SEEDBOX, 35.0)  # lower still: no second alert
    await async_set_and_wait(hass, SEEDBOX, 52.0)  # above the threshold, not recovered
    assert len(log(calls)) == 1
    await async_set_and_wait(hass, SEEDBOX, 30.0)  # below again: alerted again (same id)
    assert [entry[1]["message"] for entry in log(calls)] == [
        "My seedbox Free space: 40.0 GB free, below 50 GB.",
        "My seedbox Free space: 30.0 GB free, below 50 GB.",
    ]

    await async_set_and_wait(hass, SEEDBOX, 60.0)
    assert log(calls)[2:] == [
        (
            "persistent_notification.dismiss",
            {"notification_id": "q4d_low_space_sensor_my_seedbox_free_space"},
        )
    ]


async def test_destination_pause_resume_and_notify_services(
    hass: HomeAssistant, calls: list[ServiceCall]
) -> None:
    """A destination in TiB: pause, Discord with target and data, notify entities, resume."""
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            destination_sensors=[LIBRARY],
            threshold=100,
            margin=10,
            for_minutes=0,
            auto_pause=True,
            auto_resume=True,
            notify_action="notify.discord",
            notify_target=["1234567890"],
            notify_data={"embed": {"color": 16711680}},
            notify_entities=["notify.family"],
            notify_recovered=True,
        ),
    )

    await async_set_and_wait(hass, LIBRARY, 0.08, "TiB", minutes=0)  # 87.96 GB
    message = "Disk free /media: 88.0 GB free, below 100 GB; q4d transfers are paused."
    assert log(calls) == [
        ("q4d.pause", {}),
        (
            "notify.discord",
            {
                "message": message,
                "title": "Low free space",
                "target": ["1234567890"],
                "data": {"embed": {"color": 16711680}},
            },
        ),
        (
            "notify.send_message",
            {"entity_id": ["notify.family"], "title": "Low free space", "message": message},
        ),
    ]

    await async_set_and_wait(hass, LIBRARY, 105, minutes=0)  # GB now, above 100, below 110
    assert len(log(calls)) == 3
    await async_set_and_wait(hass, LIBRARY, 1.5, "TB", minutes=0)
    assert log(calls)[3:] == [
        ("q4d.resume", {}),
        (
            "notify.discord",
            {
                "message": "Disk free /media: 1.5 TB free again; q4d transfers resumed.",
                "title": "Low free space",
                "target": ["1234567890"],
                "data": {"embed": {"color": 16711680}},
            },
        ),
        (
            "notify.send_message",
            {
                "entity_id": ["notify.family"],
                "title": "Low free space",
                "message": "Disk free /media: 1.5 TB free again; q4d transfers resumed.",
            },
        ),
    ]


@pytest.mark.parametrize(
    ("value", "unit", "low"),
    [
        ("47000", "MB", True),
        ("53000", "MB", False),
        ("46", "GiB", True),  # 49.4 GB
        ("47", "GiB", False),  # 50.5 GB
        ("49", None, True),  # no unit: GB
        ("48318382080", "B", True),  # 48.3 GB
        ("0.049", "TB", True),
    ],
)
async def test_units(
    hass: HomeAssistant, calls: list[ServiceCall], value: str, unit: str | None, low: bool
) -> None:
    """Values are compared in GB whatever the sensor's unit."""
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, destination_sensors=[LIBRARY], for_minutes=0)
    )

    await async_set_and_wait(hass, LIBRARY, value, unit, minutes=0)
    assert len(log(calls)) == (1 if low else 0)


async def test_unavailable(hass: HomeAssistant, calls: list[ServiceCall]) -> None:
    """Unavailable is neither low nor a recovery; back low from unavailable alerts."""
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            seedbox_sensors=[SEEDBOX],
            for_minutes=0,
            notify_action="notify.discord",
            notify_recovered=True,
        ),
    )

    await async_set_and_wait(hass, SEEDBOX, "unavailable", minutes=0)
    await async_set_and_wait(hass, SEEDBOX, 500, minutes=0)
    assert log(calls) == []

    await async_set_and_wait(hass, SEEDBOX, "unavailable", minutes=0)
    await async_set_and_wait(hass, SEEDBOX, 10, minutes=0)
    assert [entry[1]["message"] for entry in log(calls)] == [
        "My seedbox Free space: 10.0 GB free, below 50 GB."
    ]


async def test_q4d_destination_sensor_pauses_its_bridge(
    hass: HomeAssistant, calls: list[ServiceCall], entity_registry: er.EntityRegistry
) -> None:
    """With no bridge chosen, a q4d sensor's own bridge is paused."""
    entry = MockConfigEntry(domain="q4d", entry_id=ENTRY_ID)
    entry.add_to_hass(hass)
    q4d_sensor = entity_registry.async_get_or_create(
        "sensor", "q4d", "home:destination:tv:free_space", config_entry=entry
    ).entity_id
    set_free(hass, q4d_sensor, 900)
    await async_setup_automations(
        hass,
        use_blueprint(BLUEPRINT, destination_sensors=[q4d_sensor], for_minutes=0, auto_pause=True),
    )

    await async_set_and_wait(hass, q4d_sensor, 20, minutes=0)
    assert log(calls)[0] == ("q4d.pause", {"config_entry_id": ENTRY_ID})


async def test_low_at_start(hass: HomeAssistant, calls: list[ServiceCall]) -> None:
    """Sensors already low when Home Assistant starts are reported at the start."""
    hass.set_state(CoreState.not_running)
    set_free(hass, SEEDBOX, 12.0)
    set_free(hass, LIBRARY, 0.01, "TiB")  # 11 GB
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            seedbox_sensors=[SEEDBOX],
            destination_sensors=[LIBRARY],
            auto_pause=True,
            bridge=ENTRY_ID,
        ),
    )
    assert log(calls) == []

    await hass.async_start()
    await hass.async_block_till_done()

    assert log(calls) == [
        ("q4d.pause", {"config_entry_id": ENTRY_ID}),
        (
            "persistent_notification.create",
            {
                "title": "Low free space",
                "message": "My seedbox Free space: 12.0 GB free, below 50 GB; q4d transfers are paused.",
                "notification_id": "q4d_low_space_sensor_my_seedbox_free_space",
            },
        ),
        (
            "persistent_notification.create",
            {
                "title": "Low free space",
                "message": "Disk free /media: 11.0 GB free, below 50 GB; q4d transfers are paused.",
                "notification_id": "q4d_low_space_sensor_disk_free_media",
            },
        ),
    ]
