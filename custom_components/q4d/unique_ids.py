"""How q4d names things in the registries: device identifiers and entity unique ids.

Devices: `<bridge>` and `<bridge>:seedbox:<id>` (unchanged since version 1).
Entities: `<bridge>:<kind>:<subject>:<key>` (bridge entities have no subject). The
kind says which parts follow and keys never contain `:`, so an id splits back into its
parts whatever the bridge publishes as seedbox or destination names: a seedbox called
`destination_tv` cannot share an id with the destination `tv`. Version 1 entries
joined the parts with `_`, which could collide; `async_migrate_unique_ids` moves them
over.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er

from .const import DOMAIN, ITEM_BUTTON_KEYS, ITEM_SENSOR_KEYS

DESTINATION_KEY = "free_space"
ITEM_ID_LENGTH = 16
SEEDBOX_SEPARATOR = ":seedbox:"


def bridge_identifier(bridge_id: str) -> tuple[str, str]:
    """Device registry identifier of the bridge device."""
    return (DOMAIN, bridge_id)


def seedbox_identifier(bridge_id: str, seedbox: str) -> tuple[str, str]:
    """Device registry identifier of a seedbox device."""
    return (DOMAIN, f"{bridge_id}{SEEDBOX_SEPARATOR}{seedbox}")


def seedbox_of_identifier(bridge_id: str, identifier: tuple[str, str]) -> str | None:
    """The seedbox id a device identifier of this bridge stands for, if any."""
    domain, value = identifier
    head = f"{bridge_id}{SEEDBOX_SEPARATOR}"
    if domain != DOMAIN or not value.startswith(head):
        return None
    return value[len(head) :]


class Kind(StrEnum):
    """What an entity belongs to."""

    BRIDGE = "bridge"
    SEEDBOX = "seedbox"
    DESTINATION = "destination"
    ITEM = "item"


class EntityKey(NamedTuple):
    """The parts of a unique id."""

    kind: Kind
    subject: str | None  # seedbox id, destination name or item id
    key: str


def bridge(bridge_id: str, key: str) -> str:
    """Unique id of a bridge entity."""
    return f"{bridge_id}:{Kind.BRIDGE}:{key}"


def seedbox(bridge_id: str, seedbox_id: str, key: str) -> str:
    """Unique id of a seedbox entity."""
    return f"{bridge_id}:{Kind.SEEDBOX}:{seedbox_id}:{key}"


def destination(bridge_id: str, name: str) -> str:
    """Unique id of a destination's free-space sensor."""
    return f"{bridge_id}:{Kind.DESTINATION}:{name}:{DESTINATION_KEY}"


def item(bridge_id: str, item_id: str, key: str) -> str:
    """Unique id of one of an item's entities."""
    return f"{bridge_id}:{Kind.ITEM}:{item_id}:{key}"


def parse(bridge_id: str, unique_id: str) -> EntityKey | None:
    """The parts of one of this bridge's unique ids; None for anything else."""
    head = f"{bridge_id}:"
    if not unique_id.startswith(head):
        return None
    kind, _, rest = unique_id[len(head) :].partition(":")
    if kind == Kind.BRIDGE:
        return EntityKey(Kind.BRIDGE, None, rest) if rest else None
    if kind not in (Kind.SEEDBOX, Kind.DESTINATION, Kind.ITEM):
        return None
    subject, _, key = rest.rpartition(":")
    return EntityKey(Kind(kind), subject, key) if subject and key else None


def _item_of_v1(bridge_id: str, unique_id: str) -> tuple[str, str] | None:
    """(item id, key) of a version 1 item unique id, `<bridge>_item_<id>_<key>`."""
    head = f"{bridge_id}_item_"
    if not unique_id.startswith(head):
        return None
    item_id, _, key = unique_id[len(head) :].partition("_")
    if len(item_id) != ITEM_ID_LENGTH or key not in (*ITEM_SENSOR_KEYS, *ITEM_BUTTON_KEYS):
        return None  # e.g. an entity of a seedbox whose id is "item"
    return item_id, key


def _migrate_v1(bridge_id: str, unique_id: str, device: dr.DeviceEntry | None) -> str | None:
    """The current unique id for a version 1 one, told apart by the entity's device.

    Version 1 ids alone are ambiguous; the device they hang on is not: a seedbox
    device's entities are its own or its items', the bridge device's are the bridge's,
    its destinations' or items' of seedboxes that left.
    """
    if (found := _item_of_v1(bridge_id, unique_id)) is not None:
        return item(bridge_id, *found)
    if device is None:
        return None
    for identifier in device.identifiers:
        if (seedbox_id := seedbox_of_identifier(bridge_id, identifier)) is not None:
            head = f"{bridge_id}_{seedbox_id}_"
            if not unique_id.startswith(head):
                return None
            return seedbox(bridge_id, seedbox_id, unique_id.removeprefix(head))
    head, tail = f"{bridge_id}_destination_", f"_{DESTINATION_KEY}"
    if unique_id.startswith(head) and unique_id.endswith(tail):
        return destination(bridge_id, unique_id[len(head) : -len(tail)])
    head = f"{bridge_id}_"
    return bridge(bridge_id, unique_id.removeprefix(head)) if unique_id.startswith(head) else None


async def async_migrate_unique_ids(hass: HomeAssistant, entry_id: str, bridge_id: str) -> None:
    """Give a version 1 entry's entities their current unique ids; entity ids stay."""
    dev_reg = dr.async_get(hass)

    @callback
    def _migrate(entity: er.RegistryEntry) -> dict[str, Any] | None:
        if parse(bridge_id, entity.unique_id) is not None:
            return None  # already current
        device = dev_reg.async_get(entity.device_id) if entity.device_id else None
        new = _migrate_v1(bridge_id, entity.unique_id, device)
        return None if new is None else {"new_unique_id": new}

    await er.async_migrate_entries(hass, entry_id, _migrate)
