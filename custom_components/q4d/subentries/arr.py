"""The Sonarr/Radarr subentry flow: an instance tested with its API key, then saved on
the bridge."""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import SubentryFlowResult

from ..config_values import ARR_TYPES, arr_value
from ..subentry_flow import PASSWORD, TEXT, BridgeSubentryFlow, select

ARR_FIELDS: Final = frozenset({"name", "type", "url", "api_key"})


class ArrSubentryFlow(BridgeSubentryFlow):
    """A Sonarr or Radarr instance the bridge's arr_import step calls: tested (the app's
    system status, with the key), then saved."""

    subentry_type = "arr"
    first_step = "arr"
    id_field = "name"

    async def async_step_arr(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """The app, its URL and API key."""
        errors: dict[str, str] = {}
        if user_input is not None:
            result, errors = await self._async_submit(user_input, "arr", arr_value, ARR_FIELDS)
            if result is not None:
                return result
        current = self._current
        # the key is typed again, never shown back
        suggested = {k: v for k, v in (user_input or current).items() if k != "api_key"}
        schema: dict[Any, Any] = {vol.Required("name"): TEXT} if self._creating else {}
        schema |= {
            vol.Required("type", default="sonarr"): select(ARR_TYPES, "arr_type"),
            vol.Required("url"): TEXT,
            # a new instance needs its key; an edit keeps the bridge's unless one is typed
            (vol.Required if self._creating else vol.Optional)("api_key"): PASSWORD,
        }
        return self.async_show_form(
            step_id="arr",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested),
            errors=errors,
            description_placeholders=self._placeholders,
        )
