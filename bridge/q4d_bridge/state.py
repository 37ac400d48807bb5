"""The bridge's state snapshot (the retained `state` topic), typed, and built by a pure
function from what the parts hold."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .lifecycle.policy import Breaker, Limits
from .models import ACTIVE_STATES, FINISHED_STATES, Item, ItemState
from .mqtt.codec import PROTOCOL_VERSION
from .persistence.store import DUPLICATES_COUNTER, REJECTIONS_COUNTER

TOTALS = (
    "received", "completed", "failed", "rejected", "duplicates", "ignored", "bytes_transferred",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SeedboxState:
    name: str
    breaker: str  # "open" while its circuit breaker keeps its items from starting
    breaker_until: float | None
    consecutive_failures: int
    queued: int
    active: int
    waiting: int
    failed: int
    rate: float
    client: dict[str, Any] | None  # its torrent client as last polled; None: no client
    ssh: dict[str, Any] | None  # the SSH link held to it; None: no link held
    lost_events: int
    ignored: int  # completions an ignore rule left on this seedbox, in all
    rejected: int  # what it sent that intake refused, in all
    duplicates: int  # completions of items it had sent already, in all
    last_rejection: dict[str, Any] | None  # {reason, message, at}; None: never refused


@dataclass(frozen=True, slots=True)
class DestinationState:
    free_space: int | None
    min_free_space: int


@dataclass(frozen=True, slots=True)
class LastCompleted:
    id: str
    name: str
    at: float | None


@dataclass(frozen=True, slots=True)
class BridgeState:
    bridge_id: str
    paused: bool
    counts: dict[str, int]
    active: int
    rate: float
    totals: dict[str, int]
    max_concurrent: int
    bandwidth_limit: int
    per_seedbox: dict[str, int]
    seedboxes: dict[str, SeedboxState]
    destinations: dict[str, DestinationState]
    last_completed: LastCompleted | None
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        """The payload of docs/protocol.md#q4dbridgebridgestate."""
        return {
            "v": PROTOCOL_VERSION,
            "bridge_id": self.bridge_id,
            "paused": self.paused,
            "counts": self.counts,
            "active": self.active,
            "rate": self.rate,
            "totals": self.totals,
            "limits": {
                "max_concurrent": self.max_concurrent,
                "bandwidth_limit": self.bandwidth_limit,
                "per_seedbox": self.per_seedbox,
            },
            "seedboxes": {k: dataclasses.asdict(v) for k, v in self.seedboxes.items()},
            "destinations": {k: dataclasses.asdict(v) for k, v in self.destinations.items()},
            "last_completed": None
            if self.last_completed is None
            else dataclasses.asdict(self.last_completed),
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class SeedboxFacts:
    """What the parts know of one seedbox, beyond its items."""

    name: str
    breaker: Breaker
    client: dict[str, Any] | None
    ssh: dict[str, Any] | None
    lost_events: int


@dataclass(frozen=True, slots=True)
class FinishedTally:
    """The finished items summed up. They change only when one finishes, leaves that
    state or is pruned, so a state snapshot keeps this between such changes rather than
    walk a history of thousands each second."""

    counts: Counter[tuple[str, str]]  # (seedbox, state) -> items
    last_completed: LastCompleted | None


def tally_finished(items: Iterable[Item]) -> FinishedTally:
    counts: Counter[tuple[str, str]] = Counter()
    last: Item | None = None
    for item in items:
        if item.state in FINISHED_STATES:
            counts[item.seedbox, item.state.value] += 1
            if item.state is ItemState.DONE and (
                last is None or (item.finished_at or 0) > (last.finished_at or 0)
            ):
                last = item
    return FinishedTally(
        counts, None if last is None else LastCompleted(last.id, last.name, last.finished_at)
    )


def build_state(
    *,
    bridge_id: str,
    unfinished: Iterable[Item],
    finished: FinishedTally,
    paused: bool,
    limits: Limits,
    bandwidth_limit: int,
    counters: Mapping[str, int],
    seedboxes: Mapping[str, SeedboxFacts],
    free_space: Mapping[str, int | None],
    destinations: Iterable[str],
    min_free_space: int,
    now: float,
    requests: Mapping[str, int] | None = None,
    last_rejections: Mapping[str, dict[str, Any]] | None = None,
) -> BridgeState:
    """`unfinished`: the items not finished; `finished`: the others, summed up.
    `requests`: add requests standing in the queue before their item, per phase.
    `last_rejections`: each seedbox's last rejection (Store.last_rejections)."""
    last_rejections = last_rejections or {}
    counts: Counter[str] = Counter()
    per_state: dict[str, Counter[str]] = {sb: Counter() for sb in seedboxes}
    rates: dict[str, float] = dict.fromkeys(seedboxes, 0.0)
    for item in unfinished:
        counts[item.state] += 1
        if item.seedbox not in per_state:
            continue
        if item.state in ACTIVE_STATES:
            per_state[item.seedbox]["active"] += 1
            rates[item.seedbox] += item.rate
        elif item.state in (ItemState.QUEUED, ItemState.WAITING):
            per_state[item.seedbox][item.state] += 1
    for (seedbox, state), count in finished.counts.items():
        counts[state] += count
        if seedbox in per_state and state == ItemState.FAILED:
            per_state[seedbox][state] += count
    return BridgeState(
        bridge_id=bridge_id,
        paused=paused,
        counts={
            **{state.value: counts.get(state.value, 0) for state in ItemState},
            **(requests or {}),
        },
        active=sum(counts.get(s.value, 0) for s in ACTIVE_STATES),
        rate=round(sum(rates.values()), 1),
        totals={name: counters.get(name, 0) for name in TOTALS},
        max_concurrent=limits.global_max,
        bandwidth_limit=bandwidth_limit,
        per_seedbox=dict(limits.per_seedbox),
        seedboxes={
            sb: SeedboxState(
                name=facts.name,
                breaker="open" if facts.breaker.open_until else "closed",
                breaker_until=facts.breaker.open_until,
                consecutive_failures=facts.breaker.failures,
                queued=per_state[sb]["queued"],
                active=per_state[sb]["active"],
                waiting=per_state[sb]["waiting"],
                failed=per_state[sb]["failed"],
                rate=round(rates[sb], 1),
                client=facts.client,
                ssh=facts.ssh,
                lost_events=facts.lost_events,
                ignored=counters.get(f"ignored.{sb}", 0),
                rejected=counters.get(f"{REJECTIONS_COUNTER}{sb}", 0),
                duplicates=counters.get(f"{DUPLICATES_COUNTER}{sb}", 0),
                last_rejection=last_rejections.get(sb),
            )
            for sb, facts in seedboxes.items()
        },
        destinations={
            name: DestinationState(free_space.get(name), min_free_space) for name in destinations
        },
        last_completed=finished.last_completed,
        updated_at=now,
    )
