"""Blueprint: pause the q4d queue while media players play, resume afterwards."""

from __future__ import annotations

from datetime import datetime

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .common import (
    ENTRY_ID,
    async_advance,
    async_record_services,
    async_settle,
    async_setup_automations,
    use_blueprint,
)

BLUEPRINT = "pause_while_streaming.yaml"
SWITCH = "switch.home_media_bridge_queue_paused"
TV = "media_player.living_room"
BEDROOM = "media_player.bedroom"


@pytest.fixture
def q4d_calls(hass: HomeAssistant, entity_registry: er.EntityRegistry) -> list[ServiceCall]:
    """The bridge's Queue paused switch (off), and q4d.pause/resume recorded in one list."""
    entry = MockConfigEntry(domain="q4d", entry_id=ENTRY_ID, title="Home media bridge")
    entry.add_to_hass(hass)
    entity_registry.async_get_or_create(
        "switch",
        "q4d",
        "home_queue_paused",
        config_entry=entry,
        suggested_object_id="home_media_bridge_queue_paused",
    )
    hass.states.async_set(SWITCH, "off")
    hass.states.async_set(TV, "idle")
    hass.states.async_set(BEDROOM, "off")
    return async_record_services(hass, "q4d", "pause", "resume")


def ops(calls: list[ServiceCall]) -> list[tuple[str, dict[str, str]]]:
    """(action, data) of the q4d actions called."""
    return [(call.service, dict(call.data)) for call in calls]


PAUSE = ("pause", {"config_entry_id": ENTRY_ID})
RESUME = ("resume", {"config_entry_id": ENTRY_ID})


async def async_play(hass: HomeAssistant, entity_id: str, state: str = "playing") -> None:
    """A media player changes state."""
    hass.states.async_set(entity_id, state)
    await async_settle(hass)


async def test_pause_and_resume(hass: HomeAssistant, q4d_calls: list[ServiceCall]) -> None:
    """Playing for the start delay pauses; nothing playing for the resume delay resumes."""
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, media_players=[TV, BEDROOM], queue_switch=SWITCH)
    )

    await async_play(hass, TV)
    await async_advance(hass, seconds=5)
    assert q4d_calls == []
    await async_advance(hass, seconds=11)
    assert ops(q4d_calls) == [PAUSE]

    # The second player joins, the first stops: still streaming.
    await async_play(hass, BEDROOM, "buffering")
    await async_play(hass, TV, "idle")
    await async_advance(hass, seconds=120)
    assert ops(q4d_calls) == [PAUSE]

    await async_play(hass, BEDROOM, "paused")
    await async_advance(hass, seconds=30)
    assert ops(q4d_calls) == [PAUSE]
    await async_advance(hass, seconds=61)
    assert ops(q4d_calls) == [PAUSE, RESUME]


async def test_short_plays_and_restarts(hass: HomeAssistant, q4d_calls: list[ServiceCall]) -> None:
    """A short play does not pause; playing again within the resume delay does not resume."""
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT, media_players=[TV], queue_switch=SWITCH, start_delay=30, resume_delay=300
        ),
    )

    await async_play(hass, TV)
    await async_advance(hass, seconds=10)
    await async_play(hass, TV, "paused")
    await async_advance(hass, seconds=60)
    assert q4d_calls == []

    await async_play(hass, TV)
    await async_advance(hass, seconds=31)
    assert ops(q4d_calls) == [PAUSE]

    await async_play(hass, TV, "idle")
    await async_advance(hass, seconds=100)
    await async_play(hass, TV)
    await async_advance(hass, seconds=250)  # the resume delay ends while it plays
    assert ops(q4d_calls) == [PAUSE]

    await async_play(hass, TV, "idle")
    await async_advance(hass, seconds=301)
    assert ops(q4d_calls) == [PAUSE, RESUME]


async def test_already_paused(hass: HomeAssistant, q4d_calls: list[ServiceCall]) -> None:
    """A queue paused by hand (or by another automation) is left alone."""
    hass.states.async_set(SWITCH, "on")
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, media_players=[TV], queue_switch=SWITCH, start_delay=0)
    )

    await async_play(hass, TV)
    await async_play(hass, TV, "idle")
    await async_advance(hass, seconds=120)
    assert q4d_calls == []


@pytest.mark.parametrize(
    ("local_time", "paused"),
    [
        ((12, 0), False),
        ((16, 59), False),
        ((17, 0), True),
        ((23, 30), True),
        ((0, 30), True),
        ((1, 0), False),
    ],
)
async def test_time_window(
    hass: HomeAssistant,
    q4d_calls: list[ServiceCall],
    freezer: FrozenDateTimeFactory,
    local_time: tuple[int, int],
    paused: bool,
) -> None:
    """Only inside the window (17:00-01:00 here, across midnight)."""
    time_zone = dt_util.get_default_time_zone()
    freezer.move_to(datetime(2025, 3, 14, *local_time, tzinfo=time_zone))
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            media_players=[TV],
            queue_switch=SWITCH,
            start_delay=0,
            active_from="17:00:00",
            active_until="01:00:00",
        ),
    )

    await async_play(hass, TV)
    assert ops(q4d_calls) == ([PAUSE] if paused else [])
