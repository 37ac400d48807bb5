"""Diagnostics of a bridge and of its devices, with paths and secrets redacted."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
    get_diagnostics_for_device,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.q4d.const import DOMAIN

from .common import async_send, q4d_device
from .payloads import STATE_TOPIC, seedbox, state, state_dict


async def test_entry_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """The entry's diagnostics hold no path, hash, torrent name or error text."""
    boxes = state_dict()["seedboxes"]
    error = "http://10.0.0.5:8080 refused"
    unreachable = {"reason_code": "unreachable", "reason": f"unreachable: {error}"}
    boxes["seedbox1"] = seedbox(
        "My seedbox", client={"reachable": False, "error": error, "dispatch": unreachable}
    )
    await async_send(hass, STATE_TOPIC, state(seedboxes=boxes))
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert diagnostics == snapshot
    text = str(diagnostics)
    for secret in (
        "/media/tv",
        "/home/me",
        "0123456789abcdef0123456789abcdef01234567",
        "Show.S01E01",
        "10.0.0.5",
        "Film.2020",
        "max-retries",
    ):
        assert secret not in text


async def test_device_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """A seedbox device's diagnostics hold its state and its items; the bridge's, everything."""
    sb1 = q4d_device(hass, "home:seedbox:seedbox1")
    bridge = q4d_device(hass, "home")
    assert sb1 is not None and bridge is not None
    assert await get_diagnostics_for_device(hass, hass_client, init_integration, sb1) == snapshot
    assert await get_diagnostics_for_device(
        hass, hass_client, init_integration, bridge
    ) == await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    # a seedbox the state no longer has
    gone = device_registry.async_get_or_create(
        config_entry_id=init_integration.entry_id, identifiers={(DOMAIN, "home:seedbox:gone")}
    )
    result = await get_diagnostics_for_device(hass, hass_client, init_integration, gone)
    assert result == {"seedbox": "gone", "state": None, "items": []}


async def test_diagnostics_before_the_bridge_spoke(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    setup_entry: MockConfigEntry,
) -> None:
    """Diagnostics work before any status or state arrived."""
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, setup_entry)
    assert diagnostics["status"] is None
    assert diagnostics["state"] is None
    assert diagnostics["items"] == []
    assert diagnostics["coordinator"]["online"] is False
