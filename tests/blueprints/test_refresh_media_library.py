"""Blueprint: transfer completed -> refresh the media library (Plex, Jellyfin, Emby, script)."""

from __future__ import annotations

import json
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import async_mock_service
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker
from yarl import URL

from .common import (
    ITEM_ID,
    async_advance,
    async_fire_transfer,
    async_setup_automations,
    docs_yaml_block,
    use_blueprint,
)

BLUEPRINT = "refresh_media_library.yaml"

# The rest_commands of docs/automations.md, with the secrets filled in.
PLEX_URL = "http://plex.lan:32400"
JELLYFIN_URL = "http://jellyfin.lan:8096"
EMBY_URL = "http://emby.lan:8096"
REST_COMMANDS: dict[str, Any] = {
    "q4d_plex_scan": {
        "url": PLEX_URL + "/library/sections/{{ library }}/refresh?path={{ folder | urlencode }}",
        "method": "get",
        "headers": {"X-Plex-Token": "plex-token"},
    },
    "q4d_jellyfin_scan": {
        "url": JELLYFIN_URL + "/Library/Media/Updated",
        "method": "post",
        "headers": {"Authorization": 'MediaBrowser Token="jellyfin-key"'},
        "content_type": "application/json",
        "payload": '{"Updates": [{"Path": {{ path | to_json }}, "UpdateType": "Created"}]}',
    },
    "q4d_emby_scan": {
        "url": EMBY_URL + "/Library/Media/Updated",
        "method": "post",
        "headers": {"X-Emby-Token": "emby-key"},
        "content_type": "application/json",
        "payload": '{"Updates": [{"Path": {{ path | to_json }}, "UpdateType": "Created"}]}',
    },
}


def test_rest_commands_are_the_documented_ones() -> None:
    """The rest_commands used here are those of docs/automations.md (secrets aside)."""
    documented = docs_yaml_block("rest_command", "q4d_plex_scan")["rest_command"]
    assert set(documented) == set(REST_COMMANDS)
    for name, config in REST_COMMANDS.items():
        doc = documented[name]
        assert {k: v for k, v in doc.items() if k != "headers"} == {
            k: v for k, v in config.items() if k != "headers"
        }
        assert set(doc["headers"]) == set(config["headers"])
        assert all(value.startswith("<secret ") for value in doc["headers"].values())


async def async_setup_rest_commands(hass: HomeAssistant) -> None:
    """The documented rest_commands."""
    assert await async_setup_component(hass, "rest_command", {"rest_command": REST_COMMANDS})
    await hass.async_block_till_done()


async def test_plex_library_refresh(hass: HomeAssistant) -> None:
    """Plex integration: plex.refresh_library for the chosen categories only."""
    refresh = async_mock_service(hass, "plex", "refresh_library")
    await async_setup_automations(
        hass,
        use_blueprint(BLUEPRINT, alias="tv", library="TV Shows", categories=["TV-Sonarr"]),
        use_blueprint(
            BLUEPRINT,
            alias="movies",
            library="Movies",
            plex_server="Basement",
            categories=["radarr"],
        ),
    )

    await async_fire_transfer(hass, "completed")
    await async_fire_transfer(hass, "completed", category="radarr", destination="movies")
    await async_fire_transfer(hass, "completed", category="lidarr")
    await async_fire_transfer(hass, "failed")

    assert [call.data for call in refresh] == [
        {"library_name": "TV Shows"},
        {"library_name": "Movies", "server_name": "Basement"},
    ]


async def test_jellyfin_path_mapping(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker
) -> None:
    """Jellyfin: the documented rest_command reports the mapped path of the payload."""
    aioclient_mock.post(f"{JELLYFIN_URL}/Library/Media/Updated", status=204)
    await async_setup_rest_commands(hass)
    await async_setup_automations(
        hass,
        use_blueprint(
            BLUEPRINT,
            target="jellyfin",
            destinations=["tv"],
            path_from="/media",
            path_to="/data/media",
        ),
    )

    await async_fire_transfer(hass, "completed", destination="movies")
    await async_fire_transfer(hass, "completed", destination_path='/media/tv/Say "Hi" S01/e1.mkv')
    await hass.async_block_till_done()

    assert len(aioclient_mock.mock_calls) == 1
    method, url, data, headers = aioclient_mock.mock_calls[0]
    assert (method.lower(), str(url)) == ("post", f"{JELLYFIN_URL}/Library/Media/Updated")
    assert json.loads(data) == {
        "Updates": [{"Path": '/data/media/tv/Say "Hi" S01/e1.mkv', "UpdateType": "Created"}]
    }
    assert headers["Authorization"] == 'MediaBrowser Token="jellyfin-key"'


async def test_emby(hass: HomeAssistant, aioclient_mock: AiohttpClientMocker) -> None:
    """Emby: the same report, to Emby."""
    aioclient_mock.post(f"{EMBY_URL}/Library/Media/Updated", status=204)
    await async_setup_rest_commands(hass)
    await async_setup_automations(hass, use_blueprint(BLUEPRINT, target="emby"))

    await async_fire_transfer(hass, "completed", destination_path="/media/movies/Film (2021)")
    await hass.async_block_till_done()

    (call,) = aioclient_mock.mock_calls
    assert json.loads(call[2])["Updates"][0]["Path"] == "/media/movies/Film (2021)"
    assert call[3]["X-Emby-Token"] == "emby-key"


async def test_plex_partial_scan(hass: HomeAssistant, aioclient_mock: AiohttpClientMocker) -> None:
    """Plex partial scan: the folder of a file, or the folder itself, in the chosen section."""
    aioclient_mock.get(f"{PLEX_URL}/library/sections/2/refresh")
    await async_setup_rest_commands(hass)
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, target="plex_partial", library="2")
    )

    await async_fire_transfer(hass, "completed", destination_path="/media/tv/My Show/S01E01.mkv")
    await async_fire_transfer(hass, "completed", destination_path="/media/tv/My.Show.S01.1080p")
    await async_fire_transfer(hass, "completed", destination_path="/media/tv/Show.S02")
    await hass.async_block_till_done()

    urls = [URL(str(call[1])) for call in aioclient_mock.mock_calls]
    assert [url.path for url in urls] == ["/library/sections/2/refresh"] * 3
    # "My.Show.S01.1080p" ends in a 5-character suffix: a folder. ".S02" looks like an
    # extension: its parent folder is scanned, which includes it.
    assert [url.query["path"] for url in urls] == [
        "/media/tv/My Show",
        "/media/tv/My.Show.S01.1080p",
        "/media/tv",
    ]
    assert aioclient_mock.mock_calls[0][3]["X-Plex-Token"] == "plex-token"


async def test_custom_rest_command_name(hass: HomeAssistant) -> None:
    """Any rest_command by name, with every variable."""
    calls = async_mock_service(hass, "rest_command", "my_scan")
    await async_setup_automations(
        hass, use_blueprint(BLUEPRINT, target="jellyfin", rest_command="my_scan", library="TV")
    )

    await async_fire_transfer(hass, "completed")

    assert [call.data for call in calls] == [
        {
            "path": "/media/tv/Show.S01E01.mkv",
            "folder": "/media/tv",
            "library": "TV",
            "name": "Show.S01E01.mkv",
            "category": "tv-sonarr",
            "destination": "tv",
            "item_id": ITEM_ID,
        }
    ]


async def test_script_after_delay(hass: HomeAssistant) -> None:
    """A script gets the variables, after the settle delay."""
    scanned = async_mock_service(hass, "test", "scan")
    assert await async_setup_component(
        hass,
        "script",
        {
            "script": {
                "library_scan": {
                    "sequence": [
                        {"action": "test.scan", "data": {"where": "{{ folder }}|{{ path }}"}}
                    ]
                }
            }
        },
    )
    await async_setup_automations(
        hass,
        use_blueprint(BLUEPRINT, target="script", script="script.library_scan", settle_delay=30),
    )

    await async_fire_transfer(hass, "completed")
    await async_advance(hass, seconds=20)
    assert scanned == []

    await async_advance(hass, seconds=31)
    assert [call.data for call in scanned] == [{"where": "/media/tv|/media/tv/Show.S01E01.mkv"}]
