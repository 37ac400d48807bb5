"""Subentry flows: a bridge's seedboxes, destinations, rules, Sonarr/Radarr instances
and home torrent clients, added and edited from Home Assistant, one module each. Each
flow tests what it can on the bridge (`config_test`), then saves it there
(`config_set`); the bridge validates with the schema `check-config` uses and applies
the change live. A subentry holds no secret: the bridge keeps them. What the flows
share is `subentry_flow`.

Removal is not a flow: `config_sync` sees a subentry gone and tells the bridge.
"""

from __future__ import annotations

from typing import Final

from homeassistant.config_entries import ConfigSubentryFlow

from .arr import ArrSubentryFlow
from .destination import DestinationSubentryFlow
from .home_client import HomeClientSubentryFlow
from .rule import RuleSubentryFlow
from .seedbox import SeedboxSubentryFlow

SUBENTRY_FLOWS: Final[dict[str, type[ConfigSubentryFlow]]] = {
    "seedbox": SeedboxSubentryFlow,
    "destination": DestinationSubentryFlow,
    "rule": RuleSubentryFlow,
    "arr": ArrSubentryFlow,
    "home_client": HomeClientSubentryFlow,
}
