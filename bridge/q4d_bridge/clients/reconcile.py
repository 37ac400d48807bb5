"""Reconciliation: completed torrents on a seedbox that no event ever announced (a hook
that did not fire, an outbox lost with the host) become completion events. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from ..config.model import ReconcileConfig
from ..models import CompletionEvent, Label
from .base import Torrent

# A torrent carrying one of these was handled already, whatever the bridge remembers:
# the label daemon's names (q4d:DONE, ...) and Q4D's bare ones.
_LABELS = (Label.QUEUED.value, Label.DONE.value, Label.FAILED.value, "NOPE")
HANDLED_LABELS = frozenset({*_LABELS, *(f"q4d:{label}" for label in _LABELS)})


def missed_completions(
    seedbox: str,
    client: str,
    torrents: Iterable[Torrent],
    known_hashes: set[str],
    config: ReconcileConfig,
    now: float,
) -> list[CompletionEvent]:
    events = []
    for torrent in torrents:
        info_hash = torrent.hash.lower()
        if not torrent.complete or info_hash in known_hashes:
            continue
        if HANDLED_LABELS.intersection(torrent.tags) or torrent.category in HANDLED_LABELS:
            continue
        if torrent.completed_at is None or now - torrent.completed_at > config.max_age:
            continue
        if config.categories and torrent.category not in config.categories:
            continue
        if config.tags and not set(config.tags).intersection(torrent.tags):
            continue
        events.append(
            CompletionEvent(
                event_id=f"reconcile-{info_hash}",
                seedbox=seedbox,
                path=torrent.content_path,
                name=torrent.name,
                hash=info_hash,
                client=client,
                category=torrent.category,
                tags=torrent.tags,
                tracker=torrent.tracker,
                size=torrent.size,
                completed_at=torrent.completed_at,
            )
        )
    return events
