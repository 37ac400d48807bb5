"""What every post-processing step is: given the landed payload, do one job
idempotently (it may run again after a crash or a retry) and say what it did, or raise
`StepError`. Steps know nothing of MQTT, the store or the queue."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from .plan import PostPlan


class StepError(Exception):
    """A step that did not succeed. `transient` errors (a service down, a timeout) are
    retried with backoff; others fail the item with the message. Either way the landed
    payload stays."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Landed:
    """A payload at its final path."""

    item_id: str
    name: str
    hash: str | None  # the torrent's info-hash as the seedbox client lists it
    seedbox: str
    category: str | None
    path: Path  # the landed file or folder
    root: Path  # its destination's root
    plan: PostPlan
    remote_path: str = ""  # where it is on the seedbox (a hand-off's repairs read it)


class Step(Protocol):
    name: str

    async def run(self, landed: Landed) -> str:
        """Do the job; the short detail recorded on the item ("3 files from 2 archives")."""
        ...


@runtime_checkable
class Closing(Protocol):
    """A step holding connections (an HTTP session) that it lets go when the bridge stops."""

    async def close(self) -> None: ...
