"""Intake: turn a raw MQTT message into an accepted event with its destination, or a
rejection with a stable reason. Pure: the bridge stores the outcome before acting."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from ..config.model import ClassicConfig, SeedboxConfig
from ..models import CompletionEvent
from ..mqtt.codec import RejectedEvent
from ..mqtt.events import MAX_SIZE, parse_classic_down, parse_completed
from ..mqtt.topics import Topics
from ..rules import (
    NoDestinationError,
    Resolution,
    Routing,
    UnsafePathError,
    check_remote_path,
    resolve,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Accepted:
    event: CompletionEvent
    resolution: Resolution


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    detail: str
    seedbox: str | None = None  # whose it was, as far as the topic or the event says
    name: str | None = None  # the torrent's, once the event was read that far


def decode(
    topic: str,
    payload: bytes,
    *,
    topics: Topics,
    classic: ClassicConfig,
    seedboxes: Mapping[str, SeedboxConfig],
    routing: Routing,
) -> Accepted | Rejected:
    """Every payload ends here as accepted or rejected with a stable reason: a bad
    payload as its own reason, without a traceback; a failure of the checks themselves
    (a bug) as `internal`, logged at ERROR with its traceback. A rejection names the
    seedbox the topic names (configured or not)."""
    classic_down = classic.enabled and topic == classic.down_topic
    seedbox = classic.seedbox if classic_down else topics.seedbox_of(topic)
    try:
        if classic_down:
            event = parse_classic_down(payload, classic.seedbox)
        else:
            if seedbox is None:
                return Rejected("unknown_topic", f"not a completion topic: {topic!r}")
            if seedbox not in seedboxes:
                return Rejected(
                    "unknown_seedbox", f"seedbox {seedbox!r} is not configured", seedbox
                )
            event = parse_completed(payload, seedbox)
        return accept(event, seedboxes=seedboxes, routing=routing)
    except RejectedEvent as err:
        return Rejected(err.reason, err.detail, seedbox)
    except Exception as err:  # a bug: logged here, the payload kept in `rejected`
        _LOGGER.exception("checking the event on %s failed", topic)
        return Rejected("internal", f"checking the event failed: {type(err).__name__}", seedbox)


def accept(
    event: CompletionEvent, *, seedboxes: Mapping[str, SeedboxConfig], routing: Routing
) -> Accepted | Rejected:
    """Path safety and routing for a parsed event (from MQTT or from reconciliation)."""
    if event.size is not None and not 0 <= event.size <= MAX_SIZE:  # what the store holds
        return Rejected(
            "wrong_type", f"'size' must be an integer from 0 to {MAX_SIZE}", *_whose(event)
        )
    try:
        path = check_remote_path(event.path, seedboxes[event.seedbox].remote_roots)
        event = dataclasses.replace(event, path=path)
        resolution = resolve(event, routing)
    except UnsafePathError as err:
        return Rejected("unsafe_path", str(err), *_whose(event))
    except NoDestinationError as err:
        return Rejected("no_destination", str(err), *_whose(event))
    # Fixed per item from here on: a resumed transfer continues with the engine that
    # wrote its staging files, whatever the config says later.
    engine = resolution.engine or seedboxes[event.seedbox].engine
    # A tracker rule's category is the item's from here on (stored, published).
    event = dataclasses.replace(event, category=resolution.category)
    return Accepted(event, dataclasses.replace(resolution, engine=engine))


def _whose(event: CompletionEvent) -> tuple[str, str]:
    """The seedbox and name a rejection of a parsed event reports."""
    return event.seedbox, event.name
