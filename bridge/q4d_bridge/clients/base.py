"""What the bridge asks of a seedbox's torrent client, whatever the client is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ClientErrorKind(StrEnum):
    """Why a request to a torrent client failed; only `UNREACHABLE` is worth retrying."""

    AUTH = "auth"  # wrong credentials, or a session the client will not renew
    UNREACHABLE = "unreachable"  # connection refused or reset, timeout, 5xx
    REFUSED = "refused"  # the client understood and said no (bad torrent, bad argument)
    NOT_FOUND = "not_found"  # no such torrent


class ClientError(Exception):
    """The torrent client could not be reached or refused the request."""

    def __init__(self, message: str, kind: ClientErrorKind = ClientErrorKind.UNREACHABLE) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def transient(self) -> bool:
        return self.kind is ClientErrorKind.UNREACHABLE


@dataclass(frozen=True, slots=True)
class Torrent:
    hash: str
    name: str
    state: str
    progress: float  # 0.0 .. 1.0
    category: str | None
    tags: tuple[str, ...]
    content_path: str  # the payload as the client sees it: a file or the torrent's folder
    size: int
    completed_at: float | None
    tracker: str | None
    # every hash the client also knows it by (qBittorrent: a hybrid's v1 and full v2)
    aliases: tuple[str, ...] = ()
    # For the seedbox clean-up's goals; None where the client does not keep them.
    ratio: float | None = None  # uploaded / downloaded
    seeding_time: float | None = None  # seconds spent seeding

    @property
    def complete(self) -> bool:
        return self.progress >= 1.0


@dataclass(frozen=True, slots=True)
class ClientStats:
    free_space: int | None  # bytes free where the client downloads
    active_downloads: int
    download_rate: int  # bytes per second
    upload_rate: int
    torrents: int


@dataclass(frozen=True, slots=True)
class NewTorrent:
    """A torrent to add: exactly one of a magnet link or the .torrent file's bytes."""

    magnet: str | None = None
    torrent_file: bytes | None = None
    category: str | None = None  # qBittorrent's category, Deluge's and rTorrent's label, ...
    save_path: str | None = None  # None: the client's default
    paused: bool = False


class TorrentClient(Protocol):
    """What reconciliation, node stats and labels need."""

    async def completed_torrents(self) -> list[Torrent]: ...

    async def stats(self) -> ClientStats: ...

    async def export_torrent(self, info_hash: str) -> bytes: ...

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None: ...

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class ManagedTorrentClient(TorrentClient, Protocol):
    """A client the bridge also adds torrents to and steers (dispatch)."""

    async def version(self) -> str: ...

    async def torrents(self) -> list[Torrent]: ...

    async def add(self, torrent: NewTorrent) -> None: ...

    async def pause(self, hashes: list[str]) -> None: ...

    async def resume(self, hashes: list[str]) -> None: ...

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None: ...

    async def set_category(self, hashes: list[str], category: str | None) -> None: ...
