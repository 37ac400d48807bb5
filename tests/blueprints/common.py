"""Helpers for the blueprint tests: install the blueprints, instantiate them, fire events."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.core import HomeAssistant, ServiceCall, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

REPO_ROOT = Path(__file__).resolve().parents[2]
BLUEPRINT_SOURCE = REPO_ROOT / "blueprints" / "automation" / "q4d"
DOCS = REPO_ROOT / "docs" / "automations.md"

# Placeholder base URL, the same as the documentation URL in custom_components/q4d/manifest.json.
REPO_URL = "https://github.com/q4d-project/q4d"

BLUEPRINTS = (
    "transfer_completed_notification.yaml",
    "transfer_failed_notification.yaml",
    "refresh_media_library.yaml",
    "pause_while_streaming.yaml",
    "low_free_space.yaml",
    "daily_digest.yaml",
    "forward_events.yaml",
)

ENTRY_ID = "01JQ4DENTRY000000000000000"
ITEM_ID = "483d7eec632f7436"
OTHER_ITEM_ID = "0123456789abcdef"
BRIDGE_DEVICE_ID = "bridge-device-id"
SEEDBOX_DEVICE_ID = "seedbox1-device-id"

PHONE_NAME = "My phone"
PHONE_NOTIFY = "mobile_app_my_phone"


def blob_url(file_name: str) -> str:
    """The GitHub URL of a blueprint (its `source_url`)."""
    return f"{REPO_URL}/blob/main/blueprints/automation/q4d/{file_name}"


def raw_url(file_name: str) -> str:
    """The raw URL Home Assistant fetches when importing a blueprint."""
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    return (
        f"https://raw.githubusercontent.com/{owner_repo}/main/blueprints/automation/q4d/{file_name}"
    )


def import_link(file_name: str) -> str:
    """The My Home Assistant import link of a blueprint."""
    return "https://my.home-assistant.io/redirect/blueprint_import/?blueprint_url=" + quote(
        blob_url(file_name), safe=""
    )


def use_blueprint(file_name: str, alias: str | None = None, **inputs: Any) -> dict[str, Any]:
    """An automation config instantiating a blueprint."""
    return {
        "alias": alias or file_name.removesuffix(".yaml"),
        "use_blueprint": {"path": f"q4d/{file_name}", "input": inputs},
    }


async def async_setup_automations(hass: HomeAssistant, *configs: dict[str, Any]) -> None:
    """Set up the automation integration with these automations."""
    assert await async_setup_component(hass, AUTOMATION_DOMAIN, {AUTOMATION_DOMAIN: list(configs)})
    await hass.async_block_till_done()


def transfer_event_data(kind: str, **overrides: Any) -> dict[str, Any]:
    """The data of a `q4d_transfer_<kind>` bus event, as docs/home-assistant.md documents it."""
    data: dict[str, Any] = {
        "bridge_id": "home",
        "config_entry_id": ENTRY_ID,
        "bridge_device_id": BRIDGE_DEVICE_ID,
        "device_id": SEEDBOX_DEVICE_ID,
        "item_id": ITEM_ID,
        "name": "Show.S01E01.mkv",
        "seedbox": "seedbox1",
        "category": "tv-sonarr",
        "destination": "tv",
        "destination_path": "/media/tv/Show.S01E01.mkv",
        "size": 1_500_000_000,
        "duration": 40.5 if kind in ("completed", "failed") else None,
        "error": "lftp exit 1: max-retries exceeded" if kind == "failed" else None,
        "error_code": "connection" if kind == "failed" else None,
        "at": 1_700_000_000.0,
    }
    if kind == "queued":
        data["retry"] = False
    if kind == "completed":
        data["verified"] = "pieces"
        data["repaired_pieces"] = 0
    data.update(overrides)
    return data


async def async_settle(hass: HomeAssistant) -> None:
    """Let automation runs proceed up to their next wait or delay.

    `hass.async_block_till_done()` would wait for the runs themselves, and a run that
    waits for a tap or a timer does not end; Home Assistant's own blueprint tests
    step the event loop instead.
    """
    for _ in range(50):
        await asyncio.sleep(0)


async def async_fire_transfer(hass: HomeAssistant, kind: str, **overrides: Any) -> dict[str, Any]:
    """Fire `q4d_transfer_<kind>` and let the automations run."""
    data = transfer_event_data(kind, **overrides)
    hass.bus.async_fire(f"q4d_transfer_{kind}", data)
    await async_settle(hass)
    return data


async def async_tap(hass: HomeAssistant, action: str) -> None:
    """The Companion app reporting a tap on a notification button."""
    hass.bus.async_fire("mobile_app_notification_action", {"action": action, "tag": "q4d"})
    await async_settle(hass)


async def async_advance(hass: HomeAssistant, **delta: float) -> None:
    """Fire the timers (delays, wait timeouts, `for:`) due within `delta` from now.

    The clock itself does not move: two calls of 20 s do not add up to 40 s.
    """
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(**delta))
    await async_settle(hass)


def add_phone(hass: HomeAssistant, name: str = PHONE_NAME) -> str:
    """A Companion app device (as mobile_app registers it); returns its device id."""
    entry = MockConfigEntry(domain="mobile_app", title=name, data={"device_name": name})
    entry.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={("mobile_app", f"{name}-id")},
        manufacturer="Google",
        model="Pixel",
        name=name,
    )
    return device.id


def button_actions(call_data: dict[str, Any]) -> list[dict[str, Any]]:
    """The actionable buttons of a mobile_app notification call."""
    return list(call_data["data"]["actions"])


def async_record_services(
    hass: HomeAssistant, domain: str, *services: str, calls: list[ServiceCall] | None = None
) -> list[ServiceCall]:
    """Mock several actions of a domain, recording their calls in one list, in call order."""
    if calls is None:
        calls = []

    @callback
    def _record(call: ServiceCall) -> None:
        calls.append(call)

    for service in services:
        hass.services.async_register(domain, service, _record)
    return calls


class _DocsLoader(yaml.SafeLoader):
    """Loads the YAML examples of the docs; `!secret name` becomes "<secret name>"."""


_DocsLoader.add_constructor("!secret", lambda loader, node: f"<secret {node.value}>")


def docs_yaml_blocks(docs: Path = DOCS) -> list[Any]:
    """The YAML examples of docs/automations.md (or of `docs`), parsed."""
    text = docs.read_text(encoding="utf-8")
    return [
        yaml.load(block, Loader=_DocsLoader)
        for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    ]


def docs_yaml_block(top_key: str, contains: str, docs: Path = DOCS) -> dict[str, Any]:
    """The docs' YAML example with this top-level key that mentions `contains`."""
    for block in docs_yaml_blocks(docs):
        if isinstance(block, dict) and top_key in block and contains in repr(block):
            return block
    raise AssertionError(f"no {top_key} example with {contains} in {docs.name}")
