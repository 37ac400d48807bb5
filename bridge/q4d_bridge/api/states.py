"""How one torrent q4d follows reads as a qBittorrent torrent: its state, progress and
paths in the shape of WebUI API v2's `torrents/info` and `torrents/properties`. Pure.

The one rule that matters to Sonarr and Radarr: a torrent is complete only once its
payload has landed at home and passed verification. Until then it is a download:

| q4d | state | progress |
|---|---|---|
| the seedbox's client has not confirmed the add | `queuedDL` | 0 |
| downloading on the seedbox (its client's state) | `downloading` (`stalledDL`, …) | seedbox ÷ 2 |
| finished there, its completion event not in yet; in q4d's queue | `queuedDL` | ½ |
| transferring home, verifying | `downloading` | ½ + transferred ÷ 2, below 1 |
| landed, its post-processing steps running (extraction, …) | `downloading` | just below 1 |
| a transfer attempt failed, retried later | `stalledDL` | as far as it got |
| landed and verified | `pausedUP` | 1 |
| failed for good, cancelled | `error` (the message in `q4d_error`) | as far as it got |

`pausedUP`/`pausedDL` rather than 5.0's `stoppedUP`/`stoppedDL`: every Sonarr and
Radarr release reads them (the 5.0 names only those since late 2024), and `pausedUP`
with the share limit reached is what lets them move the files and then delete the
torrent. The landed copy seeds nowhere (the seedbox does), so its ratio limit is 0."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from ..dispatch.requests import Request, RequestState
from ..models import Item, ItemState

WEBAPI_VERSION = "2.11.2"  # ≥ 2.11: `stopped`; ≥ 2.8.1: seed limits; ≥ 2.6.1: content_path
APP_VERSION = "v5.0.2"
ETA_UNKNOWN = 8640000  # qBittorrent's "infinity"
BELOW_COMPLETE = 0.999  # the most a torrent not yet landed shows

COMPLETE_STATES = frozenset({"pausedUP", "uploading", "stalledUP", "queuedUP", "forcedUP"})
DOWNLOAD_STATES = frozenset({"downloading", "metaDL", "stalledDL", "queuedDL", "pausedDL"})


@dataclass(frozen=True, slots=True)
class TorrentView:
    hash: str  # what the *arr app computed: the v1 hash, else the whole v2 one
    v1: str
    v2: str
    name: str
    size: int
    state: str
    progress: float
    eta: int
    dlspeed: int
    category: str
    tags: tuple[str, ...]
    save_path: str
    content_path: str
    added_on: int
    completion_on: int
    last_activity: int
    phase: str  # q4d's own word for where it is
    error: str | None


def view(
    key: str,
    request: Request | None,
    item: Item | None,
    *,
    category: str,
    tags: tuple[str, ...],
    root: str,
) -> TorrentView:
    """The torrent `key` from its request (None: the seedbox reported it on its own)
    and the queue item bringing it home (None: not there yet, or pruned from history).
    `root`: where its category lands, for a torrent with no item yet."""
    assert request is not None or item is not None
    name = (request.name if request else None) or (item.name if item else None) or key
    size = (item.size if item else None) or (request.size if request else None) or 0
    state, progress, eta, rate, phase, error = _where(request, item, size)
    local = (item.local_path if item else None) or (request.local_path if request else None)
    # content_path differs from save_path: the torrent's own file or folder inside it
    save_path, content_path = (
        (posixpath.dirname(local), local) if local else (root, posixpath.join(root, name))
    )
    if request is not None:
        v1, v2 = request.v1 or "", request.v2 or ""
        added, updated = request.created_at, request.updated_at
    else:
        assert item is not None
        v1, v2 = (key, "") if len(key) == 40 else ("", key)
        added, updated = item.received_at, item.updated_at
    if item is not None:
        updated = max(updated, item.updated_at)
    landed = state == "pausedUP"
    finished = (item.finished_at if item else None) or (updated if landed else None)
    return TorrentView(
        hash=key,
        v1=v1,
        v2=v2,
        name=name,
        size=size,
        state=state,
        progress=progress,
        eta=eta,
        dlspeed=rate,
        category=category,
        tags=tags,
        save_path=save_path,
        content_path=content_path,
        added_on=int(added),
        completion_on=int(finished) if landed and finished else -1,
        last_activity=int(updated),
        phase=phase,
        error=error,
    )


def _where(
    request: Request | None, item: Item | None, size: int
) -> tuple[str, float, int, int, str, str | None]:
    """state, progress, eta, download rate, phase and error message."""
    if item is not None:
        home = min(1.0, item.bytes_done / size) if size else 0.0
        partway = min(BELOW_COMPLETE, 0.5 + home / 2)
        match item.state:
            case ItemState.DONE:
                return "pausedUP", 1.0, 0, 0, "landed", None
            case ItemState.FAILED | ItemState.CANCELLED:
                why = item.last_error or f"the transfer home was {item.state.value}"
                return "error", partway, ETA_UNKNOWN, 0, item.state.value, why
            case ItemState.QUEUED:
                state = "pausedDL" if item.paused else "queuedDL"
                return state, partway, ETA_UNKNOWN, 0, "queued", None
            case ItemState.WAITING:
                return "stalledDL", partway, ETA_UNKNOWN, 0, "waiting", item.last_error
        eta = ETA_UNKNOWN if item.eta is None else min(ETA_UNKNOWN, round(item.eta))
        return "downloading", partway, eta, round(item.rate), item.state.value, None
    assert request is not None
    seedbox = min(1.0, request.progress / 100)
    match request.state:
        case RequestState.LANDED:  # its item was pruned from the history since
            return "pausedUP", 1.0, 0, 0, "landed", None
        case RequestState.FAILED:
            why = request.error_message or "failed"
            return "error", seedbox / 2, ETA_UNKNOWN, 0, "failed", why
        case RequestState.REQUESTED:
            return "queuedDL", 0.0, ETA_UNKNOWN, 0, "requested", None
        case RequestState.COMPLETED:
            return "queuedDL", 0.5, ETA_UNKNOWN, 0, "seedbox_done", None
    state = _on_seedbox(request.seedbox_state, paused=request.paused, sized=bool(request.size))
    eta = ETA_UNKNOWN
    if state == "downloading" and request.size and request.rate >= 1:
        # What is left on the seedbox at its rate, as qBittorrent counts it (the way
        # home comes after: its own ETA once it starts).
        left = request.size * (1 - seedbox) / request.rate
        eta = min(ETA_UNKNOWN, round(left))
    return state, seedbox / 2, eta, round(request.rate), "seedbox", None


def _on_seedbox(word: str | None, *, paused: bool, sized: bool) -> str:
    """The seedbox client's state at its last poll in qBittorrent's words (its own
    names, Transmission's, Deluge's, rTorrent's: clients/*). Until a poll told it,
    what q4d asked for: stopped or started."""
    word = (word or "").lower()
    if "stalled" in word or word in ("error", "missingfiles"):
        return "stalledDL"  # no peers, or its client's own trouble: a Warning the apps show
    if "queued" in word or "check" in word or word.endswith("_wait"):
        return "queuedDL"  # its client's queue (or it checks the pieces it has)
    if word.startswith(("paused", "stopped")) or (not word and paused):
        return "pausedDL"
    if "meta" in word or not sized:
        return "metaDL"  # a magnet whose metadata the seedbox is still fetching
    return "downloading"  # as the apps read any state they do not know


def info(t: TorrentView) -> dict[str, Any]:
    """One entry of `torrents/info` (the fields of qBittorrent's serialize_torrent)."""
    done = int(t.size * t.progress)
    return {
        "hash": t.hash,
        "infohash_v1": t.v1,
        "infohash_v2": t.v2,
        "name": t.name,
        "magnet_uri": "",
        "size": t.size,
        "total_size": t.size,
        "progress": t.progress,
        "dlspeed": t.dlspeed,
        "upspeed": 0,
        "priority": 0,
        "num_seeds": 0,
        "num_complete": 0,
        "num_leechs": 0,
        "num_incomplete": 0,
        "ratio": 0,
        "ratio_limit": 0,
        "max_ratio": 0,
        "seeding_time_limit": -2,
        "max_seeding_time": -1,
        "inactive_seeding_time_limit": -2,
        "max_inactive_seeding_time": -1,
        "popularity": 0,
        "eta": t.eta,
        "state": t.state,
        "seq_dl": False,
        "f_l_piece_prio": False,
        "category": t.category,
        "tags": ", ".join(t.tags),
        "super_seeding": False,
        "force_start": False,
        "save_path": t.save_path,
        "download_path": "",
        "content_path": t.content_path,
        "root_path": t.content_path,
        "added_on": t.added_on,
        "completion_on": t.completion_on,
        "tracker": "",
        "trackers_count": 0,
        "dl_limit": -1,
        "up_limit": -1,
        "downloaded": done,
        "uploaded": 0,
        "downloaded_session": 0,
        "uploaded_session": 0,
        "amount_left": t.size - done,
        "completed": done,
        "auto_tmm": False,
        "time_active": max(0, t.last_activity - t.added_on),
        "seeding_time": 0,
        "availability": -1,
        "last_activity": t.last_activity,
        "seen_complete": t.completion_on,
        "has_metadata": t.size > 0,
        "private": False,
        "reannounce": 0,
        "comment": "",
        "q4d_phase": t.phase,
        "q4d_error": t.error,
    }


def properties(t: TorrentView) -> dict[str, Any]:
    """`torrents/properties` (Sonarr reads save_path and seeding_time)."""
    done = int(t.size * t.progress)
    return {
        "hash": t.hash,
        "infohash_v1": t.v1,
        "infohash_v2": t.v2,
        "name": t.name,
        "save_path": t.save_path,
        "download_path": "",
        "creation_date": -1,
        "piece_size": -1,
        "comment": "",
        "total_wasted": 0,
        "total_uploaded": 0,
        "total_uploaded_session": 0,
        "total_downloaded": done,
        "total_downloaded_session": 0,
        "up_limit": -1,
        "dl_limit": -1,
        "time_elapsed": max(0, t.last_activity - t.added_on),
        "seeding_time": 0,
        "nb_connections": 0,
        "nb_connections_limit": -1,
        "share_ratio": 0,
        "addition_date": t.added_on,
        "completion_date": t.completion_on,
        "created_by": "",
        "dl_speed_avg": 0,
        "dl_speed": t.dlspeed,
        "eta": t.eta,
        "last_seen": t.completion_on,
        "peers": 0,
        "peers_total": 0,
        "pieces_have": -1,
        "pieces_num": -1,
        "reannounce": 0,
        "seeds": 0,
        "seeds_total": 0,
        "total_size": t.size,
        "up_speed_avg": 0,
        "up_speed": 0,
        "isPrivate": False,
        "has_metadata": t.size > 0,
        "progress": t.progress,
    }


def sort_rows(rows: list[dict[str, Any]], key: str, *, reverse: bool) -> list[dict[str, Any]]:
    """torrents/info's `sort`: by one field of the rows, those without a value (only
    q4d_error has none) after the rest; an unknown field leaves the order as it is."""
    if not rows or key not in rows[0]:
        return rows
    return sorted(rows, key=lambda row: (row[key] is None, row[key]), reverse=reverse)


def matches_filter(t: TorrentView, wanted: str) -> bool:
    """torrents/info's `filter`, with 5.0's names and the older ones; an unknown one
    lists every torrent, as qBittorrent does."""
    match wanted:
        case "downloading":
            return t.state in DOWNLOAD_STATES
        case "seeding":
            return t.state in COMPLETE_STATES - {"pausedUP"}
        case "completed":
            return t.state in COMPLETE_STATES
        case "paused" | "stopped":
            return t.state in ("pausedDL", "pausedUP")
        case "resumed" | "running":
            return t.state not in ("pausedDL", "pausedUP")
        case "active":
            return t.dlspeed > 0
        case "inactive":
            return t.dlspeed == 0
        case "stalled" | "stalled_downloading":
            return t.state == "stalledDL"
        case "errored":
            return t.state == "error"
        case "stalled_uploading" | "checking" | "moving":
            return False
    return True
