"""Intake: turn a raw MQTT message into an accepted event with its destination, or a
rejection with a stable reason. Pure: the bridge stores the outcome before acting."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from .config import ClassicConfig, SeedboxConfig
from .models import CompletionEvent
from .protocol import RejectedEvent, Topics, parse_classic_down, parse_completed
from .rules import Resolution, Routing, UnsafePathError, check_remote_path, resolve


@dataclass(frozen=True, slots=True)
class Accepted:
    event: CompletionEvent
    resolution: Resolution


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str


def decode(
    topic: str,
    payload: bytes,
    *,
    topics: Topics,
    classic: ClassicConfig,
    seedboxes: Mapping[str, SeedboxConfig],
    routing: Routing,
) -> Accepted | Rejected:
    try:
        if classic.enabled and topic == classic.down_topic:
            event = parse_classic_down(payload, classic.seedbox)
        else:
            seedbox = topics.seedbox_of(topic)
            if seedbox is None:
                return Rejected("unknown_topic", f"not a completion topic: {topic!r}")
            if seedbox not in seedboxes:
                return Rejected("unknown_seedbox", f"seedbox {seedbox!r} is not configured")
            event = parse_completed(payload, seedbox)
    except RejectedEvent as err:
        return Rejected(err.reason, err.detail)
    return accept(event, seedboxes=seedboxes, routing=routing)


def accept(
    event: CompletionEvent, *, seedboxes: Mapping[str, SeedboxConfig], routing: Routing
) -> Accepted | Rejected:
    """Path safety and routing for a parsed event (from MQTT or from reconciliation)."""
    try:
        path = check_remote_path(event.path, seedboxes[event.seedbox].remote_roots)
        event = dataclasses.replace(event, path=path)
        resolution = resolve(event, routing)
    except UnsafePathError as err:
        return Rejected("unsafe_path", str(err))
    # Fixed per item from here on: a resumed transfer continues with the engine that
    # wrote its staging files, whatever the config says later.
    engine = resolution.engine or seedboxes[event.seedbox].engine
    return Accepted(event, dataclasses.replace(resolution, engine=engine))
