"""A request: one torrent q4d was asked to get, followed from the add to the library.

    requested ──▶ added ──▶ downloading ──▶ completed ──▶ landed
        └──────────┴────────────┴───────────────┴──────▶ failed

`completed`: finished on the seedbox, its payload in the queue (the item); `landed`:
the item is done, the payload in the library. Before `completed` the request stands in
the queue itself (published like an item, state `requested` or `downloading`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..models import Item, ItemState


class RequestState(StrEnum):
    REQUESTED = "requested"  # recorded; the client has not confirmed the add yet
    ADDED = "added"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    LANDED = "landed"
    FAILED = "failed"


OPEN_STATES = frozenset({RequestState.REQUESTED, RequestState.ADDED, RequestState.DOWNLOADING})
SOURCES = ("ha", "cli", "api", "mqtt")


def new_request_id() -> str:
    return secrets.token_hex(8)


@dataclass(slots=True)
class Request:
    id: str
    created_at: float
    updated_at: float
    source: str
    category: str | None
    name: str | None
    info_hash: str  # the hash its client lists it under
    v1: str | None
    v2: str | None
    seedbox: str
    size: int | None
    state: RequestState
    decision_id: str
    paused: bool = False
    progress: float = 0.0  # percent on the seedbox
    bytes_done: int = 0
    error_code: str | None = None
    error_message: str | None = None
    item_id: str | None = None
    local_path: str | None = None
    magnet: str | None = None  # kept until the client confirms, to add again after a crash
    torrent_file: bytes | None = None
    retracted: bool = False  # failed before the queue, and its queue entry since removed
    rate: float = 0.0  # the seedbox's download rate (not stored)
    polled_at: float | None = None  # when its client last listed it (not stored)
    # its seedbox client's own word for its state at the last poll (not stored): the
    # qBittorrent API tells the apps stalled, queued or stopped from it
    seedbox_state: str | None = None
    missing_polls: int = 0  # polls that did not find it on its client (not stored)

    @property
    def hashes(self) -> frozenset[str]:
        # qBittorrent lists a torrent with a v2 hash under it cut to 40 digits
        v2_id = self.v2[:40] if self.v2 else None
        return frozenset(h for h in (self.info_hash, self.v1, self.v2, v2_id) if h)

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def fail(self, code: str, message: str, now: float) -> None:
        self.state = RequestState.FAILED
        self.error_code, self.error_message = code, message
        self.rate = 0.0
        self.updated_at = now

    def follow(self, item: Item, now: float) -> bool:
        """Take the state of the queue item that brings it home; True if it changed."""
        before = (self.state, self.local_path, self.error_code)
        self.item_id = item.id
        if item.state is ItemState.DONE:
            self.state, self.local_path = RequestState.LANDED, item.local_path
            self.error_code = self.error_message = None
        elif item.state in (ItemState.FAILED, ItemState.CANCELLED):
            self.state = RequestState.FAILED
            self.error_code = item.error_code or item.state.value
            self.error_message = item.last_error or f"the transfer home was {item.state.value}"
        else:
            self.state = RequestState.COMPLETED
            self.progress, self.rate = 100.0, 0.0
            self.error_code = self.error_message = None
        changed = before != (self.state, self.local_path, self.error_code)
        if changed:
            self.updated_at = now
        return changed

    def as_dict(self) -> dict[str, Any]:
        """A request as the `requests` and `add` commands answer it."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "source": self.source,
            "category": self.category,
            "name": self.name,
            "info_hash": self.info_hash,
            "v1": self.v1,
            "v2": self.v2,
            "seedbox": self.seedbox,
            "size": self.size,
            "state": self.state.value,
            "progress": round(self.progress, 1),
            "error": None
            if self.error_code is None
            else {"code": self.error_code, "message": self.error_message},
            "item_id": self.item_id,
            "local_path": self.local_path,
            "decision_id": self.decision_id,
            "paused": self.paused,
        }
