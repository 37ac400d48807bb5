"""The rule subentry flow: the rule, then its conditions one by one, saved on the
bridge."""

from __future__ import annotations

from typing import Any, Final

import voluptuous as vol
from homeassistant.config_entries import SubentryFlowResult
from homeassistant.helpers.selector import (
    BooleanSelector,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)

from ..config_answers import Answer
from ..config_values import (
    RULE_FIELDS,
    SIZE_OPS,
    STRING_OPS,
    condition,
    condition_of,
    rule_value,
)
from ..subentry_flow import TEXT, BridgeSubentryFlow, number, select

RULE_FORM_FIELDS: Final = frozenset({"id", "order", "destination", "ignore"})


class RuleSubentryFlow(BridgeSubentryFlow):
    """Where matching payloads go (or that they stay): the rule, then its conditions one
    by one (all must match); its `order` places it among the rules."""

    subentry_type = "rule"
    first_step = "rule"

    def __init__(self) -> None:
        """A new flow."""
        super().__init__()
        self._rule: dict[str, Any] = {}
        self._existing: list[tuple[str, str, str]] = []
        self._conditions: list[dict[str, Any]] = []
        self._index = 0

    def _prepare(self) -> None:
        match = self._current.get("match")
        conditions = [condition_of(raw) for raw in match] if isinstance(match, list) else []
        self._existing = [c for c in conditions if c is not None]
        assert self._sync is not None
        orders = self._sync.rule_orders()
        self._rule = {
            "order": self._current.get("order", max(orders, default=0) + 10),
            "ignore": bool(self._current.get("ignore")),
        }
        if self._current.get("destination"):
            self._rule["destination"] = self._current["destination"]

    async def async_step_rule(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """The rule: its id, order, and destination or ignore."""
        if user_input is None:
            return self._show_rule({})
        self._rule = dict(user_input)
        errors = self._check_id(user_input)
        if not user_input.get("destination") and not user_input.get("ignore"):
            errors["destination"] = "destination_required"
        if errors:
            return self._show_rule(errors)
        self._conditions = []
        self._index = 0
        if self._existing or user_input.get("add_condition"):
            return self._show_condition({})
        return await self._async_save_rule()

    async def async_step_condition(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """One condition: kept or dropped if it exists, and whether another follows."""
        if user_input is None:
            return self._show_condition({})
        if user_input.get("keep", True):
            built, errors = condition(user_input)
            if errors:
                return self._show_condition(errors, user_input)
            self._conditions.append(built)
        self._index += 1
        if self._index < len(self._existing) or user_input.get("add_another"):
            return self._show_condition({})
        return await self._async_save_rule()

    async def _async_save_rule(self) -> SubentryFlowResult:
        form = {**self._rule, "id": self._id}
        result = await self._async_save(rule_value(form, self._conditions, self._current))
        if not isinstance(result, Answer):
            return result
        # Back to the start, with the conditions as entered.
        built = [condition_of(c) for c in self._conditions]
        self._existing = [c for c in built if c is not None]
        return self._show_rule(self._errors(result, RULE_FORM_FIELDS))

    def _show_rule(self, errors: dict[str, str]) -> SubentryFlowResult:
        assert self._sync is not None
        destinations = sorted(self._sync.ids("destination"))
        schema: dict[Any, Any] = {vol.Required("id"): TEXT} if self._creating else {}
        schema |= {
            vol.Required("order"): number(0, 100000),
            vol.Optional("destination"): SelectSelector(
                SelectSelectorConfig(options=destinations, mode=SelectSelectorMode.DROPDOWN)
            ),
            vol.Optional("ignore", default=False): BooleanSelector(),
        }
        if not self._existing:
            schema[vol.Optional("add_condition", default=self._creating)] = BooleanSelector()
        return self.async_show_form(
            step_id="rule",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), self._rule),
            errors=errors,
            description_placeholders=self._placeholders,
        )

    def _show_condition(
        self, errors: dict[str, str], user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        existing = self._index < len(self._existing)
        schema: dict[Any, Any] = {
            vol.Required("field"): select(RULE_FIELDS, "rule_field"),
            vol.Required("operator"): select(STRING_OPS + SIZE_OPS, "rule_operator"),
            vol.Optional("value", default=""): TEXT,
        }
        if existing:
            schema[vol.Optional("keep", default=True)] = BooleanSelector()
        if self._index >= len(self._existing) - 1:
            schema[vol.Optional("add_another", default=False)] = BooleanSelector()
        suggested = user_input
        if suggested is None and existing:
            field_, op, value = self._existing[self._index]
            suggested = {"field": field_, "operator": op, "value": value}
        return self.async_show_form(
            step_id="condition",
            data_schema=self.add_suggested_values_to_schema(vol.Schema(schema), suggested or {}),
            errors=errors,
            description_placeholders={"number": str(self._index + 1), **self._placeholders},
        )
