"""qBittorrent WebUI API v2 through aioqbt: torrents, stats, .torrent export, tags, and
adding and steering torrents, with the session renewed when it expires.

Failures come out as ClientErrors of a kind (clients/base.py); transient ones are
retried through `with_retries` where the call is idempotent: reads, tags, pause and
resume, categories, and an add whose info-hash is known (it is looked for before it
is sent again). A removal is sent once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
from aioqbt import exc
from aioqbt.api.torrents import AddFormBuilder
from aioqbt.api.types import InfoFilter, TorrentInfo
from aioqbt.client import APIClient
from aioqbt.version import APIVersion, ClientVersion
from yarl import URL

from ..config.model import ClientConfig
from .base import (
    ClientError,
    ClientErrorKind,
    ClientStats,
    ManagedTorrentClient,
    NewTorrent,
    Torrent,
)
from .metainfo import MetainfoError, parse_new_torrent
from .retry import with_retries

_LOGGER = logging.getLogger(__name__)
REQUEST_TIMEOUT = 30.0
LOGOUT_TIMEOUT = 5.0  # on close: a client that does not answer is not waited for
DOWNLOADING_STATES = frozenset({"downloading", "forcedDL", "metaDL", "forcedMetaDL"})
# How long an add that qBittorrent turned down is given to show up as already there
# (a torrent being loaded is not listed yet, but a second add of it fails).
ADDED_WAIT = (0.2, 0.3, 0.5, 1.0)
_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

Kind = ClientErrorKind


class _APIClient(APIClient):
    """aioqbt's client without its own retries (up to three attempts 5 s apart for a
    GET that met 429, 502, 503 or a dropped connection): `with_retries` is the one
    retry policy, and it sees every failure."""

    def _retry_strategy(
        self, retry_pause: float, ex: BaseException, resp: aiohttp.ClientResponse | None
    ) -> tuple[bool, float]:
        return False, 0


class QbittorrentClient:
    def __init__(
        self,
        config: ClientConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,  # between retries
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._http: aiohttp.ClientSession | None = None
        self._api: APIClient | None = None
        self._connecting = asyncio.Lock()
        url = URL(config.url)
        self._where = f"{url.host}:{url.port}"  # for messages: no credentials, no path

    # --- session ---------------------------------------------------------------------

    async def _client(self) -> APIClient:
        async with self._connecting:
            if self._api is None:
                self._api = await self._connect()
            return self._api

    async def _connect(self) -> APIClient:
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
        api = _APIClient(
            self.config.url.rstrip("/") + "/api/v2/",
            http=self._http,
            ssl=context,
            logout_when_close=False,  # close() logs out itself, with a short timeout
            logger=logging.getLogger("aioqbt.client.APIClient"),
        )
        if self.config.username is not None and self.config.password is not None:
            try:
                await api.auth.login(self.config.username, self.config.password)
            except exc.LoginError as err:
                raise self._login_error(err) from err
        # Which endpoints and fields to use (qBittorrent 5 renamed pause/resume to
        # stop/start, and `paused` to `stopped` when adding) follows the API version.
        version = await api.app.version()
        webapi = await api.app.webapi_version()
        with contextlib.suppress(ValueError):
            api.client_version = ClientVersion.parse(version.strip().removeprefix("v"))
        try:
            api.api_version = APIVersion.parse(webapi.strip())
        except ValueError as err:
            raise ClientError(
                f"qBittorrent at {self._where}: not a WebUI API version: {webapi[:40]!r}",
                Kind.REFUSED,
            ) from err
        return api

    def _login_error(self, err: exc.LoginError) -> ClientError:
        status, message = err.status, err.message.strip()
        if status >= 500 or status == 429:
            return ClientError(f"qBittorrent at {self._where} unreachable: login: HTTP {status}")
        if status in (200, 401):  # "Fails." before qBittorrent 5.2, 401 since
            return ClientError("qBittorrent login failed (check username/password)", Kind.AUTH)
        if status == 403:  # this address is banned after too many failed logins
            reason = message or "HTTP 403 (banned after failed logins?)"
            return ClientError(f"qBittorrent login refused: {reason}", Kind.AUTH)
        return ClientError(
            f"qBittorrent login: HTTP {status} (is {self._where} a qBittorrent WebUI?)",
            Kind.REFUSED,
        )

    def _forget(self, api: APIClient) -> None:
        """Log in again on the next request (the session expired, or was refused)."""
        if self._api is api:
            self._api = None

    async def close(self) -> None:
        api, self._api = self._api, None
        if api is not None and self.config.username is not None:
            # An unreachable client cannot be logged out of; nor need it be.
            with contextlib.suppress(exc.AQError, aiohttp.ClientError, TimeoutError, OSError):
                await api.request_text(
                    "POST", "auth/logout", timeout=aiohttp.ClientTimeout(total=LOGOUT_TIMEOUT)
                )
        if api is not None:
            await api.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- one request, classified ------------------------------------------------------

    async def _call[T](self, what: str, request: Callable[[APIClient], Awaitable[T]]) -> T:
        """One request, on a session logged in again once if qBittorrent refuses it
        (403: the session expired, or qBittorrent restarted); failures as ClientErrors."""
        for attempt in (1, 2):
            api = None
            try:
                api = await self._client()
                return await request(api)
            except exc.ForbiddenError as err:
                if api is not None:  # else refused while connecting: nothing kept
                    self._forget(api)
                if attempt == 2:
                    raise ClientError(
                        f"qBittorrent refused {what} on a fresh session: HTTP 403 "
                        "(check username/password, and the WebUI's IP restrictions)",
                        Kind.AUTH,
                    ) from err
            except ClientError:
                raise
            except (exc.AQError, aiohttp.ClientError, TimeoutError, OSError) as err:
                raise self._classified(what, err) from err
        raise AssertionError("unreachable")

    def _classified(self, what: str, err: BaseException) -> ClientError:
        if isinstance(err, exc.LoginError):
            return self._login_error(err)
        if isinstance(err, exc.NotFoundError):
            return ClientError(f"qBittorrent: {what}: not found", Kind.NOT_FOUND)
        if isinstance(err, exc.APIError):
            if err.status >= 500 or err.status == 429:
                return ClientError(
                    f"qBittorrent at {self._where} unreachable: {what}: HTTP {err.status}"
                )
            reason = err.message.strip() or "no reason given"
            return ClientError(
                f"qBittorrent refused {what}: HTTP {err.status}: {reason}", Kind.REFUSED
            )
        if isinstance(err, exc.AQError):  # an answer aioqbt could not map, a version check
            return ClientError(f"qBittorrent: {what}: {err}", Kind.REFUSED)
        detail = str(err) or ("timed out" if isinstance(err, TimeoutError) else "no detail")
        return ClientError(
            f"qBittorrent at {self._where} unreachable: {type(err).__name__}: {detail}"
        )

    async def _retried[T](self, what: str, request: Callable[[APIClient], Awaitable[T]]) -> T:
        """An idempotent request, retried while qBittorrent is unreachable."""

        async def call() -> T:
            return await self._call(what, request)

        return await with_retries(call, what=f"qBittorrent {what}", sleep=self._sleep)

    # --- reads ------------------------------------------------------------------------

    async def version(self) -> str:
        """qBittorrent's version, e.g. "4.5.2" (without the "v" it answers with)."""
        text = await self._retried("version", lambda api: api.app.version())
        return text.strip().removeprefix("v")

    async def torrents(self) -> list[Torrent]:
        infos = await self._retried("torrent list", lambda api: api.torrents.info())
        return [_torrent(info) for info in infos]

    async def completed_torrents(self) -> list[Torrent]:
        infos = await self._retried(
            "torrent list", lambda api: api.torrents.info(filter=InfoFilter.COMPLETED)
        )
        return [_torrent(info) for info in infos]

    async def stats(self) -> ClientStats:
        # Not retried: the monitor polls every seedbox in turn, and its next poll is the
        # retry; backing off here would hold up the other seedboxes' figures.
        data = await self._call("sync data", lambda api: api.sync.maindata())
        server = data.server_state
        torrents = data.torrents.values()
        return ClientStats(
            # 0 until qBittorrent first measured its disk, seconds after it started: not
            # known yet (dispatch would otherwise take a full disk for it)
            free_space=server.get("free_space_on_disk") or None,
            active_downloads=sum(
                1 for t in torrents if str(getattr(t, "state", "")) in DOWNLOADING_STATES
            ),
            download_rate=server.get("dl_info_speed", 0),
            upload_rate=server.get("up_info_speed", 0),
            torrents=len(data.torrents),
        )

    async def export_torrent(self, info_hash: str) -> bytes:
        """The torrent's .torrent file as the client holds it."""
        (wanted,) = _hashes([info_hash])
        return await self._retried(f"torrent {wanted}", lambda api: api.torrents.export(wanted))

    # --- tags (sets: adding or removing twice is the same) -----------------------------

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None:
        if wanted := _hashes(hashes):
            await self._retried("add tags", lambda api: api.torrents.add_tags(wanted, tags))

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None:
        if wanted := _hashes(hashes):
            await self._retried("remove tags", lambda api: api.torrents.remove_tags(wanted, tags))

    # --- adding -----------------------------------------------------------------------

    async def add(self, torrent: NewTorrent) -> None:
        """Add a magnet link or a .torrent file. A torrent already there counts as added
        (its category, save path and paused state are left as they are). Retried while
        qBittorrent is unreachable only when the info-hash is known, so that a retry
        after an add that did arrive finds the torrent instead of adding it again."""
        if (torrent.magnet is None) == (torrent.torrent_file is None):
            raise ClientError(
                "a torrent to add needs exactly one of a magnet link or a .torrent file",
                Kind.REFUSED,
            )
        info_hash = torrent_id(torrent)
        sent = 0

        async def attempt(api: APIClient) -> None:
            nonlocal sent
            if sent and info_hash is not None and await _present(api, [info_hash]):
                return  # the earlier attempt arrived after all
            sent += 1
            try:
                await api.torrents.add(_add_form(api, torrent))
            except exc.AddTorrentError as err:
                # torrents/add reads its own response: statuses come back as this error.
                if err.status == 403:
                    raise exc.ForbiddenError(err.message, err.status, err.resp) from err
                if err.status >= 500 or err.status == 429:
                    raise exc.APIError(err.message, err.status, err.resp) from err
                # "Fails." (before 5.2) or 409: nothing new was added; a duplicate?
                if info_hash is not None and err.status in (200, 409):
                    for pause in ADDED_WAIT:
                        if await _present(api, [info_hash]):
                            return
                        await asyncio.sleep(pause)
                what = "the torrent" if info_hash is None else f"torrent {info_hash}"
                reason = err.message.strip()
                if reason in ("", "Fails."):
                    reason = (
                        "not a valid .torrent file"
                        if err.status == 415
                        else "nothing was added (not a valid torrent or magnet link?)"
                    )
                raise ClientError(
                    f"qBittorrent refused {what}: HTTP {err.status}: {reason}", Kind.REFUSED
                ) from err

        if info_hash is None:  # nothing to look for before sending it again: once
            await self._call("add", attempt)
        else:
            await self._retried(f"add {info_hash}", attempt)

    # --- steering ---------------------------------------------------------------------

    async def pause(self, hashes: list[str]) -> None:
        # aioqbt's stop() is torrents/stop on qBittorrent 5 (API 2.11), torrents/pause before.
        await self._steer("pause", hashes, lambda api, found: api.torrents.stop(found))

    async def resume(self, hashes: list[str]) -> None:
        # start(): torrents/start on qBittorrent 5, torrents/resume before.
        await self._steer("resume", hashes, lambda api, found: api.torrents.start(found))

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None:
        """Remove the torrents, and their data if `delete_data`. Sent once, not retried."""
        await self._steer(
            "remove",
            hashes,
            lambda api, found: api.torrents.delete(found, delete_files=delete_data),
            retry=False,
        )

    async def set_category(self, hashes: list[str], category: str | None) -> None:
        """Set the torrents' category (None: no category); one qBittorrent does not know
        yet is created first, with the default save path."""
        name = category or ""

        async def apply(api: APIClient, found: list[str]) -> None:
            if name and name not in await api.torrents.categories():
                # A conflict: created meanwhile, or a name qBittorrent will not take
                # (then set_category below says so).
                with contextlib.suppress(exc.ConflictError):
                    await api.torrents.create_category(name, "")
            await api.torrents.set_category(found, name)

        await self._steer("set category", hashes, apply)

    async def _steer(
        self,
        what: str,
        hashes: list[str],
        action: Callable[[APIClient, list[str]], Awaitable[None]],
        *,
        retry: bool = True,
    ) -> None:
        """`action` on the torrents qBittorrent has among `hashes` (it ignores unknown
        hashes silently); then NOT_FOUND naming those it does not have."""
        wanted = _hashes(hashes)
        if not wanted:
            return

        async def request(api: APIClient) -> None:
            found = await _present(api, wanted)
            if found:
                await action(api, found)
            if missing := [h for h in wanted if h not in found]:
                done = f" ({what} done for the other {len(found)})" if found else ""
                raise ClientError(
                    f"qBittorrent: {what}: no torrent {', '.join(missing)}{done}", Kind.NOT_FOUND
                )

        if retry:
            await self._retried(what, request)
        else:
            await self._call(what, request)


def torrent_id(torrent: NewTorrent) -> str | None:
    """The hash qBittorrent will list a new torrent under: one with a v2 info-hash (v2
    only, or hybrid) under that hash cut to 40 digits, else under its v1 hash. None if it
    cannot be read here (qBittorrent may still take it, or say why not)."""
    try:
        meta = parse_new_torrent(torrent)
    except MetainfoError:
        return None
    return meta.v2[:40] if meta.v2 else meta.v1


async def _present(api: APIClient, hashes: list[str]) -> list[str]:
    """Those of `hashes` qBittorrent has, in their order."""
    have = {info.hash.lower() for info in await api.torrents.info(hashes=hashes)}
    return [h for h in hashes if h in have]


def _hashes(hashes: Iterable[str]) -> list[str]:
    """Lower-case info-hashes, each once. Anything else is refused here: aioqbt would
    send it on, and qBittorrent reads a lone "all" as every torrent."""
    wanted: list[str] = []
    for value in hashes:
        info_hash = value.strip().lower() if isinstance(value, str) else ""
        if not _HASH.fullmatch(info_hash):
            raise ClientError(f"not an info-hash: {value!r}", Kind.REFUSED)
        if info_hash not in wanted:
            wanted.append(info_hash)
    return wanted


def _add_form(api: APIClient, torrent: NewTorrent) -> aiohttp.FormData:
    """A fresh form per request (aiohttp sends a FormData once)."""
    builder = AddFormBuilder.with_client(api)
    if torrent.magnet is not None:
        builder = builder.include_url(torrent.magnet)
    if torrent.torrent_file is not None:
        builder = builder.include_file(torrent.torrent_file, "q4d.torrent")
    if torrent.category:
        builder = builder.category(torrent.category)  # qBittorrent creates a new one
    if torrent.save_path:
        # With automatic management, the category's path would win over the one asked for.
        builder = builder.savepath(torrent.save_path).auto_tmm(False)
    # Both ways, explicitly: qBittorrent may be set to add torrents paused. stopped()
    # sends `stopped` to qBittorrent 5 and `paused` to 4.x.
    return builder.stopped(torrent.paused).build()


def _torrent(info: TorrentInfo) -> Torrent:
    completed = getattr(info, "completion_on", None)
    seeding = getattr(info, "seeding_time", None)  # qBittorrent 4.1.7 (API 2.2) and newer
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
        aliases=tuple(
            h for h in (getattr(info, "infohash_v1", ""), getattr(info, "infohash_v2", "")) if h
        ),
        ratio=info.ratio,
        seeding_time=seeding.total_seconds() if isinstance(seeding, timedelta) else None,
    )


if TYPE_CHECKING:  # mypy holds the adapter to the whole interface

    def _conforms(client: QbittorrentClient) -> ManagedTorrentClient:
        return client
