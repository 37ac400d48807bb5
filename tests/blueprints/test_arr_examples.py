"""The Home Assistant examples of docs/arr.md, run as documented: the notification for a
torrent that Sonarr or Radarr grabbed (found through the bridge's management route by
the documented rest_command, its answer made by the bridge's own code), and the one for
Overseerr's `available`."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_mock_service
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker
from q4d_bridge.dispatch.requests import Request, RequestState

from .common import (
    ITEM_ID,
    OTHER_ITEM_ID,
    PHONE_NOTIFY,
    REPO_ROOT,
    async_fire_transfer,
    async_settle,
    async_setup_automations,
    docs_yaml_block,
)

ARR_DOCS = REPO_ROOT / "docs" / "arr.md"
ADMIN_KEY = "a" * 32


def landed(request_id: str, source: str, item_id: str) -> dict[str, Any]:
    """A landed request as the bridge's `requests` answer carries it."""
    return Request(
        id=request_id, created_at=1.0, updated_at=2.0, source=source, category="tv",
        name="Show.S01E01.mkv", info_hash="ab" * 20, v1="ab" * 20, v2=None, seedbox="seedbox1",
        size=1_500_000_000, state=RequestState.LANDED, decision_id="d", item_id=item_id,
        local_path="/media/tv/Show.S01E01.mkv",
    ).as_dict()  # fmt: skip


async def test_a_torrent_an_app_grabbed_is_home(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    rest_commands = docs_yaml_block("rest_command", "q4d_landed_requests", ARR_DOCS)
    (command,) = rest_commands["rest_command"].values()
    assert command["headers"] == {"X-API-Key": "<secret q4d_admin_key>"}
    command["headers"] = {"X-API-Key": ADMIN_KEY}
    aioclient_mock.get(
        command["url"],
        json={"requests": [landed("r1", "api", ITEM_ID), landed("r2", "ha", OTHER_ITEM_ID)]},
        headers={"Content-Type": "application/json"},  # as the bridge answers
    )
    assert await async_setup_component(hass, "rest_command", rest_commands)
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    await async_setup_automations(
        hass, docs_yaml_block("alias", "rest_command.q4d_landed_requests", ARR_DOCS)
    )

    await async_fire_transfer(hass, "completed", category="tv")
    await async_fire_transfer(hass, "completed", item_id=OTHER_ITEM_ID)  # added from HA
    await async_fire_transfer(hass, "completed", item_id="f" * 16)  # reported by the seedbox
    await hass.async_block_till_done()

    (call,) = notify
    assert call.data["title"] == "Home, importing now"
    assert call.data["message"] == (
        "Show.S01E01.mkv landed in /media/tv/Show.S01E01.mkv; Sonarr imports it within a minute."
    )
    assert call.data["data"] == {"tag": f"q4d-{ITEM_ID}"}
    assert len(aioclient_mock.mock_calls) == 3
    assert {str(c[1]) for c in aioclient_mock.mock_calls} == {command["url"]}
    assert all(c[3]["X-API-Key"] == ADMIN_KEY for c in aioclient_mock.mock_calls)


async def test_overseerr_says_it_is_available(hass: HomeAssistant) -> None:
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    await async_setup_automations(
        hass, docs_yaml_block("alias", "event.overseerr_last_media_event", ARR_DOCS)
    )
    entity = "event.overseerr_last_media_event"
    for at, kind in (("2026-12-06T10:00:00+00:00", "approved"),
                     ("2026-12-06T10:20:00+00:00", "available")):  # fmt: skip
        hass.states.async_set(entity, at, {"event_type": kind, "subject": "Film (2024)"})
        await async_settle(hass)
    await hass.async_block_till_done()

    (call,) = notify
    assert call.data == {"title": "Ready to watch", "message": "Film (2024) is in the library"}
