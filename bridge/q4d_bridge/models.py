"""Domain types shared by intake, queue, engines and publishing."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .postprocess.plan import PostPlan


class ItemState(enum.StrEnum):
    QUEUED = "queued"
    TRANSFERRING = "transferring"
    VERIFYING = "verifying"
    DONE = "done"
    WAITING = "waiting"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED})
ACTIVE_STATES = frozenset({ItemState.TRANSFERRING, ItemState.VERIFYING})


class Label(enum.StrEnum):
    QUEUED = "QUEUED"
    DONE = "DONE"
    FAILED = "FAILED"


# Q4D classic speaks NOPE where v1 speaks FAILED; an unchanged LabelD.sh expects it.
CLASSIC_LABELS = {Label.QUEUED: "QUEUED", Label.DONE: "DONE", Label.FAILED: "NOPE"}


@dataclass(frozen=True, slots=True)
class CompletionEvent:
    """A validated completion event from a seedbox (v1 JSON or Q4D-classic `Down`)."""

    event_id: str
    seedbox: str
    path: str
    name: str
    hash: str | None = None
    client: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    tracker: str | None = None
    size: int | None = None
    type_code: str | None = None
    completed_at: float | None = None
    classic: bool = False
    # The seedbox outbox's numbering (see sequence.py); None from older hooks.
    stream: str | None = None
    seq: int | None = None


@dataclass(slots=True)
class Item:
    """One queued payload and everything Home Assistant shows about it."""

    id: str
    event_id: str
    seedbox: str
    hash: str | None
    name: str
    remote_path: str
    destination: str
    local_path: str
    category: str | None
    tags: tuple[str, ...]
    type_code: str | None
    size: int | None
    state: ItemState
    classic: bool = False
    priority: int = 0
    paused: bool = False
    bytes_done: int = 0
    rate: float = 0.0
    eta: float | None = None
    attempts: int = 0
    last_error: str | None = None
    error_code: str | None = None
    received_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    next_attempt_at: float | None = None
    updated_at: float = 0.0
    engine: str | None = None  # chosen at intake (rule, else seedbox); None in old rows
    request_id: str | None = None  # the add request it fulfils (dispatch/requests.py)
    plan: PostPlan = field(default_factory=PostPlan)  # fixed at intake from its rule
    step: str | None = None  # the post-processing step it is in, or failed at

    @property
    def progress(self) -> float:
        if self.state is ItemState.DONE:
            return 100.0
        if not self.size:
            return 0.0
        return round(min(100.0, 100.0 * self.bytes_done / self.size), 1)
