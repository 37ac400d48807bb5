"""Which seedbox client takes a new torrent: a score per client and the reason a client
cannot take it. Pure: the inputs are what the clients last reported (docs/dispatch.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..config.model import ClientDispatch, DispatchConfig

GIB = 1024**3
MIB = 1024**2
DISK_UNIT = 100 * GIB  # disk_weight counts per 100 GiB free, so one download ~ 200 GiB


class Reason(StrEnum):
    ELIGIBLE = "eligible"
    DISABLED = "disabled"  # the client has `dispatch: false`
    NO_CLIENT = "no_client"  # the seedbox has no torrent client configured
    UNREACHABLE = "unreachable"
    BELOW_MIN_FREE = "below_min_free"
    MAX_DOWNLOADS = "max_downloads"
    LOW_SCORE = "low_score"


@dataclass(frozen=True, slots=True)
class ClientSnapshot:
    """One client as last seen: what scoring reads."""

    seedbox: str
    reachable: bool
    error: str | None
    free_space: int | None  # None: the client does not report it
    active_downloads: int
    download_rate: int  # bytes/s
    pending_bytes: int  # what its unfinished downloads still need on disk
    settings: ClientDispatch


@dataclass(frozen=True, slots=True)
class Score:
    seedbox: str
    score: float | None  # None where no score could be worked out (unreachable, off)
    reason: Reason
    detail: str  # the reason in words, with the figures behind it
    free_after: int | None

    @property
    def eligible(self) -> bool:
        return self.reason is Reason.ELIGIBLE

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "eligible": self.eligible,
            "reason_code": self.reason.value,
            "reason": self.detail,
            "free_after": self.free_after,
        }


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def score_client(snapshot: ClientSnapshot, weights: DispatchConfig, size: int) -> Score:
    """How well `snapshot`'s client suits a torrent of `size` bytes; the first rule a
    client breaks is its reason (so "unreachable" wins over a stale free space)."""
    settings = snapshot.settings
    if not settings.enabled:
        return Score(
            snapshot.seedbox, None, Reason.DISABLED, "dispatch is off (dispatch: false)", None
        )
    if not snapshot.reachable:
        why = f"unreachable: {snapshot.error}" if snapshot.error else "unreachable"
        return Score(snapshot.seedbox, None, Reason.UNREACHABLE, why, None)
    free_after = None
    if snapshot.free_space is not None:
        free_after = snapshot.free_space - snapshot.pending_bytes - size
    score = settings.weight * (
        weights.disk_weight * (free_after or 0) / DISK_UNIT
        - weights.download_weight * snapshot.active_downloads
        - weights.bandwidth_weight * snapshot.download_rate / MIB
    )
    score = round(score, 3)
    if free_after is not None and free_after < settings.min_free:
        detail = (
            f"below min free space: {human_size(free_after)} free after this torrent, "
            f"min_free is {human_size(settings.min_free)}"
        )
        return Score(snapshot.seedbox, score, Reason.BELOW_MIN_FREE, detail, free_after)
    if snapshot.active_downloads >= settings.max_downloads:
        detail = f"at max downloads: {snapshot.active_downloads} of {settings.max_downloads}"
        return Score(snapshot.seedbox, score, Reason.MAX_DOWNLOADS, detail, free_after)
    if score < weights.min_score:
        detail = f"score {score:g} is below min_score {weights.min_score:g}"
        return Score(snapshot.seedbox, score, Reason.LOW_SCORE, detail, free_after)
    detail = "eligible" if free_after is not None else "eligible (free space not reported)"
    return Score(snapshot.seedbox, score, Reason.ELIGIBLE, detail, free_after)


def choose(scores: Iterable[Score]) -> Score | None:
    """The eligible client with the highest score; ties go to the first configured."""
    best: Score | None = None
    for candidate in scores:
        if candidate.eligible and (best is None or (candidate.score or 0) > (best.score or 0)):
            best = candidate
    return best
