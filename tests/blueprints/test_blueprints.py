"""Every blueprint: schema, metadata, selectors, import from its URL, and refused bad input."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
from awesomeversion import AwesomeVersion
from homeassistant.components.automation.config import async_validate_config_item
from homeassistant.components.automation.helpers import async_get_blueprints
from homeassistant.components.blueprint import BlueprintException, importer
from homeassistant.const import STATE_ON, STATE_UNAVAILABLE
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.util import yaml as yaml_util
from pytest_homeassistant_custom_component.common import async_mock_service
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from .common import (
    BLUEPRINT_SOURCE,
    BLUEPRINTS,
    DOCS,
    PHONE_NOTIFY,
    add_phone,
    async_fire_transfer,
    async_setup_automations,
    blob_url,
    import_link,
    raw_url,
    use_blueprint,
)

MODES = ("single", "restart", "queued", "parallel")
# Inputs that pick something of the q4d integration: their selectors are filtered to it.
Q4D_INPUTS = ("queue_switch", "seedbox_sensors", "q4d_devices", "bridge")


def selector_integrations(config: dict[str, Any]) -> set[str]:
    """The integrations a selector is filtered to (directly or by its filters)."""
    filters = config.get("filter", [])
    filters = filters if isinstance(filters, list) else [filters]
    found = {f["integration"] for f in filters if "integration" in f}
    if "integration" in config:
        found.add(config["integration"])
    return found


def required_inputs(hass: HomeAssistant, file_name: str) -> dict[str, Any]:
    """Valid values for a blueprint's inputs that have no default."""
    return {
        "transfer_completed_notification.yaml": {"notify_device": add_phone(hass)},
        "transfer_failed_notification.yaml": {"notify_device": add_phone(hass)},
        "pause_while_streaming.yaml": {
            "media_players": ["media_player.tv"],
            "queue_switch": "switch.home_media_bridge_queue_paused",
        },
    }.get(file_name, {})


def all_inputs(data: Any) -> set[str]:
    """The names of every `!input` in a loaded blueprint."""
    if isinstance(data, yaml_util.Input):
        return {data.name}
    if isinstance(data, dict):
        return set().union(*(all_inputs(value) for value in data.values()))
    if isinstance(data, list):
        return set().union(*(all_inputs(value) for value in data))
    return set()


def test_the_seven_blueprints() -> None:
    """The folder holds exactly the documented blueprints."""
    assert sorted(path.name for path in BLUEPRINT_SOURCE.glob("*.yaml")) == sorted(BLUEPRINTS)


@pytest.mark.parametrize("file_name", BLUEPRINTS)
async def test_metadata_and_selectors(hass: HomeAssistant, file_name: str) -> None:
    """Loaded by the blueprint integration; metadata, inputs and mode as required."""
    blueprint = await async_get_blueprints(hass).async_get_blueprint(f"q4d/{file_name}")
    metadata = blueprint.metadata
    assert blueprint.domain == "automation"
    assert blueprint.name.startswith("q4d: ")
    assert len(metadata["description"]) > 200
    assert metadata["author"] == "q4d"
    assert metadata["source_url"] == blob_url(file_name)
    min_version = metadata["homeassistant"]["min_version"]
    assert AwesomeVersion(min_version) <= AwesomeVersion("2025.4.0")
    assert AwesomeVersion(min_version) <= AwesomeVersion(HA_VERSION)
    assert blueprint.validate() is None

    for name, spec in blueprint.inputs.items():
        assert spec.get("name"), name
        ((kind, config),) = spec["selector"].items()
        if kind in ("config_entry", "device") or name in Q4D_INPUTS:
            expected = {"mobile_app"} if name == "notify_device" else {"q4d"}
            assert selector_integrations(config or {}) == expected, name

    raw = yaml_util.load_yaml_dict(BLUEPRINT_SOURCE / file_name)
    # Every input is used and every !input is declared.
    assert all_inputs({k: v for k, v in raw.items() if k != "blueprint"}) == set(blueprint.inputs)
    # The mode is chosen on purpose: a comment above it, and the reason in the description.
    mode = raw["mode"]
    assert mode in MODES
    text = (BLUEPRINT_SOURCE / file_name).read_text(encoding="utf-8")
    assert re.search(rf"^# .*\n(#.*\n)*mode: {mode}$", text, re.MULTILINE), file_name
    assert f"Mode `{mode}`" in metadata["description"]


# The daily digest's time trigger keeps a timer for its next run.
@pytest.mark.parametrize("expected_lingering_timers", [True])
@pytest.mark.parametrize("file_name", BLUEPRINTS)
async def test_import_from_github_and_use(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker, file_name: str
) -> None:
    """What the My Home Assistant link does: fetch from GitHub, save, then use it."""
    aioclient_mock.get(raw_url(file_name), text=(BLUEPRINT_SOURCE / file_name).read_text())

    imported = await importer.fetch_blueprint_from_url(hass, blob_url(file_name))

    assert imported.suggested_filename == f"q4d-project/{file_name.removesuffix('.yaml')}"
    assert imported.blueprint.metadata["source_url"] == blob_url(file_name)
    blueprints = async_get_blueprints(hass)
    await blueprints.async_add_blueprint(imported.blueprint, f"{imported.suggested_filename}.yaml")
    await async_setup_automations(
        hass,
        {
            "alias": "imported",
            "use_blueprint": {
                "path": f"{imported.suggested_filename}.yaml",
                "input": required_inputs(hass, file_name),
            },
        },
    )
    assert hass.states.get("automation.imported").state == STATE_ON


@pytest.mark.parametrize("expected_lingering_timers", [True])
async def test_all_together(hass: HomeAssistant) -> None:
    """All seven instantiated side by side, with only their required inputs."""
    await async_setup_automations(
        hass,
        *(use_blueprint(name, **required_inputs(hass, name)) for name in BLUEPRINTS),
    )
    for name in BLUEPRINTS:
        assert hass.states.get(f"automation.{name.removesuffix('.yaml')}").state == STATE_ON


@pytest.mark.parametrize(
    ("file_name", "inputs", "error"),
    [
        ("transfer_completed_notification.yaml", {}, "Missing input notify_device"),
        ("transfer_failed_notification.yaml", {"repeat_every": 5}, "Missing input notify_device"),
        (
            "pause_while_streaming.yaml",
            {"media_players": ["media_player.tv"]},
            "Missing input queue_switch",
        ),
    ],
)
async def test_missing_required_input(
    hass: HomeAssistant,
    caplog: pytest.LogCaptureFixture,
    file_name: str,
    inputs: dict[str, Any],
    error: str,
) -> None:
    """An instance without a required input is refused, from the UI and from YAML."""
    config = use_blueprint(file_name, alias="broken", **inputs)
    with pytest.raises(BlueprintException, match=error):
        await async_validate_config_item(hass, "broken", config)

    with caplog.at_level(logging.ERROR):
        await async_setup_automations(hass, config)
    assert hass.states.get("automation.broken").state == STATE_UNAVAILABLE
    assert error in caplog.text


@pytest.mark.parametrize(
    ("file_name", "inputs", "error"),
    [
        ("daily_digest.yaml", {"digest_time": "25:99:00"}, "Expected HH:MM, HH:MM:SS"),
        (
            "pause_while_streaming.yaml",
            {"media_players": ["the tv"], "queue_switch": "switch.x"},
            "Entity the tv is neither a valid entity ID nor a valid UUID",
        ),
        (
            "low_free_space.yaml",
            {"seedbox_sensors": ["sensor.x"], "threshold": "plenty"},
            "expected float",
        ),
    ],
)
async def test_malformed_input(
    hass: HomeAssistant,
    caplog: pytest.LogCaptureFixture,
    file_name: str,
    inputs: dict[str, Any],
    error: str,
) -> None:
    """An input of the wrong form makes an invalid automation, which is refused."""
    config = use_blueprint(file_name, alias="broken", **inputs)
    with pytest.raises(vol.Invalid):
        await async_validate_config_item(hass, "broken", config)

    with caplog.at_level(logging.ERROR):
        await async_setup_automations(hass, config)
    assert hass.states.get("automation.broken").state == STATE_UNAVAILABLE
    assert "generated invalid automation" in caplog.text
    assert error in caplog.text


async def test_unavailable_automation_does_nothing(hass: HomeAssistant) -> None:
    """A refused instance never runs."""
    notify = async_mock_service(hass, "notify", PHONE_NOTIFY)
    await async_setup_automations(
        hass, use_blueprint("transfer_completed_notification.yaml", alias="broken")
    )
    await async_fire_transfer(hass, "completed")
    assert notify == []


def test_docs_link_every_blueprint() -> None:
    """docs/automations.md has a My Home Assistant import link for each blueprint."""
    docs = DOCS.read_text(encoding="utf-8")
    for file_name in BLUEPRINTS:
        assert import_link(file_name) in docs, file_name
        assert f"blueprints/automation/q4d/{file_name}" in docs


def test_placeholder_url_is_the_manifests() -> None:
    """The placeholder repository URL is the one of the integration's manifest."""
    manifest = Path(__file__).resolve().parents[2] / "custom_components" / "q4d" / "manifest.json"
    assert '"documentation": "https://github.com/q4d-project/q4d/' in manifest.read_text()
