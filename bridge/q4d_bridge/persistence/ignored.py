"""Completions an ignore rule left on the seedbox: recorded, counted (in total and per
seedbox) and announced in one transaction, once per torrent."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..models import CompletionEvent
from .store import Message, Store


def record_ignored(
    store: Store,
    event: CompletionEvent,
    rule: str,
    messages: Sequence[Message] = (),
    now: float | None = None,
) -> bool:
    """True if this is the first time this torrent was ignored: its record, the event id
    as seen, the counters `ignored` and `ignored.<seedbox>` and `messages` are committed.
    False for a resent event or a torrent already ignored (by hash, else by path), which
    change nothing but the seen event."""
    now = time.time() if now is None else now
    with store.transaction() as db:
        seen = db.execute("SELECT 1 FROM seen_events WHERE event_id = ?", (event.event_id,))
        if seen.fetchone() is not None:
            return False
        # item_id NULL: no item; should the rule go, a resent event is admitted afresh
        db.execute(
            "INSERT INTO seen_events VALUES (?, ?, NULL, ?)", (event.event_id, event.seedbox, now)
        )
        if event.hash is not None:
            known = db.execute(
                "SELECT 1 FROM ignored WHERE seedbox = ? AND hash = ?", (event.seedbox, event.hash)
            )
        else:
            known = db.execute(
                "SELECT 1 FROM ignored WHERE seedbox = ? AND hash IS NULL AND remote_path = ?",
                (event.seedbox, event.path),
            )
        if known.fetchone() is not None:
            return False
        db.execute(
            "INSERT INTO ignored (at, event_id, seedbox, hash, name, remote_path, category, rule) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now, event.event_id, event.seedbox, event.hash, event.name, event.path,
             event.category, rule),
        )  # fmt: skip
        Store.enqueue_in(db, messages, now)
        Store.incr_in(db, "ignored")
        Store.incr_in(db, f"ignored.{event.seedbox}")
    return True
