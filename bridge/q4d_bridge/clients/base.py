"""What the bridge asks of a seedbox's torrent client, whatever the client is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ClientError(Exception):
    """The torrent client could not be reached or refused the request."""


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


class TorrentClient(Protocol):
    async def completed_torrents(self) -> list[Torrent]: ...

    async def stats(self) -> ClientStats: ...

    async def export_torrent(self, info_hash: str) -> bytes: ...

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None: ...

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None: ...

    async def close(self) -> None: ...
