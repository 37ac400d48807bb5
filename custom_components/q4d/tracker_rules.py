"""Tracker rules on the bridge: add (or replace) and remove the rule of a tracker
domain; the bridge's refusal of a rule as a translated validation error."""

from __future__ import annotations

from typing import Any

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .commands import async_bridge_command, bridge_refusal
from .const import DOMAIN
from .coordinator import Q4dCoordinator


async def async_tracker_rule_command(
    coordinator: Q4dCoordinator, op: str, args: dict[str, Any]
) -> dict[str, Any]:
    """Send `tracker_rule_add` or `tracker_rule_remove`; its result (the rule, and every
    rule now in force). A rule the bridge refuses (no effect, ignore with a destination,
    not a domain) is the action's input at fault; an unknown destination or domain is
    refused as `not_found`, like other commands."""
    try:
        return await async_bridge_command(coordinator, op, args)
    except HomeAssistantError as err:
        refusal = bridge_refusal(err)
        if refusal is None or refusal[0] != "invalid_args":
            raise
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="tracker_rule_invalid",
            translation_placeholders={"message": refusal[1]},
        ) from err
