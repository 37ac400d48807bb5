"""Torrent dispatch actions: add_torrent and preview_dispatch, their commands, responses and
the bridge's refusals; queue commands refused for torrent requests."""

from __future__ import annotations

import logging
from typing import Any
from unittest.mock import patch

import pytest
import voluptuous as vol
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.q4d.const import DOMAIN
from custom_components.q4d.dispatch import DISPATCH_ERRORS

from .common import FakeBridge, async_send
from .payloads import REQUEST_1, item_topic, request_item

MAGNET = "magnet:?xt=urn:btih:fedcba9876543210fedcba9876543210fedcba98&dn=Show.S01E02.mkv"
URL = "https://tracker.example/download/12345.torrent"
CLIENTS = [
    {"seedbox": "seedbox1", "name": "My seedbox", "type": "qbittorrent", "score": 3.254,
     "eligible": True, "reason_code": "eligible", "reason": "eligible"},
    {"seedbox": "seedbox3", "name": "Full", "type": "deluge", "score": -2.0, "eligible": False,
     "reason_code": "below_min_free", "reason": "below min free space: 12.0 GiB free"},
]  # fmt: skip
DECISION = {
    "id": "d1",
    "at": 1700000000.0,
    "dry_run": False,
    "source": "ha",
    "name": "Show.S01E02.mkv",
    "info_hash": "fedcba9876543210fedcba9876543210fedcba98",
    "size": None,
    "size_estimated": True,
    "category": "tv-sonarr",
    "requested_seedbox": None,
    "clients": CLIENTS,
    "chosen": "seedbox1",
    "outcome": "added",
    "error": None,
    "request_id": REQUEST_1,
}
REQUEST = {
    "id": REQUEST_1,
    "source": "ha",
    "category": "tv-sonarr",
    "name": "Show.S01E02.mkv",
    "info_hash": "fedcba9876543210fedcba9876543210fedcba98",
    "seedbox": "seedbox1",
    "state": "requested",
    "progress": 0.0,
}


@pytest.mark.parametrize(
    ("data", "args"),
    [
        ({"magnet": MAGNET}, {"magnet": MAGNET}),
        (
            {"url": URL, "category": "tv-sonarr", "seedbox": "seedbox1", "paused": "yes"},
            {"url": URL, "category": "tv-sonarr", "seedbox": "seedbox1", "paused": True},
        ),
        # empty fields, as a form may send them, count as not given
        (
            {"magnet": MAGNET, "url": "", "category": "", "paused": False},
            {"magnet": MAGNET, "paused": False},
        ),
    ],
)
async def test_add_torrent(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    data: dict[str, Any],
    args: dict[str, Any],
) -> None:
    """add_torrent sends `add` from Home Assistant; the response names the request."""
    fake_bridge.answers["add"] = {"ok": True, "result": {"request": REQUEST, "decision": DECISION}}
    response = await hass.services.async_call(
        DOMAIN, "add_torrent", data, blocking=True, return_response=True
    )
    assert fake_bridge.ops == [("add", {**args, "source": "ha"})]
    assert response == {
        "request_id": REQUEST_1,
        "seedbox": "seedbox1",
        "info_hash": "fedcba9876543210fedcba9876543210fedcba98",
        "name": "Show.S01E02.mkv",
        "decision": DECISION,
    }
    # without response data, from a script or the card
    await hass.services.async_call(DOMAIN, "add_torrent", data, blocking=True)
    assert len(fake_bridge.commands) == 2


async def test_add_torrent_odd_result(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """A result without a request object gives empty fields, not an error."""
    fake_bridge.answers["add"] = {"ok": True, "result": {"request": "r"}}
    response = await hass.services.async_call(
        DOMAIN, "add_torrent", {"magnet": MAGNET}, blocking=True, return_response=True
    )
    assert response == dict.fromkeys(("request_id", "seedbox", "info_hash", "name", "decision"))


async def test_preview_dispatch(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """preview_dispatch sends `preview` and returns the bridge's choice and scores."""
    decision = {**DECISION, "dry_run": True, "outcome": "dry_run", "request_id": None}
    fake_bridge.answers["preview"] = {"ok": True, "result": {"decision": decision}}
    response = await hass.services.async_call(
        DOMAIN,
        "preview_dispatch",
        {"url": URL, "category": "tv-sonarr", "seedbox": ""},
        blocking=True,
        return_response=True,
    )
    assert fake_bridge.ops == [("preview", {"url": URL, "category": "tv-sonarr"})]
    assert response == {"chosen": "seedbox1", "clients": CLIENTS}

    fake_bridge.answers["preview"] = {"ok": True, "result": {"decision": {"clients": None}}}
    response = await hass.services.async_call(
        DOMAIN, "preview_dispatch", {"magnet": MAGNET}, blocking=True, return_response=True
    )
    assert response == {"chosen": None, "clients": []}


REFUSALS = {
    "invalid_torrent": "magnet has no xt (urn:btih or urn:btmh)",
    "duplicate": "already on My seedbox (seedbox1) as Show.S01E02.mkv",
    "unknown_category": "category 'anime' is in no rule and not in dispatch.categories",
    "unknown_seedbox": "no seedbox 'nas'",
    "no_eligible_client": "My seedbox: below min free space; Second seedbox: no_client",
    "client_error": "qBittorrent: 415 torrent file is not valid",
}
MESSAGES = {
    "invalid_torrent": "The q4d bridge cannot read the torrent: ",
    "duplicate": "The torrent is already there: ",
    "unknown_category": "The q4d bridge does not know the category: ",
    "unknown_seedbox": "The q4d bridge cannot send torrents to that seedbox: ",
    "no_eligible_client": "No seedbox can take the torrent now: ",
    "client_error": "The torrent client did not take the torrent: ",
}


@pytest.mark.parametrize("service", ["add_torrent", "preview_dispatch"])
@pytest.mark.parametrize("code", list(REFUSALS))
async def test_refusals(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    caplog: pytest.LogCaptureFixture,
    service: str,
    code: str,
) -> None:
    """Each refusal is a translated error that keeps the bridge's reason: a validation
    error when the input is at fault, an action error when no seedbox can take it."""
    op = "add" if service == "add_torrent" else "preview"
    fake_bridge.answers[op] = {"ok": False, "error": {"code": code, "message": REFUSALS[code]}}
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            DOMAIN, service, {"magnet": MAGNET}, blocking=True, return_response=True
        )
    key, invalid_input = DISPATCH_ERRORS[code]
    assert err.value.translation_key == key == f"dispatch_{code}"
    assert err.value.translation_placeholders == {"message": REFUSALS[code]}
    assert isinstance(err.value, ServiceValidationError) == invalid_input
    assert str(err.value) == MESSAGES[code] + REFUSALS[code]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("code", "validation"), [("not_configured", True), ("invalid_args", False)]
)
async def test_other_refusals(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    code: str,
    validation: bool,
) -> None:
    """Other refusals are reported as for every command."""
    fake_bridge.answers["add"] = {"ok": False, "error": {"code": code, "message": "no"}}
    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(DOMAIN, "add_torrent", {"magnet": MAGNET}, blocking=True)
    assert err.value.translation_key == "command_failed"
    assert isinstance(err.value, ServiceValidationError) == validation


async def test_timeout(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """Adding waits longer than other commands: the bridge may fetch a .torrent first."""
    fake_bridge.silent = True
    with (
        patch("custom_components.q4d.dispatch.DISPATCH_TIMEOUT", 0.05),
        pytest.raises(HomeAssistantError) as err,
    ):
        await hass.services.async_call(DOMAIN, "add_torrent", {"url": URL}, blocking=True)
    assert err.value.translation_key == "command_timeout"
    assert err.value.translation_placeholders["timeout"] == "0.05"


@pytest.mark.parametrize("service", ["add_torrent", "preview_dispatch"])
@pytest.mark.parametrize(
    "data", [{}, {"magnet": MAGNET, "url": URL}, {"magnet": "", "url": ""}, {"category": "tv"}]
)
async def test_exactly_one_torrent(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    service: str,
    data: dict[str, Any],
) -> None:
    """A magnet link or a URL, not both and not neither: refused before anything is sent."""
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, service, data, blocking=True, return_response=service == "preview_dispatch"
        )
    assert err.value.translation_key == "one_torrent"
    assert str(err.value).startswith("Give the torrent as either a magnet link or the URL")
    assert fake_bridge.commands == []


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("add_torrent", {"url": "ftp://tracker.example/x.torrent"}),
        ("add_torrent", {"url": "not a url"}),
        ("add_torrent", {"magnet": MAGNET, "paused": "maybe"}),
        ("add_torrent", {"magnet": MAGNET, "priority": 1}),
        ("preview_dispatch", {"magnet": MAGNET, "paused": True}),
    ],
)
async def test_schema(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    service: str,
    data: dict[str, Any],
) -> None:
    """Malformed fields are refused by the schema."""
    with pytest.raises(vol.Invalid):
        await hass.services.async_call(DOMAIN, service, data, blocking=True, return_response=True)
    assert fake_bridge.commands == []


async def test_preview_returns_only_data(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_bridge: FakeBridge
) -> None:
    """preview_dispatch has nothing to do without response data."""
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            DOMAIN, "preview_dispatch", {"magnet": MAGNET}, blocking=True
        )
    assert fake_bridge.commands == []


@pytest.mark.parametrize(
    ("service", "data"),
    [
        ("retry", {}),
        ("cancel", {}),
        ("pause", {}),
        ("resume", {}),
        ("set_priority", {"priority": 5}),
    ],
)
@pytest.mark.parametrize("state", ["requested", "downloading", "failed"])
async def test_queue_commands_refused_for_requests(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_bridge: FakeBridge,
    service: str,
    data: dict[str, Any],
    state: str,
) -> None:
    """A torrent request is not in the queue: no item command applies to it."""
    await async_send(hass, item_topic(REQUEST_1), request_item(state=state))
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, service, {"item_id": REQUEST_1, **data}, blocking=True
        )
    assert err.value.translation_key == "not_queued"
    assert str(err.value).startswith("Show.S01E02.mkv is a torrent request")
    assert fake_bridge.commands == []
