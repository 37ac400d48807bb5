"""Tracker rules: `tracker domain → ignore, destination or category`, added at runtime
(MQTT, the CLI, Home Assistant), stored by the bridge and tried before the config's
rules (rules.resolve). Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
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


class TrackerRules:
    """The bridge's tracker rules, shared by everything holding its Routing (intake,
    reconciliation, the API), so a rule added or removed applies to the next completion.
    Replaced as a whole by the one writer (the bridge's command desk)."""

    __slots__ = ("rules",)

    def __init__(self, rules: Iterable[TrackerRule] = ()) -> None:
        self.rules = tuple(rules)

    def replace(self, rules: Iterable[TrackerRule]) -> None:
        self.rules = tuple(rules)

    def match(self, event: CompletionEvent) -> TrackerRule | None:
        """The rule of the most specific domain that matches (one rule per domain, so
        `a.example.org` wins over `example.org`)."""
        hits = [rule for rule in self.rules if rule.matches(event)]
        return max(hits, key=lambda rule: len(rule.tracker), default=None)
