"""Torrent dispatch: adding a torrent through the bridge, which picks the seedbox, and
previewing its choice; the bridge's refusals as translated errors."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .commands import async_bridge_command, bridge_refusal
from .const import ATTR_MAGNET, ATTR_URL, DISPATCH_TIMEOUT, DOMAIN
from .coordinator import Q4dCoordinator

# The bridge's refusals of `add` and `preview`: the translation key, and whether the
# action's input is at fault (a validation error) rather than the seedboxes.
DISPATCH_ERRORS: Final[dict[str, tuple[str, bool]]] = {
    "invalid_torrent": ("dispatch_invalid_torrent", True),
    "duplicate": ("dispatch_duplicate", True),
    "unknown_category": ("dispatch_unknown_category", True),
    "unknown_seedbox": ("dispatch_unknown_seedbox", True),
    "no_eligible_client": ("dispatch_no_eligible_client", False),
    "client_error": ("dispatch_client_error", False),
}


def torrent_args(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The command's args: exactly one torrent (a magnet link or a .torrent's URL), and
    the `keys` given (an empty text field counts as not given)."""
    sources = [key for key in (ATTR_MAGNET, ATTR_URL) if data.get(key)]
    if len(sources) != 1:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="one_torrent")
    return {key: data[key] for key in (*sources, *keys) if data.get(key) not in (None, "")}


async def _async_dispatch_command(
    coordinator: Q4dCoordinator, op: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Send `add` or `preview`; a refusal names its reason in the bridge's words (where
    the duplicate is, which category it does not know)."""
    try:
        return await async_bridge_command(coordinator, op, args, time_limit=DISPATCH_TIMEOUT)
    except HomeAssistantError as err:
        refusal = bridge_refusal(err)
        if refusal is None or refusal[0] not in DISPATCH_ERRORS:
            raise
        key, invalid_input = DISPATCH_ERRORS[refusal[0]]
        error = ServiceValidationError if invalid_input else HomeAssistantError
        raise error(
            translation_domain=DOMAIN,
            translation_key=key,
            translation_placeholders={"message": refusal[1]},
        ) from err


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def async_add_torrent(coordinator: Q4dCoordinator, args: dict[str, Any]) -> dict[str, Any]:
    """Add a torrent; the request the bridge made of it, and the bridge's decision."""
    result = await _async_dispatch_command(coordinator, "add", {**args, "source": "ha"})
    request = _object(result.get("request"))
    return {
        "request_id": request.get("id"),
        "seedbox": request.get("seedbox"),
        "info_hash": request.get("info_hash"),
        "name": request.get("name"),
        "decision": result.get("decision"),
    }


async def async_preview_dispatch(
    coordinator: Q4dCoordinator, args: dict[str, Any]
) -> dict[str, Any]:
    """The seedbox the bridge would choose for a torrent, and how it scored each client."""
    decision = _object(
        (await _async_dispatch_command(coordinator, "preview", args)).get("decision")
    )
    clients = decision.get("clients")
    return {
        "chosen": decision.get("chosen"),
        "clients": clients if isinstance(clients, list) else [],
    }
