"""Diagnostics: the bridge's status, state and items, with paths and secrets redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr

from . import unique_ids
from .coordinator import Q4dConfigEntry, Q4dCoordinator

# Paths reveal user names and library layout; hashes and names identify torrents;
# error messages quote paths and hosts.
TO_REDACT = {"remote_path", "local_path", "hash", "name", "tags", "message"}
# A client's error quotes its URL, and a dispatch reason quotes that error; a rejection's
# message quotes the refused payload's path.
STATE_TO_REDACT = {"error", "reason", "message"}


def _items(coordinator: Q4dCoordinator, seedbox: str | None = None) -> list[dict[str, Any]]:
    return [
        async_redact_data(item.raw, TO_REDACT)
        for item in coordinator.items.values()
        if seedbox is None or item.seedbox == seedbox
    ]


def _state(coordinator: Q4dCoordinator) -> dict[str, Any] | None:
    state = coordinator.state
    if state is None:
        return None
    data: dict[str, Any] = async_redact_data(asdict(state), STATE_TO_REDACT)
    if data["last_completed"] is not None:
        data["last_completed"] = async_redact_data(data["last_completed"], {"name"})
    return data


def _summary(coordinator: Q4dCoordinator) -> dict[str, Any]:
    return {
        "online": coordinator.online,
        "mqtt_connected": coordinator.mqtt_connected,
        "synced": coordinator.synced,
        "items": len(coordinator.items),
        "items_with_entities": coordinator.item_entities.count,
    }


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: Q4dConfigEntry
) -> dict[str, Any]:
    """Diagnostics of a bridge."""
    coordinator = entry.runtime_data.coordinator
    status = coordinator.status
    return {
        "entry": {"data": dict(entry.data), "options": dict(entry.options)},
        "coordinator": _summary(coordinator),
        "status": None if status is None else asdict(status),
        "state": _state(coordinator),
        "items": _items(coordinator),
    }


async def async_get_device_diagnostics(
    hass: HomeAssistant, entry: Q4dConfigEntry, device: dr.DeviceEntry
) -> dict[str, Any]:
    """Diagnostics of the bridge device, or of one seedbox and its items."""
    coordinator = entry.runtime_data.coordinator
    for identifier in device.identifiers:
        seedbox = unique_ids.seedbox_of_identifier(coordinator.bridge_id, identifier)
        if seedbox is None:
            continue
        state = coordinator.state
        sb_state = state.seedboxes.get(seedbox) if state is not None else None
        data = None if sb_state is None else async_redact_data(asdict(sb_state), STATE_TO_REDACT)
        return {"seedbox": seedbox, "state": data, "items": _items(coordinator, seedbox)}
    return await async_get_config_entry_diagnostics(hass, entry)
