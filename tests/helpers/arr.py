"""Sonarr's, Radarr's and Prowlarr's qBittorrent client, replayed call for call from
their source (Sonarr 49df353f / Radarr 1b9662d5 / Prowlarr 0ffcfccf,
`Download/Clients/QBittorrent/QBittorrentProxyV2.cs`, `QBittorrent.cs` and
`NzbDrone.Common/Http/HttpRequestBuilder.cs`; reference §1.2-§1.10):

- the auth: Sonarr sends `Authorization: Bearer <key>` when it has an API key, else HTTP
  Basic when a user name or password is set; it logs in only when it has no cookies
  cached for (url, user, password) and replays only the login's cookies, never on the
  version probe. Radarr and Prowlarr always send Basic (`Og==` for nothing) and keep
  every cookie in one store sent on every request, probe and login included.
- ProcessRequest: a 403 on the first try logs in again and retries once; any other
  status ≥ 400, or any on the retry, is an error. With an API key, 401/403 is an
  authentication error at once.
- the encoding: form-urlencoded (values percent-escaped, keys raw), multipart when a
  field is a file or a value is longer than 1024 bytes (the file part first, plain
  parts without a Content-Type); booleans as .NET writes them (`True`/`False`).
- every request carries `Connection: close`, `Accept-Encoding: gzip, br` and the app's
  User-Agent, and no Accept header.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

App = Literal["sonarr", "radarr", "prowlarr"]
FormValue = str | bool | int | float
MAX_URLENCODED_VALUE = 1024


class DownloadClientError(Exception):
    """What the app's proxy throws: `kind` auth (DownloadClientAuthenticationException),
    or client (DownloadClientException), with the status when there was one."""

    def __init__(self, kind: str, status: int | None = None, body: str = "") -> None:
        super().__init__(f"{kind} error (HTTP {status}): {body[:200]}")
        self.kind = kind
        self.status = status


@dataclass
class Call:
    method: str
    path: str
    status: int
    cookie_sent: bool
    authorization: str | None


@dataclass
class Settings:
    """The app's qBittorrent form (docs/arr.md)."""

    host: str
    port: int
    username: str = ""
    password: str = ""
    api_key: str = ""  # Sonarr only
    category: str = ""
    imported_category: str = ""
    initial_state: Literal["start", "stop", "force_start"] = "start"
    priority_first: bool = False  # Recent/Older priority "First": topPrio after the add
    sequential: bool = False
    first_and_last: bool = False
    content_layout: Literal["default", "original", "subfolder"] = "default"
    # False: releases before Sonarr's 30b35764c "Fixed: Basic auth for qBittorrent",
    # which send the session cookie alone
    basic: bool = True


@dataclass
class ArrClient:
    app: App
    settings: Settings
    calls: list[Call] = field(default_factory=list)
    logins: int = 0
    _login_cookies: dict[str, str] | None = None  # the auth cookie cache
    _cookie_store: dict[str, str] = field(default_factory=dict)  # Radarr's, Prowlarr's

    @property
    def base(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def forget_cookies(self) -> None:
        self._login_cookies = None
        self._cookie_store.clear()

    # --- the proxy's calls ---------------------------------------------------------------

    async def is_api_supported(self) -> bool:
        """IsApiSupported: the version probe, without Sonarr's login cookies."""
        status, body = await self._execute("GET", "/api/v2/app/webapiVersion", probe=True)
        if status == 404:
            return False
        if status == 403:
            return True
        if status == 401:
            raise DownloadClientError("client", status, body)
        if status >= 400:
            raise DownloadClientError("client", status, body)
        return True

    async def get_api_version(self) -> tuple[int, ...]:
        text = await self._process("GET", "/api/v2/app/webapiVersion")
        return tuple(int(p) for p in text.strip().split("."))

    async def get_config(self) -> dict[str, Any]:
        return await self._json("GET", "/api/v2/app/preferences")

    async def get_torrents(self) -> list[dict[str, Any]]:
        query = {"category": self.settings.category} if self.settings.category else None
        return await self._json("GET", "/api/v2/torrents/info", query=query)

    async def is_torrent_loaded(self, info_hash: str) -> bool:
        try:
            await self._process("GET", "/api/v2/torrents/properties", query={"hash": info_hash})
        except DownloadClientError:
            return False
        return True

    async def get_torrent_properties(self, info_hash: str) -> dict[str, Any]:
        return await self._json("GET", "/api/v2/torrents/properties", query={"hash": info_hash})

    async def get_torrent_files(self, info_hash: str) -> list[dict[str, Any]]:
        return await self._json("GET", "/api/v2/torrents/files", query={"hash": info_hash})

    async def add_torrent_from_url(
        self, url: str, seed: dict[str, FormValue] | None = None
    ) -> None:
        form: list[tuple[str, FormValue]] = [("urls", url)]
        form += await self._download_parameters()
        form += list((seed or {}).items())
        if await self._process("POST", "/api/v2/torrents/add", form=form) == "Fails.":
            raise DownloadClientError("client", 200, "Download client failed to add torrent by url")

    async def add_torrent_from_file(self, filename: str, data: bytes) -> None:
        form = await self._download_parameters()
        text = await self._process(
            "POST", "/api/v2/torrents/add", form=form, upload=("torrents", filename, data)
        )
        if text == "Fails.":
            raise DownloadClientError("client", 200, "Download client failed to add torrent")

    async def remove_torrent(self, info_hash: str, remove_data: bool) -> None:
        form: list[tuple[str, FormValue]] = [("hashes", info_hash)]
        if remove_data:
            form.append(("deleteFiles", "true"))
        await self._process("POST", "/api/v2/torrents/delete", form=form)

    async def set_torrent_label(self, info_hash: str, label: str) -> None:
        form: list[tuple[str, FormValue]] = [("hashes", info_hash), ("category", label)]
        await self._process("POST", "/api/v2/torrents/setCategory", form=form)

    async def add_label(self, label: str) -> None:
        await self._process("POST", "/api/v2/torrents/createCategory", form=[("category", label)])

    async def get_labels(self) -> dict[str, dict[str, Any]]:
        return await self._json("GET", "/api/v2/torrents/categories")

    async def move_torrent_to_top_in_queue(self, info_hash: str) -> None:
        try:
            await self._process("POST", "/api/v2/torrents/topPrio", form=[("hashes", info_hash)])
        except DownloadClientError as err:
            if err.status != 409:  # queueing off: tolerated
                raise

    async def set_force_start(self, info_hash: str) -> None:
        form: list[tuple[str, FormValue]] = [("hashes", info_hash), ("value", "true")]
        await self._process("POST", "/api/v2/torrents/setForceStart", form=form)

    async def add_tags(self, info_hash: str, tags: list[str]) -> None:
        form: list[tuple[str, FormValue]] = [("hashes", info_hash), ("tags", ",".join(tags))]
        await self._process("POST", "/api/v2/torrents/addTags", form=form)

    async def _download_parameters(self) -> list[tuple[str, FormValue]]:
        """AddTorrentDownloadFormParameters."""
        s = self.settings
        form: list[tuple[str, FormValue]] = []
        if s.category:
            form.append(("category", s.category))
        if s.initial_state in ("start", "stop"):
            name = "stopped" if await self.get_api_version() >= (2, 11, 0) else "paused"
            form.append((name, s.initial_state == "stop"))
        if s.sequential:
            form.append(("sequentialDownload", True))
        if s.first_and_last:
            form.append(("firstLastPiecePrio", True))
        if s.content_layout != "default":
            form.append(("contentLayout", s.content_layout.capitalize()))
        return form

    # --- ProcessRequest and AuthenticateClient --------------------------------------------

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        return json.loads(await self._process(method, path, **kw))

    async def _process(self, method: str, path: str, **kw: Any) -> str:
        if self.app == "sonarr" and self.settings.api_key:
            status, body = await self._execute(method, path, **kw)
            if status in (401, 403):
                raise DownloadClientError("auth", status, body)
            if status >= 400:
                raise DownloadClientError("client", status, body)
            return body
        await self._authenticate()
        status, body = await self._execute(method, path, **kw)
        if status == 403:
            await self._authenticate(reauthenticate=True)
            status, body = await self._execute(method, path, **kw)
        if status >= 400:
            raise DownloadClientError("client", status, body)
        return body

    async def _authenticate(self, *, reauthenticate: bool = False) -> None:
        s = self.settings
        if not s.username.strip() or not s.password.strip():
            if reauthenticate:
                raise DownloadClientError("auth")
            return
        if self._login_cookies is not None and not reauthenticate:
            return
        self._login_cookies = None
        form: list[tuple[str, FormValue]] = [("username", s.username), ("password", s.password)]
        self.logins += 1
        status, body = await self._execute("POST", "/api/v2/auth/login", form=form, login=True)
        if status in (401, 403):
            raise DownloadClientError("auth", status, body)
        if status >= 400:
            raise DownloadClientError("client", status, body)
        if body.strip() and body != "Ok.":
            raise DownloadClientError("auth", status, body)

    # --- the HTTP layer -----------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        s = self.settings
        headers = {
            "Connection": "close",
            "Accept-Encoding": "gzip, br",
            "User-Agent": f"{self.app.capitalize()}/4.0.15.2941 (ubuntu 24.04)",
        }
        if self.app == "sonarr" and s.api_key:
            headers["Authorization"] = f"Bearer {s.api_key}"
        elif s.basic and (self.app != "sonarr" or s.username.strip() or s.password.strip()):
            token = base64.b64encode(f"{s.username}:{s.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    async def _execute(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        form: list[tuple[str, FormValue]] | None = None,
        upload: tuple[str, str, bytes] | None = None,
        probe: bool = False,
        login: bool = False,
    ) -> tuple[int, str]:
        headers = self._headers()
        cookies = self._cookies_for(probe=probe, login=login)
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        data: bytes | None = None
        if form is not None or upload is not None:
            data, headers["Content-Type"] = encode_form(form or [], upload)
        url = self.base + path
        if query:
            url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        async with (
            aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("Accept",)
            ) as session,
            session.request(method, url, data=data, headers=headers) as response,
        ):
            body = await response.text()
            received = {k: v.value for k, v in response.cookies.items()}
        if login:
            self._login_cookies = received
        if self.app != "sonarr":
            self._cookie_store.update(received)
        self.calls.append(Call(method, path, response.status, bool(cookies),
                               headers.get("Authorization")))  # fmt: skip
        return response.status, body

    def _cookies_for(self, *, probe: bool, login: bool) -> dict[str, str]:
        if self.app != "sonarr":
            return dict(self._cookie_store)
        if probe or login or self._login_cookies is None:
            return {}
        return dict(self._login_cookies)


def _text(value: FormValue) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"  # Convert.ToString(bool)
    return str(value)


def encode_form(
    form: list[tuple[str, FormValue]], upload: tuple[str, str, bytes] | None = None
) -> tuple[bytes, str]:
    """HttpRequestBuilder's body: urlencoded, or multipart for a file or a long value."""
    fields = [(k, _text(v)) for k, v in form]
    if upload is None and all(len(v) <= MAX_URLENCODED_VALUE for _, v in fields):
        body = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields)
        return body.encode(), "application/x-www-form-urlencoded"
    boundary = "----------------------------" + secrets.token_hex(12)
    parts: list[bytes] = []
    if upload is not None:
        name, filename, data = upload
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    for key, value in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# --- GetItems: how the apps read torrents/info --------------------------------------------

COMPLETED = {"pausedUP", "stoppedUP", "uploading", "stalledUP", "queuedUP", "forcedUP"}
QUEUED = {"queuedDL", "checkingDL", "checkingUP", "checkingResumeData"}
PAUSED = {"pausedDL", "stoppedDL"}
WARNING = {"error", "stalledDL", "missingFiles"}


@dataclass
class DownloadItem:
    download_id: str  # hash.ToUpper()
    title: str
    category: str
    status: str  # Completed, Queued, Paused, Downloading, Warning
    total_size: int
    remaining_size: int
    output_path: str | None
    can_move_files: bool
    message: str | None = None


def download_items(
    version: tuple[int, ...], config: dict[str, Any], torrents: list[dict[str, Any]]
) -> dict[str, DownloadItem]:
    """QBittorrent.GetItems at Sonarr 49df353f, by DownloadId."""
    found = {}
    for t in torrents:
        state = t["state"]
        message = None
        if state in COMPLETED:
            status = "Completed"
        elif state in QUEUED or (state in ("metaDL", "forcedMetaDL") and config["dht"]):
            status = "Queued"
        elif state in PAUSED:
            status = "Paused"
        elif state in WARNING or state in ("metaDL", "forcedMetaDL"):
            status, message = "Warning", state
        else:
            status = "Downloading"
        output = None
        if version >= (2, 6, 1):
            if t["content_path"] != t["save_path"]:
                output = t["content_path"]
            elif status == "Completed":
                status, message = (
                    "Warning",
                    "Unable to Import. Path matches client base download directory",
                )
        found[t["hash"].upper()] = DownloadItem(
            download_id=t["hash"].upper(),
            title=t["name"],
            category=t["category"] or t.get("label", ""),
            status=status,
            total_size=t["size"],
            remaining_size=int(t["size"] * (1.0 - t["progress"])),
            output_path=output,
            can_move_files=state in ("pausedUP", "stoppedUP") and _seed_limit_reached(t, config),
            message=message,
        )
    return found


def _seed_limit_reached(t: dict[str, Any], config: dict[str, Any]) -> bool:
    """HasReachedSeedLimit, without the seeding-time fetch (no time limit is set)."""
    if t["ratio_limit"] >= 0:
        return bool(t["ratio"] >= t["ratio_limit"])
    if t["ratio_limit"] == -2 and config["max_ratio_enabled"]:
        return bool(t["ratio"] >= config["max_ratio"])
    return False


# --- the app's flows (QBittorrent.cs, TorrentClientBase.cs) -------------------------------


async def press_test(arr: ArrClient) -> list[str]:
    """The Test button: the validation failures it shows (none: the client is saved)."""
    s = arr.settings
    failures: list[str] = []
    # TestConnection: GetProxy(force) probes, then the version, twice
    await arr.is_api_supported()
    await arr.get_api_version()
    version = await arr.get_api_version()
    if version < (1, 5):
        return ["Unsupported client version"]
    if not s.category:
        failures.append("Category is recommended")
    config = await arr.get_config()
    limited = config["max_ratio_enabled"] or (
        config["max_seeding_time_enabled"] and config["max_seeding_time"] < 20160
    )
    if limited and config["max_ratio_act"] in (1, 3):
        return [*failures, "qBittorrent is configured to remove torrents"]
    # TestCategory
    if s.category or s.imported_category:
        await arr.is_api_supported()
        await arr.get_api_version()
        labels = await arr.get_labels()
        for wanted in (s.category, s.imported_category):
            if wanted and wanted not in labels:
                await arr.add_label(wanted)
                labels = await arr.get_labels()
                if wanted not in labels:
                    failures.append(f"Configuration of label failed: {wanted}")
    # TestPrioritySupport
    if s.priority_first and not (await arr.get_config())["queueing_enabled"]:
        failures.append("Queueing not enabled")
    # TestGetTorrents
    await arr.get_torrents()
    return failures


async def _after_add(arr: ArrClient, info_hash: str, tags: list[str]) -> bool:
    """The post-add steps; True when WaitForTorrent found the torrent at its first try."""
    force = arr.settings.initial_state == "force_start"
    tagged = arr.app == "sonarr" and bool(tags)
    if not (arr.settings.priority_first or force or tagged):
        return True
    lc = info_hash.lower()
    at_once = loaded = await arr.is_torrent_loaded(lc)
    for _ in range(9):  # WaitForTorrent: 10 tries, 100 ms apart
        if loaded:
            break
        await asyncio.sleep(0.1)
        loaded = await arr.is_torrent_loaded(lc)
    if not loaded:
        return False
    if arr.settings.priority_first:
        await arr.move_torrent_to_top_in_queue(lc)
    if force:
        await arr.set_force_start(lc)
    if tagged:
        await arr.add_tags(lc, tags)
    return at_once


async def grab_magnet(
    arr: ArrClient,
    magnet: str,
    info_hash: str,
    tags: list[str] = [],  # noqa: B006
    seed: dict[str, FormValue] | None = None,
) -> bool:
    """AddFromMagnetLink: the preferences (DHT), the add (with the indexer's seed limits
    on API ≥ 2.8.1), the post-add steps."""
    if not (await arr.get_config())["dht"] and "&tr=" not in magnet:
        raise DownloadClientError("client", None, "Magnet Links without trackers not supported")
    await arr.add_torrent_from_url(magnet, seed)
    return await _after_add(arr, info_hash, tags)


async def grab_torrent_file(
    arr: ArrClient,
    filename: str,
    data: bytes,
    info_hash: str,
    tags: list[str] = [],  # noqa: B006
) -> bool:
    """AddFromTorrentFile: no preferences call on this path."""
    await arr.add_torrent_from_file(filename, data)
    return await _after_add(arr, info_hash, tags)


async def poll(arr: ArrClient) -> dict[str, DownloadItem]:
    """GetItems, as RefreshMonitoredDownloads runs it every minute: the trio."""
    version = await arr.get_api_version()
    config = await arr.get_config()
    return download_items(version, config, await arr.get_torrents())


async def imported(arr: ArrClient, item: DownloadItem) -> None:
    """MarkItemAsImported, then the removal when CanBeRemoved (RemoveCompletedDownloads
    is on by default): torrents/delete with deleteFiles=true."""
    s = arr.settings
    if s.imported_category and s.imported_category != s.category:
        await arr.set_torrent_label(item.download_id.lower(), s.imported_category)
    if item.can_move_files:
        await arr.remove_torrent(item.download_id.lower(), True)
