"""The tracker-rule commands (docs/protocol.md#tracker-rule-commands): list the rules,
add (or replace) the rule of a tracker domain, remove it. Each change is stored first,
then the shared routing is reloaded from the store, so the next completion sees it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import voluptuous as vol

from ..config.schema import TRACKER_DOMAIN, TRACKER_RULE_SCHEMA
from ..persistence.store import Store
from ..persistence.tracker_rules import delete_tracker_rule, load_tracker_rules, save_tracker_rule
from ..rules import Routing
from ..tracker_rules import TrackerRule

_LOGGER = logging.getLogger(__name__)

SCHEMAS: dict[str, vol.Schema | vol.All] = {
    "tracker_rules": vol.Schema({}),
    "tracker_rule_add": TRACKER_RULE_SCHEMA,
    "tracker_rule_remove": vol.Schema({vol.Required("tracker"): TRACKER_DOMAIN}),
}


class RuleCommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TrackerRuleDesk:
    """The one writer of the tracker rules: the store, then the routing everything
    shares (intake, reconciliation, the API)."""

    def __init__(self, store: Store, routing: Routing) -> None:
        self.store = store
        self.routing = routing

    def listed(self) -> dict[str, Any]:
        rules = self.routing.tracker_rules
        return {
            "rules": [
                {**rule.as_dict(), "source": "file" if rule in rules.configured else "runtime"}
                for rule in rules.rules
            ]
        }

    def add(self, rule: TrackerRule) -> dict[str, Any]:
        self._writable(rule.tracker)
        known = self.routing.destinations
        if rule.destination is not None and rule.destination not in known:
            raise RuleCommandError(
                "not_found", f"no destination {rule.destination!r} (known: {', '.join(known)})"
            )
        replaced = save_tracker_rule(self.store, rule)
        self._reload()
        _LOGGER.info("tracker rule %s: %s", "replaced" if replaced else "added", rule)
        return {
            "rule": {**rule.as_dict(), "source": "runtime"},
            "replaced": replaced,
            **self.listed(),
        }

    def remove(self, tracker: str) -> dict[str, Any]:
        self._writable(tracker)
        if not delete_tracker_rule(self.store, tracker):
            raise RuleCommandError("not_found", f"no tracker rule for {tracker}")
        self._reload()
        _LOGGER.info("tracker rule for %s removed", tracker)
        return {"removed": tracker, **self.listed()}

    def _writable(self, tracker: str) -> None:
        if self.routing.tracker_rules.in_file(tracker):
            raise RuleCommandError(
                "read_only",
                f"the tracker rule for {tracker} is set in the configuration file; edit it there",
            )

    def _reload(self) -> None:
        with self.store.transaction() as db:
            self.routing.tracker_rules.replace(load_tracker_rules(db))


def handlers(desk: TrackerRuleDesk, valid: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """What each op does with its validated arguments (answered at once)."""
    return {
        "tracker_rules": desk.listed,
        "tracker_rule_add": lambda: desk.add(
            TrackerRule(
                valid["tracker"], valid.get("category"), valid.get("destination"), valid["ignore"]
            )
        ),
        "tracker_rule_remove": lambda: desk.remove(valid["tracker"]),
    }
