"""qBittorrent WebUI API v2 (through aioqbt): .torrent export, with session renewal."""

from __future__ import annotations

import logging
import ssl

import aiohttp
from aioqbt import exc
from aioqbt.client import APIClient, create_client

from ..config import ClientConfig

_LOGGER = logging.getLogger(__name__)
REQUEST_TIMEOUT = 30.0


class NodeError(Exception):
    """The torrent client could not be reached or refused the request."""


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
            username, password = self.config.username, self.config.password
            self._api = await create_client(
                self.config.url.rstrip("/") + "/api/v2/",
                username if username is not None and password is not None else None,
                password if username is not None and password is not None else None,
                http=self._http,
                ssl=context,
            )
        return self._api

    async def export_torrent(self, info_hash: str) -> bytes:
        """The torrent's .torrent file as the client holds it."""
        for attempt in (1, 2):
            try:
                api = await self._client()
                return await api.torrents.export(info_hash)
            except exc.ForbiddenError as err:
                await self._drop_session()  # the session expired: log in again, once
                if attempt == 2:
                    raise NodeError(f"qBittorrent refused the request: {err}") from err
            except exc.LoginError as err:
                await self._drop_session()
                raise NodeError("qBittorrent login failed (check username/password)") from err
            except exc.NotFoundError as err:
                raise NodeError(f"qBittorrent does not know torrent {info_hash}") from err
            except (exc.AQError, aiohttp.ClientError, TimeoutError, OSError) as err:
                await self._drop_session()
                raise NodeError(f"qBittorrent unreachable: {type(err).__name__}: {err}") from err
        raise AssertionError("unreachable")

    async def _drop_session(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    async def close(self) -> None:
        await self._drop_session()
        if self._http is not None:
            await self._http.close()
            self._http = None
