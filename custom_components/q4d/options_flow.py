"""Options: a menu of what Home Assistant shows (item entities, how long finished
items keep them: stored as the entry's options), the bridge's transfer limits
(`set_limits`) and its dispatch weights (`config_set` of its `dispatch` section).

The limits and the weights live on the bridge, not in the entry's options: saving
them leaves the options as they are (an unchanged entry is not reloaded). The menu
comes first for every entry; the stored options keep their keys, so entries from
before it need nothing migrated.
"""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState, ConfigFlowResult, OptionsFlow
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
)

from .config_answers import Answer, async_ask, form_errors
from .config_sync import APPLY_TIMEOUT, ConfigSync
from .config_values import DISPATCH, DISPATCH_WEIGHTS, dispatch_form, dispatch_value
from .const import (
    CONF_ITEM_ENTITIES,
    CONF_RETENTION,
    DEFAULT_ITEM_ENTITIES,
    DEFAULT_RETENTION,
    LOGGER,
    MAX_RETENTION,
)
from .coordinator import Q4dCoordinator
from .number import MB

DISPLAY_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_ITEM_ENTITIES, default=DEFAULT_ITEM_ENTITIES): BooleanSelector(),
        vol.Required(CONF_RETENTION, default=DEFAULT_RETENTION): NumberSelector(
            NumberSelectorConfig(
                min=0,
                max=MAX_RETENTION,
                step=1,
                mode=NumberSelectorMode.BOX,
                unit_of_measurement="min",
            )
        ),
    }
)
# The number entities' bounds (number.py): the bridge's for max_concurrent, MB/s for
# the bandwidth, which the bridge counts in bytes/s (0 = unlimited).
LIMITS_SCHEMA = vol.Schema(
    {
        vol.Required("max_concurrent"): NumberSelector(
            NumberSelectorConfig(min=1, max=256, step=1, mode=NumberSelectorMode.BOX)
        ),
        vol.Required("bandwidth_limit"): NumberSelector(
            NumberSelectorConfig(
                min=0, max=10000, step=0.1, mode=NumberSelectorMode.BOX, unit_of_measurement="MB/s"
            )
        ),
    }
)
WEIGHT = NumberSelector(NumberSelectorConfig(min=0, step="any", mode=NumberSelectorMode.BOX))
DISPATCH_SCHEMA = vol.Schema(
    {
        vol.Required("disk_weight"): WEIGHT,
        vol.Required("download_weight"): WEIGHT,
        vol.Required("bandwidth_weight"): WEIGHT,
        vol.Required("min_score"): NumberSelector(
            NumberSelectorConfig(step="any", mode=NumberSelectorMode.BOX)
        ),
        vol.Required("size_estimate"): TextSelector(),
        vol.Optional("categories"): TextSelector(TextSelectorConfig(multiple=True)),
    }
)
LIMIT_FIELDS: Final = frozenset({"max_concurrent", "bandwidth_limit"})
DISPATCH_FIELDS: Final = frozenset({*DISPATCH_WEIGHTS, "size_estimate", "categories"})
# What the bridge may answer these commands, as the options' errors; else `unknown`.
ERRORS: Final = frozenset({"cannot_connect", "invalid", "read_only"})


class Q4dOptionsFlow(OptionsFlow):
    """Display options, the bridge's limits, its dispatch weights."""

    def __init__(self) -> None:
        """Nothing asked of the bridge yet."""
        self._placeholders: dict[str, str] = {"message": ""}

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The menu."""
        return self.async_show_menu(step_id="init", menu_options=["display", "limits", "dispatch"])

    async def async_step_display(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Whether queue items get entities, and for how long once finished."""
        if user_input is not None:
            return self.async_create_entry(
                data={
                    CONF_ITEM_ENTITIES: user_input[CONF_ITEM_ENTITIES],
                    CONF_RETENTION: int(user_input[CONF_RETENTION]),
                }
            )
        return self.async_show_form(
            step_id="display",
            data_schema=self.add_suggested_values_to_schema(
                DISPLAY_SCHEMA, self.config_entry.options
            ),
        )

    async def async_step_limits(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The global transfer limits, as the bridge has them; changes sent at once."""
        if (coordinator := self._coordinator()) is None:
            return self.async_abort(reason="not_loaded")
        state = coordinator.state
        shown: dict[str, Any] = {}  # as the form shows the limits in force
        if state is not None and state.max_concurrent is not None:
            shown["max_concurrent"] = state.max_concurrent
        if state is not None and state.bandwidth_limit is not None:
            shown["bandwidth_limit"] = round(state.bandwidth_limit / MB, 2)
        errors: dict[str, str] = {}
        if user_input is not None:
            # Only what changed: a limit sent is stored, and replaces the YAML's for good.
            args: dict[str, int] = {}
            if user_input["max_concurrent"] != shown.get("max_concurrent"):
                args["max_concurrent"] = int(user_input["max_concurrent"])
            if user_input["bandwidth_limit"] != shown.get("bandwidth_limit"):
                args["bandwidth_limit"] = round(float(user_input["bandwidth_limit"]) * MB)
            answer = await async_ask(coordinator, "set_limits", args, None) if args else Answer()
            if answer.code is None:
                # The bridge re-publishes its state: the numbers show the new limits.
                return self.async_create_entry(data=dict(self.config_entry.options))
            errors = self._errors(answer, LIMIT_FIELDS)
        return self.async_show_form(
            step_id="limits",
            data_schema=self.add_suggested_values_to_schema(LIMITS_SCHEMA, user_input or shown),
            errors=errors,
            description_placeholders=self._placeholders,
        )

    async def async_step_dispatch(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The weights that choose a seedbox for a new torrent, saved on the bridge."""
        if (sync := self._config_sync()) is None:
            return self.async_abort(reason="not_loaded")
        entry = sync.config.dispatch if sync.config is not None else None
        if entry is None:
            # not published yet, or a bridge without runtime dispatch weights
            return self.async_abort(reason="unsupported")
        if entry.read_only:
            return self.async_abort(reason="dispatch_read_only")
        errors: dict[str, str] = {}
        if user_input is not None:
            value, errors = dispatch_value(user_input, entry.value)
            if not errors:
                answer = await async_ask(
                    sync.coordinator,
                    "config_set",
                    {"section": DISPATCH, "id": DISPATCH, "value": value},
                    APPLY_TIMEOUT,
                )
                if answer.code == "apply_failed":
                    # Stored, and applied when the bridge starts again: saved all the same.
                    LOGGER.warning(
                        "Bridge %s saved the dispatch weights but could not apply them "
                        "now: they apply when the bridge restarts (its log says why)",
                        sync.coordinator.name,
                    )
                    answer = Answer(result=answer.details)
                if answer.code is None:
                    sync.async_changed(answer.result.get("revision"))
                    return self.async_create_entry(data=dict(self.config_entry.options))
                errors = self._errors(answer, DISPATCH_FIELDS)
        return self.async_show_form(
            step_id="dispatch",
            data_schema=self.add_suggested_values_to_schema(
                DISPATCH_SCHEMA, user_input or dispatch_form(entry.value)
            ),
            errors=errors,
            description_placeholders=self._placeholders,
        )

    def _errors(self, answer: Answer, fields: frozenset[str]) -> dict[str, str]:
        errors, self._placeholders = form_errors(answer, fields)
        if errors["base"] not in ERRORS:
            errors["base"] = "unknown"
        return errors

    def _coordinator(self) -> Q4dCoordinator | None:
        """The bridge's coordinator; None while the entry is not loaded."""
        sync = self._config_sync()
        return None if sync is None else sync.coordinator

    def _config_sync(self) -> ConfigSync | None:
        entry = self.config_entry
        if entry.state is not ConfigEntryState.LOADED:
            return None
        sync: ConfigSync = entry.runtime_data.config_sync
        return sync
