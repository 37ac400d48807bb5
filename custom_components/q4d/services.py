"""Actions: steer a bridge's queue (each one a command over MQTT)."""

from __future__ import annotations

from functools import partial
from typing import Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv

from .commands import (
    async_bridge_command,
    async_item_command,
    async_rescan,
    async_retry_failed,
    bridge_refusal,
)
from .const import (
    ATTR_CATEGORY,
    ATTR_CONFIG_ENTRY_ID,
    ATTR_DESTINATION,
    ATTR_FORCE,
    ATTR_IGNORE,
    ATTR_ITEM_ID,
    ATTR_LIMIT,
    ATTR_MAGNET,
    ATTR_OFFSET,
    ATTR_PAUSED,
    ATTR_PRIORITY,
    ATTR_SEEDBOX,
    ATTR_STATES,
    ATTR_TRACKER,
    ATTR_URL,
    DOMAIN,
    ITEM_STATES,
    LOGGER,
    RESCAN_TIMEOUT,
)
from .coordinator import Q4dConfigEntry, Q4dCoordinator
from .dispatch import async_add_torrent, async_preview_dispatch, torrent_args
from .models import Item, PayloadError
from .tracker_rules import async_tracker_rule_command

SERVICE_RETRY = "retry"
SERVICE_CANCEL = "cancel"
SERVICE_SET_PRIORITY = "set_priority"
SERVICE_PAUSE = "pause"
SERVICE_RESUME = "resume"
SERVICE_RESCAN = "rescan"
SERVICE_GET_QUEUE = "get_queue"
SERVICE_ADD_TORRENT = "add_torrent"
SERVICE_PREVIEW_DISPATCH = "preview_dispatch"
SERVICE_ADD_TRACKER_RULE = "add_tracker_rule"
SERVICE_REMOVE_TRACKER_RULE = "remove_tracker_rule"
SERVICE_LIST_TRACKER_RULES = "list_tracker_rules"

ITEM_ID = vol.All(cv.string, vol.Lower, vol.Match(r"^[0-9a-f]{16}$"))
MAX_PAGE = 10_000  # the bridge's largest get_queue page


def _force_needs_item(data: dict[str, Any]) -> dict[str, Any]:
    """Fetching every done item again is never what anyone means."""
    if data.get(ATTR_FORCE) and ATTR_ITEM_ID not in data:
        raise vol.Invalid("force needs an item_id", path=[ATTR_FORCE])
    return data


def strict_int(value: Any) -> int:
    """An integer: whole numbers (5, 5.0, "5") pass, fractions ("2.7") and booleans do not."""
    if isinstance(value, bool):
        raise vol.Invalid("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise vol.Invalid("expected an integer")


BASE: dict[vol.Marker, Any] = {vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string}
# Exactly one of magnet and url: checked by the action, for a translated error.
TORRENT: dict[vol.Marker, Any] = {
    **BASE,
    vol.Optional(ATTR_MAGNET): cv.string,
    vol.Optional(ATTR_URL): vol.Any("", cv.url),
    vol.Optional(ATTR_CATEGORY): cv.string,
    vol.Optional(ATTR_SEEDBOX): cv.string,
}

SCHEMAS: dict[str, vol.Schema | vol.All] = {
    # force: fetch a done item again (its library copy is replaced once verified)
    SERVICE_RETRY: vol.All(
        vol.Schema(
            {**BASE, vol.Optional(ATTR_ITEM_ID): ITEM_ID, vol.Optional(ATTR_FORCE): cv.boolean}
        ),
        _force_needs_item,
    ),
    SERVICE_CANCEL: vol.Schema({**BASE, vol.Required(ATTR_ITEM_ID): ITEM_ID}),
    SERVICE_SET_PRIORITY: vol.Schema(
        {
            **BASE,
            vol.Required(ATTR_ITEM_ID): ITEM_ID,
            vol.Required(ATTR_PRIORITY): vol.All(strict_int, vol.Range(min=-100, max=100)),
        }
    ),
    SERVICE_PAUSE: vol.Schema({**BASE, vol.Optional(ATTR_ITEM_ID): ITEM_ID}),
    SERVICE_RESUME: vol.Schema({**BASE, vol.Optional(ATTR_ITEM_ID): ITEM_ID}),
    SERVICE_RESCAN: vol.Schema({**BASE, vol.Optional(ATTR_SEEDBOX): cv.string}),
    SERVICE_GET_QUEUE: vol.Schema(
        {
            **BASE,
            vol.Optional(ATTR_STATES): vol.All(cv.ensure_list, [vol.In(ITEM_STATES)]),
            vol.Optional(ATTR_LIMIT): vol.All(strict_int, vol.Range(min=1, max=MAX_PAGE)),
            vol.Optional(ATTR_OFFSET): vol.All(strict_int, vol.Range(min=0)),
        }
    ),
    SERVICE_ADD_TORRENT: vol.Schema({**TORRENT, vol.Optional(ATTR_PAUSED): cv.boolean}),
    SERVICE_PREVIEW_DISPATCH: vol.Schema(TORRENT),
    # The bridge checks the rule itself (a domain, one effect): one place for the rules.
    SERVICE_ADD_TRACKER_RULE: vol.Schema(
        {
            **BASE,
            vol.Required(ATTR_TRACKER): cv.string,
            vol.Optional(ATTR_IGNORE): cv.boolean,
            vol.Optional(ATTR_DESTINATION): cv.string,
            vol.Optional(ATTR_CATEGORY): cv.string,
        }
    ),
    SERVICE_REMOVE_TRACKER_RULE: vol.Schema({**BASE, vol.Required(ATTR_TRACKER): cv.string}),
    SERVICE_LIST_TRACKER_RULES: vol.Schema(BASE),
}


def _coordinator(hass: HomeAssistant, call: ServiceCall) -> Q4dCoordinator:
    """The loaded bridge an action is for: the one named, or the only one."""
    entry_id: str | None = call.data.get(ATTR_CONFIG_ENTRY_ID)
    if entry_id is not None:
        entry: Q4dConfigEntry | None = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_config_entry",
                translation_placeholders={"entry_id": entry_id},
            )
        if entry.state is not ConfigEntryState.LOADED:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="config_entry_not_loaded",
                translation_placeholders={"entry": entry.title},
            )
        return entry.runtime_data.coordinator
    entries: list[Q4dConfigEntry] = hass.config_entries.async_loaded_entries(DOMAIN)
    if len(entries) != 1:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="no_bridge" if not entries else "several_bridges",
        )
    return entries[0].runtime_data.coordinator


def _args(call: ServiceCall, *keys: str) -> dict[str, Any]:
    return {key: call.data[key] for key in keys if key in call.data}


async def _async_queue_or_item(
    hass: HomeAssistant, call: ServiceCall, op: str, *extra: str
) -> ServiceResponse:
    """A command for the item named, or for the whole queue without one."""
    coordinator = _coordinator(hass, call)
    item_id: str | None = call.data.get(ATTR_ITEM_ID)
    if item_id is None:
        return await async_bridge_command(coordinator, op, _args(call, *extra))
    return await async_item_command(coordinator, op, item_id, _args(call, *extra))


async def _async_retry(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    if ATTR_ITEM_ID in call.data:
        return await _async_queue_or_item(hass, call, "retry", ATTR_FORCE)
    return await async_retry_failed(hass, _coordinator(hass, call), notify=not call.return_response)


async def _async_cancel(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    return await _async_queue_or_item(hass, call, "cancel")


async def _async_set_priority(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    return await _async_queue_or_item(hass, call, "set_priority", ATTR_PRIORITY)


async def _async_pause(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    return await _async_queue_or_item(hass, call, "pause")


async def _async_resume(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    return await _async_queue_or_item(hass, call, "resume")


async def _async_rescan(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    coordinator = _coordinator(hass, call)
    seedbox: str | None = call.data.get(ATTR_SEEDBOX)
    state = coordinator.state
    if seedbox is not None and state is not None and seedbox not in state.seedboxes:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="unknown_seedbox",
            translation_placeholders={"seedbox": seedbox, "bridge": coordinator.name},
        )
    return await async_rescan(
        hass,
        coordinator,
        _args(call, ATTR_SEEDBOX),
        time_limit=RESCAN_TIMEOUT,
        notify=not call.return_response,
    )


async def _async_get_queue(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    coordinator = _coordinator(hass, call)
    paging = _args(call, ATTR_LIMIT, ATTR_OFFSET)
    try:
        result = await async_bridge_command(
            coordinator, "get_queue", _args(call, ATTR_STATES, ATTR_LIMIT, ATTR_OFFSET)
        )
    except HomeAssistantError as err:
        refusal = bridge_refusal(err)
        if not paging or refusal is None or not _no_paging(refusal):
            raise
        # a bridge older than paging refuses limit and offset; it lists every item
        result = await async_bridge_command(coordinator, "get_queue", _args(call, ATTR_STATES))
    return queue_page(result, paging.get(ATTR_LIMIT), paging.get(ATTR_OFFSET, 0))


def _no_paging(refusal: tuple[str, str]) -> bool:
    code, message = refusal
    return code == "invalid_args" and "extra keys not allowed" in message


def queue_page(result: dict[str, Any], limit: int | None, offset: int) -> dict[str, Any]:
    """The get_queue response: the page's items, how many items the bridge listed in
    all, and the offset of the next page (None on the last). A bridge without paging
    sends every item and no `total`: the page is cut from them here."""
    raw = result.get("items")
    listed: list[Any] = raw if isinstance(raw, list) else []
    total = result.get("total")
    next_offset = result.get("next_offset")
    if type(total) is not int:
        total = len(listed)
        end = total if limit is None else min(total, offset + limit)
        listed = listed[offset:end]
        next_offset = end if end < total else None
    items: list[Any] = []
    for payload in listed:
        try:
            items.append(Item.from_dict(payload).summary())
        except (PayloadError, AttributeError) as err:
            LOGGER.debug("Skipping an item of the queue: %s", err)
    return {
        "items": items,
        "total": total,
        "next_offset": next_offset if type(next_offset) is int else None,
    }


async def _async_add_torrent(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    args = torrent_args(call.data, ATTR_CATEGORY, ATTR_SEEDBOX, ATTR_PAUSED)
    return await async_add_torrent(_coordinator(hass, call), args)


async def _async_preview_dispatch(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    args = torrent_args(call.data, ATTR_CATEGORY, ATTR_SEEDBOX)
    return await async_preview_dispatch(_coordinator(hass, call), args)


async def _async_add_tracker_rule(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    # an empty text field, as a form sends it, counts as not given
    args = {
        key: call.data[key]
        for key in (ATTR_TRACKER, ATTR_IGNORE, ATTR_DESTINATION, ATTR_CATEGORY)
        if call.data.get(key) not in (None, "")
    }
    return await async_tracker_rule_command(_coordinator(hass, call), "tracker_rule_add", args)


async def _async_remove_tracker_rule(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    return await async_tracker_rule_command(
        _coordinator(hass, call), "tracker_rule_remove", _args(call, ATTR_TRACKER)
    )


async def _async_list_tracker_rules(hass: HomeAssistant, call: ServiceCall) -> ServiceResponse:
    return await async_tracker_rule_command(_coordinator(hass, call), "tracker_rules", {})


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the q4d actions (once, from async_setup)."""
    handlers = {
        SERVICE_RETRY: (_async_retry, SupportsResponse.OPTIONAL),
        SERVICE_CANCEL: (_async_cancel, SupportsResponse.OPTIONAL),
        SERVICE_SET_PRIORITY: (_async_set_priority, SupportsResponse.OPTIONAL),
        SERVICE_PAUSE: (_async_pause, SupportsResponse.OPTIONAL),
        SERVICE_RESUME: (_async_resume, SupportsResponse.OPTIONAL),
        SERVICE_RESCAN: (_async_rescan, SupportsResponse.OPTIONAL),
        SERVICE_GET_QUEUE: (_async_get_queue, SupportsResponse.ONLY),
        SERVICE_ADD_TORRENT: (_async_add_torrent, SupportsResponse.OPTIONAL),
        SERVICE_PREVIEW_DISPATCH: (_async_preview_dispatch, SupportsResponse.ONLY),
        SERVICE_ADD_TRACKER_RULE: (_async_add_tracker_rule, SupportsResponse.OPTIONAL),
        SERVICE_REMOVE_TRACKER_RULE: (_async_remove_tracker_rule, SupportsResponse.OPTIONAL),
        SERVICE_LIST_TRACKER_RULES: (_async_list_tracker_rules, SupportsResponse.ONLY),
    }
    for service, (handler, supports_response) in handlers.items():
        hass.services.async_register(
            DOMAIN,
            service,
            partial(handler, hass),
            schema=SCHEMAS[service],
            supports_response=supports_response,
        )
