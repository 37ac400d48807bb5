"""The destination subentry flow: a library folder, tested for writing (and
ownership), then saved on the bridge."""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import SubentryFlowResult
from homeassistant.helpers.selector import BooleanSelector

from ..config_values import destination_value
from ..subentry_flow import TEXT, BridgeSubentryFlow

DESTINATION_FIELDS: Final = frozenset({"name", "path", "owner", "group", "extract"})


class DestinationSubentryFlow(BridgeSubentryFlow):
    """A library folder: tested for writing (and ownership), then saved."""

    subentry_type = "destination"
    first_step = "destination"
    id_field = "name"

    async def async_step_destination(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Where payloads land, who owns them, whether archives are unpacked."""
        errors: dict[str, str] = {}
        if user_input is not None:
            result, errors = await self._async_submit(
                user_input, "destination", destination_value, DESTINATION_FIELDS
            )
            if result is not None:
                return result
        current = self._current
        suggested = user_input or {
            "path": current.get("path", ""),
            "owner": str(current.get("owner", "")),
            "group": str(current.get("group", "")),
            "extract": bool(current.get("extract")),
        }
        schema: dict[Any, Any] = {vol.Required("name"): TEXT} if self._creating else {}
        schema |= {
            vol.Required("path"): TEXT,
            vol.Optional("owner"): TEXT,
            vol.Optional("group"): TEXT,
            vol.Optional("extract", default=False): BooleanSelector(),
        }
        return self.async_show_form(
            step_id="destination",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested),
            errors=errors,
            description_placeholders=self._placeholders,
        )
