"""Commands for the actions and buttons: refusals that name the torrent, and reports of
what retrying every failed item and rescanning the seedboxes did."""

from __future__ import annotations

from typing import Any

from homeassistant.components import persistent_notification
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import translation

from .const import ATTR_ITEM_ID, DOMAIN
from .coordinator import Q4dCoordinator

# Bridge error codes that refuse a request (bad input or the wrong moment) rather than
# report a fault: validation errors, which Home Assistant logs without a traceback.
REFUSAL_CODES = frozenset({"invalid_state", "not_found", "not_configured"})
# A notification lists this many names, then says how many more there are.
MAX_NAMES = 20


def bridge_refusal(err: HomeAssistantError) -> tuple[str, str] | None:
    """(code, message) of the bridge's answer when `err` is its refusal of a command."""
    if err.translation_key != "command_failed" or not err.translation_placeholders:
        return None
    placeholders = err.translation_placeholders
    return placeholders.get("code", "error"), placeholders.get("message", "")


async def async_bridge_command(
    coordinator: Q4dCoordinator,
    op: str,
    args: dict[str, Any] | None = None,
    *,
    time_limit: float | None = None,
) -> dict[str, Any]:
    """Send a command; its result if an object (else empty), refusals as validation errors."""
    try:
        result = await coordinator.async_command(op, args, time_limit=time_limit)
    except HomeAssistantError as err:
        refusal = bridge_refusal(err)
        if refusal is None or refusal[0] not in REFUSAL_CODES:
            raise
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="command_failed",
            translation_placeholders=err.translation_placeholders,
        ) from err
    return result if isinstance(result, dict) else {}


async def async_item_command(
    coordinator: Q4dCoordinator, op: str, item_id: str, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send a command for one item, refusing it here if it does not apply to the item."""
    item = coordinator.items.get(item_id)
    if item is None and coordinator.synced:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="unknown_item",
            translation_placeholders={"item_id": item_id, "bridge": coordinator.name},
        )
    name = item_id if item is None else item.name
    force = bool((args or {}).get("force"))
    if item is not None and (refusal := item.refusal(op, force=force)) is not None:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key=refusal,
            translation_placeholders={"name": name},
        )
    try:
        result = await coordinator.async_command(op, {ATTR_ITEM_ID: item_id, **(args or {})})
    except HomeAssistantError as err:
        answer = bridge_refusal(err)
        if answer is None:
            raise
        # Our copy of the item was behind the bridge's, or the bridge failed.
        error = ServiceValidationError if answer[0] in REFUSAL_CODES else HomeAssistantError
        raise error(
            translation_domain=DOMAIN,
            translation_key="item_command_failed",
            translation_placeholders={
                "op": op,
                "name": name,
                "code": answer[0],
                "message": answer[1],
            },
        ) from err
    return result if isinstance(result, dict) else {}


def _ids(value: Any) -> list[str]:
    return [i for i in value if isinstance(i, str)] if isinstance(value, list) else []


def _names(coordinator: Q4dCoordinator, ids: list[str], sent: Any = None) -> list[str]:
    """The bridge's names for `ids` if it sent them, else ours (an item not published
    yet goes by its id)."""
    names = _ids(sent)
    if len(names) == len(ids):
        return names
    return [item.name if (item := coordinator.items.get(i)) else i for i in ids]


async def async_retry_failed(
    hass: HomeAssistant, coordinator: Q4dCoordinator, *, notify: bool
) -> dict[str, Any]:
    """Queue every failed item again; the response (and a notification) names them."""
    result = await async_bridge_command(coordinator, "retry")
    ids = _ids(result.get("items"))
    names = _names(coordinator, ids, result.get("names"))
    count = result.get("count")
    if notify:
        strings = await _strings(hass)
        _notify(hass, coordinator, "retry", strings, [_counted(strings, "retry", names)])
    return {"items": ids, "count": count if isinstance(count, int) else len(ids), "names": names}


async def async_rescan(
    hass: HomeAssistant,
    coordinator: Q4dCoordinator,
    args: dict[str, Any],
    *,
    time_limit: float,
    notify: bool,
) -> dict[str, Any]:
    """Ask the torrent clients for missed completions; the response (and a notification)
    says what was queued, and which seedboxes could not be asked."""
    result = await async_bridge_command(coordinator, "rescan", args, time_limit=time_limit)
    seedboxes = result.get("seedboxes")
    outcomes = {
        seedbox: outcome
        for seedbox, outcome in (seedboxes.items() if isinstance(seedboxes, dict) else ())
        if isinstance(outcome, dict)
    }
    ids = [i for outcome in outcomes.values() for i in _ids(outcome.get("enqueued"))]
    names = _names(coordinator, ids)
    response = {**result, "count": len(ids), "names": names}
    if notify:
        strings = await _strings(hass)
        lines = [_counted(strings, "rescan", names)]
        lines.extend(
            strings["rescan_skipped"].format(
                seedbox=coordinator.seedbox_name(seedbox), error=outcome["error"]
            )
            for seedbox, outcome in outcomes.items()
            if isinstance(outcome.get("error"), str)
        )
        _notify(hass, coordinator, "rescan", strings, lines)
    return response


async def _strings(hass: HomeAssistant) -> dict[str, str]:
    """The integration's `common` strings in Home Assistant's language, by key."""
    head = f"component.{DOMAIN}.common."
    strings = await translation.async_get_translations(
        hass, hass.config.language, "common", {DOMAIN}
    )
    return {key.removeprefix(head): value for key, value in strings.items()}


def _counted(strings: dict[str, str], op: str, names: list[str]) -> str:
    """`<op>_none`, `<op>_one` or `<op>_many`, with the names (the first MAX_NAMES)."""
    if not names:
        return strings[f"{op}_none"]
    listed = ", ".join(names[:MAX_NAMES])
    if len(names) > MAX_NAMES:
        listed = strings["more_names"].format(names=listed, more=len(names) - MAX_NAMES)
    key = f"{op}_one" if len(names) == 1 else f"{op}_many"
    return strings[key].format(count=len(names), names=listed)


def _notify(
    hass: HomeAssistant,
    coordinator: Q4dCoordinator,
    op: str,
    strings: dict[str, str],
    lines: list[str],
) -> None:
    """One notification per bridge and command: a newer report replaces the last."""
    persistent_notification.async_create(
        hass,
        "\n\n".join(lines),
        title=strings[f"{op}_title"].format(bridge=coordinator.name),
        notification_id=f"{DOMAIN}_{coordinator.config_entry.entry_id}_{op}",
    )
