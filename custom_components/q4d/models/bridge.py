"""The bridge's status, state snapshot and command results (protocol v1)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..const import ACTIVE_STATES, HOST_KEY_ERROR, ITEM_STATES, REQUEST_STATES
from .payload import (
    PayloadError,
    decode,
    float_field,
    int_field,
    obj_field,
    opt_bool,
    opt_float,
    opt_int,
    opt_str,
    req_str,
)


@dataclass(slots=True, kw_only=True)
class BridgeStatus:
    """`<prefix>/bridge/<id>/status` (retained, also the last will)."""

    online: bool
    bridge_id: str
    name: str
    version: str | None
    prefix: str | None
    seedboxes: list[str]

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> BridgeStatus:
        """Parse a status payload."""
        data = decode(payload)
        state = req_str(data, "state")
        if state not in ("online", "offline"):
            raise PayloadError(f"unknown bridge state {state!r}")
        bridge_id = req_str(data, "bridge_id")
        seedboxes = data.get("seedboxes")
        return cls(
            online=state == "online",
            bridge_id=bridge_id,
            name=opt_str(data, "name") or bridge_id,
            version=opt_str(data, "version"),
            prefix=opt_str(data, "prefix"),
            seedboxes=[s for s in seedboxes if isinstance(s, str)]
            if isinstance(seedboxes, list)
            else [],
        )


@dataclass(slots=True, kw_only=True)
class DispatchState:
    """How the bridge scored the client for new torrents at its last poll
    (`seedboxes.<id>.client.dispatch`)."""

    enabled: bool | None
    score: float | None
    eligible: bool | None
    reason_code: str | None
    reason: str | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DispatchState:
        """Parse the dispatch object of a client."""
        return cls(
            enabled=opt_bool(data, "enabled"),
            score=opt_float(data, "score"),
            eligible=opt_bool(data, "eligible"),
            reason_code=opt_str(data, "reason_code"),
            reason=opt_str(data, "reason"),
        )


@dataclass(slots=True, kw_only=True)
class ClientStats:
    """What the seedbox's torrent client reported (`seedboxes.<id>.client`)."""

    type: str | None
    version: str | None
    reachable: bool | None
    free_space: int | None
    active_downloads: int | None
    download_rate: float | None
    upload_rate: float | None
    torrents: int | None
    error: str | None
    checked_at: float | None
    dispatch: DispatchState | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClientStats:
        """Parse the client object of a seedbox (older bridges send no type, version or
        dispatch)."""
        dispatch = data.get("dispatch")
        return cls(
            type=opt_str(data, "type"),
            version=opt_str(data, "version"),
            reachable=opt_bool(data, "reachable"),
            free_space=opt_int(data, "free_space"),
            active_downloads=opt_int(data, "active_downloads"),
            download_rate=opt_float(data, "download_rate"),
            upload_rate=opt_float(data, "upload_rate"),
            torrents=opt_int(data, "torrents"),
            error=opt_str(data, "error"),
            checked_at=opt_float(data, "checked_at"),
            dispatch=DispatchState.from_dict(dispatch) if isinstance(dispatch, dict) else None,
        )


@dataclass(slots=True, kw_only=True)
class SshLink:
    """The SSH link the bridge holds to a seedbox (`seedboxes.<id>.ssh`)."""

    connected: bool
    error: str | None
    checked_at: float | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SshLink:
        """Parse the ssh object of a seedbox."""
        return cls(
            connected=data.get("connected") is True,
            error=opt_str(data, "error"),
            checked_at=opt_float(data, "checked_at"),
        )

    @property
    def host_key_mismatch(self) -> bool:
        """Whether the last connection attempt was refused for the seedbox's host key."""
        return self.error is not None and self.error.startswith(f"{HOST_KEY_ERROR}:")


@dataclass(slots=True, kw_only=True)
class LastRejection:
    """The last message of a seedbox the bridge refused (`seedboxes.<id>.last_rejection`)."""

    reason_code: str
    message: str | None
    at: float | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LastRejection:
        """Parse the last_rejection object of a seedbox."""
        return cls(
            reason_code=req_str(data, "reason"),
            message=opt_str(data, "message"),
            at=opt_float(data, "at"),
        )


@dataclass(slots=True, kw_only=True)
class SeedboxState:
    """One seedbox in the state snapshot."""

    id: str
    name: str
    breaker_open: bool
    breaker_until: float | None
    consecutive_failures: int
    queued: int
    active: int
    waiting: int
    failed: int
    rate: float
    max_concurrent: int | None
    client: ClientStats | None
    ssh: SshLink | None
    rejected: int | None  # None: a bridge that does not count them per seedbox
    duplicates: int | None
    last_rejection: LastRejection | None

    @classmethod
    def from_dict(cls, seedbox_id: str, data: dict[str, Any], limit: int | None) -> SeedboxState:
        """Parse one entry of `seedboxes` (`client`, `ssh` and the refusals are missing
        from older bridges; older bridges call the client `node`)."""
        client = data.get("client", data.get("node"))
        ssh = data.get("ssh")
        last_rejection = data.get("last_rejection")
        return cls(
            id=seedbox_id,
            name=opt_str(data, "name") or seedbox_id,
            breaker_open=data.get("breaker") == "open",
            breaker_until=opt_float(data, "breaker_until"),
            consecutive_failures=int_field(data, "consecutive_failures"),
            queued=int_field(data, "queued"),
            active=int_field(data, "active"),
            waiting=int_field(data, "waiting"),
            failed=int_field(data, "failed"),
            rate=float_field(data, "rate"),
            max_concurrent=limit,
            client=ClientStats.from_dict(client) if isinstance(client, dict) else None,
            ssh=SshLink.from_dict(ssh) if isinstance(ssh, dict) else None,
            rejected=opt_int(data, "rejected"),
            duplicates=opt_int(data, "duplicates"),
            last_rejection=LastRejection.from_dict(last_rejection)
            if isinstance(last_rejection, dict)
            else None,
        )

    def breaker_open_at(self, now: float) -> bool:
        """Whether the circuit breaker keeps the seedbox's items from starting at `now`.

        The bridge reports `open` until something else makes it publish its state
        again, so an expired cool-down (`breaker_until` in the past) counts as closed.
        """
        return self.breaker_open and (self.breaker_until is None or self.breaker_until > now)

    @property
    def breaker_active(self) -> bool:
        """Whether the circuit breaker is open now."""
        return self.breaker_open_at(time.time())


@dataclass(slots=True, kw_only=True)
class Destination:
    """One destination of the state snapshot (`destinations.<name>`)."""

    name: str
    free_space: int | None
    min_free_space: int | None

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> Destination:
        """Parse one entry of `destinations`."""
        return cls(
            name=name,
            free_space=opt_int(data, "free_space"),
            min_free_space=opt_int(data, "min_free_space"),
        )

    @property
    def short_of_space(self) -> bool:
        """Whether less space is free than the margin every download must leave."""
        return (
            self.free_space is not None
            and self.min_free_space is not None
            and self.free_space < self.min_free_space
        )


@dataclass(slots=True, kw_only=True)
class LastCompleted:
    """The `done` item with the latest `finished_at`."""

    id: str
    name: str
    at: float | None


@dataclass(slots=True, kw_only=True)
class BridgeState:
    """`<prefix>/bridge/<id>/state` (retained, at most once per second)."""

    paused: bool
    counts: dict[str, int]
    active: int
    rate: float
    totals: dict[str, int]
    max_concurrent: int | None
    bandwidth_limit: int | None
    seedboxes: dict[str, SeedboxState]
    destinations: dict[str, Destination]
    last_completed: LastCompleted | None
    updated_at: float | None

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> BridgeState:
        """Parse a state snapshot."""
        data = decode(payload)
        counts_raw = data.get("counts")
        if not isinstance(counts_raw, dict):
            raise PayloadError("'counts' must be an object")
        # Requests count as items: the bridge publishes them on item topics too.
        counts = {state: int_field(counts_raw, state) for state in (*ITEM_STATES, *REQUEST_STATES)}
        totals_raw = obj_field(data, "totals")
        limits = obj_field(data, "limits")
        per_seedbox = obj_field(limits, "per_seedbox")
        seedboxes_raw = data.get("seedboxes")
        if not isinstance(seedboxes_raw, dict):
            raise PayloadError("'seedboxes' must be an object")
        destinations = obj_field(data, "destinations")  # missing from older bridges
        last = data.get("last_completed")
        return cls(
            paused=data.get("paused") is True,
            counts=counts,
            active=int_field(data, "active", sum(counts[s] for s in ACTIVE_STATES)),
            rate=float_field(data, "rate"),
            totals={key: int_field(totals_raw, key) for key in totals_raw},
            max_concurrent=opt_int(limits, "max_concurrent"),
            bandwidth_limit=opt_int(limits, "bandwidth_limit"),
            seedboxes={
                sb: SeedboxState.from_dict(sb, value, opt_int(per_seedbox, sb))
                for sb, value in seedboxes_raw.items()
                if isinstance(value, dict)
            },
            destinations={
                name: Destination.from_dict(name, value)
                for name, value in destinations.items()
                if isinstance(value, dict)
            },
            last_completed=LastCompleted(
                id=req_str(last, "id"), name=req_str(last, "name"), at=opt_float(last, "at")
            )
            if isinstance(last, dict)
            else None,
            updated_at=opt_float(data, "updated_at"),
        )

    @property
    def total_items(self) -> int:
        """Number of items the bridge publishes (all states, requests included)."""
        return sum(self.counts.values())


RESULT_KEYS = frozenset({"v", "id", "op", "ok", "result", "error", "code", "message"})


@dataclass(slots=True, kw_only=True)
class CommandResult:
    """`<prefix>/bridge/<id>/command/result`."""

    id: str | None
    ok: bool
    result: Any
    error_code: str | None
    error_message: str | None
    # What a refusal says besides its code and message (the configuration commands'
    # `fields`, `fingerprint`, `items`...): read from the error object and, since
    # the protocol leaves it open, from beside it.
    error_details: dict[str, Any]

    @classmethod
    def from_payload(cls, payload: str | bytes | bytearray) -> CommandResult:
        """Parse a command result."""
        data = decode(payload)
        ok = data.get("ok")
        if not isinstance(ok, bool):
            raise PayloadError("'ok' must be a boolean")
        error = obj_field(data, "error")
        details = {k: v for k, v in data.items() if k not in RESULT_KEYS}
        details.update((k, v) for k, v in error.items() if k not in ("code", "message"))
        return cls(
            id=opt_str(data, "id"),
            ok=ok,
            result=data.get("result"),
            error_code=opt_str(error, "code") or opt_str(data, "code"),
            error_message=opt_str(error, "message") or opt_str(data, "message"),
            error_details={} if ok else details,
        )
