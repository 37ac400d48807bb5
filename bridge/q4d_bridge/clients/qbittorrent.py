"""qBittorrent WebUI API v2 through aioqbt: torrents, stats, .torrent export and tags,
with the session renewed when it expires."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime

import aiohttp
from aioqbt import exc
from aioqbt.api.types import InfoFilter, TorrentInfo
from aioqbt.client import APIClient, create_client

from ..config.model import ClientConfig
from .base import ClientError, ClientStats, Torrent

_LOGGER = logging.getLogger(__name__)
REQUEST_TIMEOUT = 30.0
DOWNLOADING_STATES = frozenset({"downloading", "forcedDL", "metaDL", "forcedMetaDL"})


class QbittorrentClient:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._http: aiohttp.ClientSession | None = None
        self._api: APIClient | None = None

    async def _client(self) -> APIClient:
        if self._api is None:
            if self._http is None:
                self._http = aiohttp.ClientSession(
                    # qBittorrent is often addressed by IP; the default jar drops
                    # cookies from IP hosts, and with them the session.
                    cookie_jar=aiohttp.CookieJar(unsafe=True),
                    timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                )
            context: ssl.SSLContext | None = None
            if not self.config.verify_tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            login = self.config.username is not None and self.config.password is not None
            self._api = await create_client(
                self.config.url.rstrip("/") + "/api/v2/",
                self.config.username if login else None,
                self.config.password if login else None,
                http=self._http,
                ssl=context,
            )
        return self._api

    async def _call[T](self, what: str, request: Callable[[APIClient], Awaitable[T]]) -> T:
        for attempt in (1, 2):
            try:
                return await request(await self._client())
            except exc.ForbiddenError as err:
                await self._drop_session()  # the session expired: log in again, once
                if attempt == 2:
                    raise ClientError(f"qBittorrent refused {what}: {err}") from err
            except exc.LoginError as err:
                await self._drop_session()
                raise ClientError("qBittorrent login failed (check username/password)") from err
            except exc.NotFoundError as err:
                raise ClientError(f"qBittorrent: {what}: not found") from err
            except (exc.AQError, aiohttp.ClientError, TimeoutError, OSError) as err:
                await self._drop_session()
                raise ClientError(f"qBittorrent unreachable: {type(err).__name__}: {err}") from err
        raise AssertionError("unreachable")

    async def completed_torrents(self) -> list[Torrent]:
        infos = await self._call(
            "torrent list", lambda api: api.torrents.info(filter=InfoFilter.COMPLETED)
        )
        return [_torrent(info) for info in infos]

    async def stats(self) -> ClientStats:
        data = await self._call("sync data", lambda api: api.sync.maindata())
        server = data.server_state
        torrents = data.torrents.values()
        return ClientStats(
            free_space=server.get("free_space_on_disk"),
            active_downloads=sum(
                1 for t in torrents if str(getattr(t, "state", "")) in DOWNLOADING_STATES
            ),
            download_rate=server.get("dl_info_speed", 0),
            upload_rate=server.get("up_info_speed", 0),
            torrents=len(data.torrents),
        )

    async def export_torrent(self, info_hash: str) -> bytes:
        """The torrent's .torrent file as the client holds it."""
        return await self._call(f"torrent {info_hash}", lambda api: api.torrents.export(info_hash))

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None:
        await self._call("add tags", lambda api: api.torrents.add_tags(hashes, tags))

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None:
        await self._call("remove tags", lambda api: api.torrents.remove_tags(hashes, tags))

    async def _drop_session(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            # close() logs out first; an unreachable client cannot be logged out of.
            with contextlib.suppress(exc.AQError, aiohttp.ClientError, TimeoutError, OSError):
                await api.close()

    async def close(self) -> None:
        await self._drop_session()
        if self._http is not None:
            await self._http.close()
            self._http = None


def _torrent(info: TorrentInfo) -> Torrent:
    completed = getattr(info, "completion_on", None)
    return Torrent(
        hash=info.hash,
        name=info.name,
        state=str(info.state),
        progress=info.progress,
        category=info.category or None,
        tags=tuple(t.strip() for t in info.tags if t.strip()),
        content_path=info.content_path,
        size=info.size,
        completed_at=completed.timestamp()
        if isinstance(completed, datetime) and completed.timestamp() > 0
        else None,
        tracker=info.tracker or None,
    )
