"""Domain types shared by intake, queue, engines and publishing."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .postprocess.plan import PostPlan


class ItemState(enum.StrEnum):
    QUEUED = "queued"
    TRANSFERRING = "transferring"
    VERIFYING = "verifying"
    PROCESSING = "processing"  # landed; its post-processing steps run
    DONE = "done"
    WAITING = "waiting"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATES = frozenset({ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED})
ACTIVE_STATES = frozenset({ItemState.TRANSFERRING, ItemState.VERIFYING})


class StepState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"  # a transient error: tried again later
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StepStatus:
    """One post-processing step of a landed item."""

    name: str
    state: StepState = StepState.PENDING
    attempts: int = 0
    detail: str | None = None  # what it did, or why it failed or waits
    at: float | None = None  # when its state last changed


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
    steps: tuple[StepStatus, ...] = ()  # its post-processing once landed
    refetch: bool = False  # a done item fetched again on request: its library copy stays

    @property
    def step(self) -> StepStatus | None:
        """The step it is in, waits for, or failed at; None before landing or when all
        are done."""
        return next((s for s in self.steps if s.state != StepState.DONE), None)

    @property
    def progress(self) -> float:
        if self.state is ItemState.DONE:
            return 100.0
        if not self.size:
            return 0.0
        return round(min(100.0, 100.0 * self.bytes_done / self.size), 1)
