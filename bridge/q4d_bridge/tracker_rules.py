"""Tracker rules: `tracker domain → ignore, destination or category`, set in the
configuration file (`tracker_rules:`) or added at runtime (MQTT, the CLI, Home
Assistant) and stored by the bridge; tried before the config's rules (rules.resolve).
Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .models import CompletionEvent

# a DNS name in lower case: labels of letters, digits and inner hyphens
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DOMAIN_PATTERN = rf"^(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*\Z"


def tracker_host(tracker: str) -> str:
    """The host of a tracker as an event gives it: an announce URL
    (`https://t.example.org:443/a/<passkey>`) or a bare host (`t.example.org`, what the
    hook and the Transmission adapter send), lower-cased, without port or trailing dot."""
    host = (urlsplit(tracker).hostname or "") if "://" in tracker else tracker
    return host.split("/", 1)[0].split(":", 1)[0].rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class TrackerRule:
    """`tracker` is a domain: it matches a tracker whose host is that domain or one of its
    subdomains. `ignore` leaves what matches on the seedbox; `destination` sends it there
    (with that destination's plan); `category` files it under that category first, so the
    config's rules route it as if its client had given it that category."""

    tracker: str
    category: str | None = None
    destination: str | None = None
    ignore: bool = False

    def matches(self, event: CompletionEvent) -> bool:
        if not event.tracker:
            return False
        host = tracker_host(event.tracker)
        return host == self.tracker or host.endswith("." + self.tracker)

    def as_dict(self) -> dict[str, str | bool | None]:
        return dataclasses.asdict(self)

    def as_config(self) -> dict[str, str | bool]:
        """As the configuration file writes it: only what is set."""
        return {k: v for k, v in self.as_dict().items() if v is not None and v is not False}


class TrackerRules:
    """The bridge's tracker rules, shared by everything holding its Routing (intake,
    reconciliation, the API), so a rule added or removed applies to the next completion:
    the configuration file's (fixed while it runs), then the stored ones, replaced as a
    whole by their one writer (the bridge's command desk). The file's rule of a domain
    wins over a stored one."""

    __slots__ = ("configured", "rules", "stored")

    def __init__(
        self, stored: Iterable[TrackerRule] = (), configured: Iterable[TrackerRule] = ()
    ) -> None:
        self.configured = tuple(configured)
        self.replace(stored)

    def replace(self, stored: Iterable[TrackerRule]) -> None:
        self.stored = tuple(stored)
        domains = {rule.tracker for rule in self.configured}
        self.rules = self.configured + tuple(r for r in self.stored if r.tracker not in domains)

    def adopt(self, new: TrackerRules) -> None:
        """Another configuration's file rules, the stored ones kept."""
        self.configured = new.configured
        self.replace(self.stored)

    def in_file(self, tracker: str) -> bool:
        return any(rule.tracker == tracker for rule in self.configured)

    def match(self, event: CompletionEvent) -> TrackerRule | None:
        """The rule of the most specific domain that matches (one rule per domain, so
        `a.example.org` wins over `example.org`)."""
        hits = [rule for rule in self.rules if rule.matches(event)]
        return max(hits, key=lambda rule: len(rule.tracker), default=None)


def configured(
    entries: Iterable[Mapping[str, Any]], destinations: Iterable[str]
) -> tuple[TrackerRules, list[str]]:
    """The configuration file's checked `tracker_rules` entries as the routing's rules,
    and what is wrong with them: a destination that does not exist, a domain twice."""
    known = set(destinations)
    errors: list[str] = []
    rules: list[TrackerRule] = []
    for i, entry in enumerate(entries):
        rule = TrackerRule(
            entry["tracker"], entry.get("category"), entry.get("destination"), entry["ignore"]
        )
        if rule.destination is not None and rule.destination not in known:
            errors.append(
                f"tracker_rules[{i}].destination: {rule.destination!r} is not in destinations"
            )
        if any(r.tracker == rule.tracker for r in rules):
            errors.append(f"tracker_rules[{i}].tracker: a second rule for {rule.tracker}")
        rules.append(rule)
    return TrackerRules(configured=rules), errors
