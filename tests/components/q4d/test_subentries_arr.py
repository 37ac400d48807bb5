"""The Sonarr/Radarr subentry flow against the stand-in bridge (config_bridge.py): an
instance tested (`config_test` kind arr) and saved (`config_set` section arr) with its
API key, which no subentry holds; the app's refusals as form errors; an edit that keeps
the bridge's key unless one is typed; instances the bridge publishes become subentries,
those of its YAML file read-only."""

from __future__ import annotations

import pytest
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from pytest_homeassistant_custom_component.common import MockConfigEntry

from . import test_config_subentries
from .config_bridge import ConfigBridge, refusal
from .test_config_subentries import edit, no_secrets, start, step, subentries

config_bridge = test_config_subentries.config_bridge  # the fixture
API_KEY = "a1b2c3d4e5f60718293a"
KEY_FILE = "/data/q4d/secrets/arr-tv-api_key"


async def test_arr_flow(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """Tested with the key, then saved; the subentry holds no key."""
    result = await start(hass, init_integration, "arr")
    assert result["step_id"] == "arr"
    assert {str(k) for k in result["data_schema"].schema} == {"name", "type", "url", "api_key"}
    form = {"name": "tv", "type": "sonarr", "url": " http://127.0.0.1:8989/ ", "api_key": API_KEY}
    result = await step(hass, result, form)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "tv (Sonarr)"
    value = {"type": "sonarr", "url": "http://127.0.0.1:8989/", "api_key": API_KEY}
    assert config_bridge.commands("config_test") == [{"kind": "arr", "value": value}]
    assert config_bridge.commands("config_set") == [{"section": "arr", "id": "tv", "value": value}]
    sub = subentries(init_integration, "arr")["arr:tv"]
    # as the bridge published it: the key's file named, not the key
    assert sub.data["value"]["api_key_file"].endswith("/arr-tv-api_key")
    assert "api_key" not in sub.data["value"]
    assert API_KEY not in str(sub.as_dict())
    no_secrets(hass, init_integration)


@pytest.mark.parametrize(
    ("answer", "errors"),
    [
        (refusal("auth_failed", "API key refused (HTTP 401)"), {"base": "auth_failed"}),
        (refusal("unreachable", "connection refused"), {"base": "unreachable"}),
        (refusal("timeout", "no answer"), {"base": "timeout"}),
        (refusal("unsupported", "is Radarr, not Sonarr"), {"base": "unsupported"}),
        (refusal("invalid", "bad", fields={"url": "must be an http(s) URL"}),
         {"base": "invalid", "url": "invalid_field"}),
    ],
)  # fmt: skip
async def test_arr_refused(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    config_bridge: ConfigBridge,
    answer: dict[str, object],
    errors: dict[str, str],
) -> None:
    """Each failed test is a form error, the key not shown back; fixed, it saves."""
    config_bridge.tests = [answer]
    form = {"name": "films", "type": "radarr", "url": "http://127.0.0.1:7878", "api_key": API_KEY}
    result = await start(hass, init_integration, "arr")
    result = await step(hass, result, form)
    assert result["errors"] == errors
    assert config_bridge.commands("config_set") == []
    for key in result["data_schema"].schema:
        assert (key.description or {}).get("suggested_value") != API_KEY
    result = await step(hass, result, form)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "films (Radarr)"


async def test_arr_name_taken(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """A name the bridge has is refused before any test."""
    config_bridge.add("arr", "tv", {"type": "sonarr", "url": "http://h:8989", "has_api_key": True})
    config_bridge.publish()
    await hass.async_block_till_done()
    result = await start(hass, init_integration, "arr")
    result = await step(
        hass, result, {"name": "tv", "type": "sonarr", "url": "http://h:8989", "api_key": "k" * 20}
    )
    assert result["errors"] == {"name": "already_configured"}
    assert config_bridge.commands("config_test") == []


async def test_arr_synced_and_reconfigured(
    hass: HomeAssistant, init_integration: MockConfigEntry, config_bridge: ConfigBridge
) -> None:
    """The bridge's instances are subentries (its YAML ones read-only); an edit without
    a key names the bridge's key file, one with a key replaces it."""
    value = {"type": "sonarr", "url": "http://h:8989", "timeout": 30.0, "api_key_file": KEY_FILE}
    config_bridge.add("arr", "tv", {**value, "has_api_key": True})
    config_bridge.add(
        "arr", "films", {"type": "radarr", "url": "http://h:7878", "api_key": "***",
                         "has_api_key": True}, "yaml",
    )  # fmt: skip
    config_bridge.publish()
    await hass.async_block_till_done()
    subs = subentries(init_integration, "arr")
    assert (subs["arr:tv"].title, subs["arr:films"].title) == (
        "tv (Sonarr)",
        "films (Radarr) (YAML)",
    )
    assert subs["arr:films"].data["value"] == {"type": "radarr", "url": "http://h:7878"}
    result = await edit(hass, init_integration, "arr:films")
    assert result["reason"] == "read_only_yaml"

    result = await edit(hass, init_integration, "arr:tv")
    assert "name" not in result["data_schema"].schema
    result = await step(hass, result, {"type": "sonarr", "url": "http://h:9898"})
    assert result["reason"] == "reconfigure_successful"
    kept = {**value, "url": "http://h:9898"}
    assert config_bridge.commands("config_test") == [{"kind": "arr", "value": kept}]
    assert config_bridge.commands("config_set")[0]["value"] == kept

    result = await edit(hass, init_integration, "arr:tv")
    result = await step(
        hass, result, {"type": "radarr", "url": "http://h:9898", "api_key": API_KEY}
    )
    new = {"type": "radarr", "url": "http://h:9898", "timeout": 30.0, "api_key": API_KEY}
    assert config_bridge.commands("config_set")[1]["value"] == new
    await hass.async_block_till_done()
    assert subentries(init_integration, "arr")["arr:tv"].title == "tv (Radarr)"
    no_secrets(hass, init_integration)
