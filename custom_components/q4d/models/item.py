"""Queue items (protocol v1), and what they show and allow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ..const import FINISHED_STATES, ITEM_STATES, REQUEST_STATES, SPACE_ERROR_CODES
from .bridge import BridgeState
from .payload import (
    PayloadError,
    decode,
    float_field,
    int_field,
    opt_float,
    opt_int,
    opt_str,
    req_str,
)

# The item status sensor's options: the bridge's states, plus why a queued or waiting
# item does not start.
ITEM_STATUSES: Final = (
    "queued",
    "paused",
    "on_hold",
    "transferring",
    "verifying",
    "processing",
    "waiting",
    "waiting_for_space",
    "done",
    "failed",
    "cancelled",
)
# The states the bridge retries an item from (lifecycle/machine.py).
RETRY_STATES: Final = FINISHED_STATES | {"waiting"}
# The fields that change while an item transfers. Each is shown by one entity at most
# (none shows `bytes_done` or `updated_at`): an update that changes nothing else need
# not concern the item's other entities.
PROGRESS_FIELDS: Final = frozenset({"progress", "rate", "eta", "bytes_done", "updated_at"})


@dataclass(slots=True, kw_only=True)
class Item:
    """`<prefix>/bridge/<id>/item/<item_id>` (retained; empty payload = removed).

    A torrent request not in the queue yet comes as an item too, under its request id:
    `requested` or `downloading` (progress and rate are the seedbox's), or `failed`.
    """

    id: str
    seedbox: str
    name: str
    state: str
    destination: str | None
    local_path: str | None
    remote_path: str | None
    category: str | None
    tags: list[str]
    size: int | None
    bytes_done: int | None
    progress: float
    rate: float
    eta: float | None
    attempts: int
    priority: int
    paused: bool
    held: str | None
    error_code: str | None
    error_message: str | None
    received_at: float | None
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None
    updated_at: float | None
    request_id: str | None
    # Post-processing once landed (newer bridges): the step it is in, waits for or
    # failed at, and each step's state and what it did.
    step: str | None
    steps: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        """Parse an item payload (also found in events and get_queue results)."""
        state = req_str(data, "state")
        if state not in ITEM_STATES and state not in REQUEST_STATES:
            raise PayloadError(f"unknown item state {state!r}")
        error = data.get("error")
        tags = data.get("tags")
        steps = data.get("steps")
        return cls(
            id=req_str(data, "id"),
            seedbox=req_str(data, "seedbox"),
            name=req_str(data, "name"),
            state=state,
            destination=opt_str(data, "destination"),
            local_path=opt_str(data, "local_path"),
            remote_path=opt_str(data, "remote_path"),
            category=opt_str(data, "category"),
            tags=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
            size=opt_int(data, "size"),
            bytes_done=opt_int(data, "bytes_done"),
            progress=float_field(data, "progress"),
            rate=float_field(data, "rate"),
            eta=opt_float(data, "eta"),
            attempts=int_field(data, "attempts"),
            priority=int_field(data, "priority"),
            paused=data.get("paused") is True,
            held=opt_str(data, "held"),  # newer bridges only
            error_code=opt_str(error, "code") if isinstance(error, dict) else None,
            error_message=opt_str(error, "message") if isinstance(error, dict) else None,
            received_at=opt_float(data, "received_at"),
            started_at=opt_float(data, "started_at"),
            finished_at=opt_float(data, "finished_at"),
            next_attempt_at=opt_float(data, "next_attempt_at"),
            updated_at=opt_float(data, "updated_at"),
            request_id=opt_str(data, "request_id"),  # newer bridges only
            step=opt_str(data, "step"),
            steps=[s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else [],
            raw=data,
        )

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> Item:
        """Parse a retained item payload."""
        return cls.from_dict(decode(payload))

    def progress_changes(self, previous: Item | None) -> frozenset[str] | None:
        """The payload fields that changed since `previous` if they are all progress
        fields (`PROGRESS_FIELDS`); None if anything else changed, a field came or went,
        or nothing came before."""
        if previous is None or previous.raw.keys() != self.raw.keys():
            return None
        old = previous.raw
        changed = frozenset([key for key, value in self.raw.items() if old[key] != value])
        return changed if changed <= PROGRESS_FIELDS else None

    @property
    def finished(self) -> bool:
        """Whether the item reached done, failed or cancelled."""
        return self.state in FINISHED_STATES

    @property
    def is_request(self) -> bool:
        """Whether this is a torrent request rather than a queue item (the queue's
        commands do not apply to it): a failed request is still published under its
        request id, while the queue item a request became has an id of its own."""
        return self.state in REQUEST_STATES or (
            self.request_id is not None and self.request_id == self.id
        )

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the latest attempt to the end."""
        if self.started_at is None or self.finished_at is None:
            return None
        return round(max(0.0, self.finished_at - self.started_at), 1)

    def status(self, state: BridgeState | None, now: float) -> str:
        """What the item is doing, in more words than its state: a queued or waiting
        item may be held by a pause (its own or the queue's), by a lack of free space,
        or by its seedbox's circuit breaker (at `now`)."""
        if self.state not in ("queued", "waiting"):
            return self.state
        # `held: "queue"` (newer bridges) comes with the item, ahead of the next state.
        if self.paused or self.held == "queue" or (state is not None and state.paused):
            return "paused"
        if self.state == "waiting" and self.error_code in SPACE_ERROR_CODES:
            return "waiting_for_space"
        seedbox = state.seedboxes.get(self.seedbox) if state is not None else None
        if seedbox is not None and seedbox.breaker_open_at(now):
            return "on_hold"
        return self.state

    def refusal(self, op: str, *, force: bool = False) -> str | None:
        """Why the bridge would refuse command `op` for this item (the key of the
        translated error), or None when it applies."""
        if self.is_request:
            return "not_queued"
        if op == "retry" and self.state not in RETRY_STATES:
            return "retry_unfinished"
        if op == "retry" and self.state == "done" and not force:
            return "retry_done"
        if op in ("cancel", "pause") and self.state == "verifying":
            return f"{op}_verifying"
        if op == "pause" and self.state == "processing":
            return "pause_processing"
        if op in ("cancel", "pause", "resume") and self.finished:
            return f"{op}_finished"
        return None

    def summary(self) -> dict[str, Any]:
        """The item as returned by the get_queue action."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.state,
            "progress": self.progress,
            "rate": self.rate,
            "eta": self.eta,
            "seedbox": self.seedbox,
            "destination": self.destination,
            "destination_path": self.local_path,
            "category": self.category,
            "size": self.size,
            "priority": self.priority,
            "paused": self.paused,
            "attempts": self.attempts,
            "error": None
            if self.error_code is None and self.error_message is None
            else {"code": self.error_code, "message": self.error_message},
            "received_at": self.received_at,
            "finished_at": self.finished_at,
            "request_id": self.request_id,
            "step": self.step,
        }
