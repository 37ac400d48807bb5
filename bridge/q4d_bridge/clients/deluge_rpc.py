"""How the Deluge adapter reaches Deluge: deluge-web's JSON-RPC (`POST …/json`), one
request at a time, with failures as ClientErrors of a kind. The mapping onto the
bridge's interface stays in deluge.py.

deluge-web holds two things for us: a login session (a cookie; `auth.login` with the
web password) and a connection to a daemon, which it loses when either of them
restarts. A request deluge-web answers "not authenticated" (no session yet, it expired,
or deluge-web restarted) is sent again once after a new login; `attach` connects the
web UI to the first daemon its connection manager reports online, since a call to the
daemon through a web UI without one hangs until the request times out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..config.model import ClientConfig
from .base import ClientError, ClientErrorKind

_LOGGER = logging.getLogger(__name__)
REQUEST_TIMEOUT = 30.0

# deluge-web's JSON-RPC error codes
NOT_AUTHENTICATED = 1
UNKNOWN_METHOD = 2


class UnknownMethod(ClientError):
    """deluge-web offers no such method: no daemon behind it, or a plugin not enabled."""


class DelugeRpc:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.url = json_url(config.url)
        # for messages: a proxy's credentials in the url stay out of logs
        self.where = without_credentials(self.url)
        self._http: aiohttp.ClientSession | None = None
        self._logged_in = False
        self._ids = itertools.count(1)
        self._attaching = asyncio.Lock()

    async def post(self, method: str, params: list[Any]) -> dict[str, Any]:
        """One request, its JSON-RPC answer as it came (an error in it included)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                # Seedboxes are often addressed by IP; the default jar drops cookies
                # from IP hosts, and with them the session.
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            )
        body = {"method": method, "params": params, "id": next(self._ids)}
        try:
            async with self._http.post(self.url, json=body, ssl=self.config.verify_tls) as answer:
                status, text = answer.status, await answer.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            reason = f"{type(err).__name__}: {err}".rstrip(": ")
            raise ClientError(f"Deluge unreachable at {self.where}: {reason}") from err
        if status >= 500:
            raise ClientError(f"Deluge web at {self.where}: HTTP {status}")
        if status in (401, 403):  # deluge-web says 200; a proxy in front of it may not
            raise ClientError(f"Deluge web at {self.where}: HTTP {status}", ClientErrorKind.AUTH)
        try:
            data = answer_json(status, text)
        except ValueError as err:
            raise ClientError(
                f"Deluge web at {self.where}: {err} (is the url deluge-web's /json?)",
                ClientErrorKind.REFUSED,
            ) from None
        return data

    async def call(self, method: str, *params: Any) -> Any:
        data = await self.post(method, list(params))
        if _code(data) == NOT_AUTHENTICATED:  # no session yet, it expired, or a restart
            await self._login()
            data = await self.post(method, list(params))
        error = data.get("error")
        if not error:
            return data.get("result")
        raise rpc_error(method, error)

    async def _login(self) -> None:
        answer = await self.post("auth.login", [self.config.password or ""])
        if answer.get("result") is not True:
            raise ClientError(
                "Deluge web refused the login (check the client's password)",
                ClientErrorKind.AUTH,
            )
        self._logged_in = True

    async def attach(self) -> None:
        """Logged in, and the web UI connected to a daemon."""
        async with self._attaching:
            if await self.call("web.connected"):
                return
            hosts = await self.call("web.get_hosts") or []
            if not hosts:
                raise ClientError(
                    "Deluge web has no daemon in its connection manager (add one in the "
                    "web UI: Connection Manager)",
                    ClientErrorKind.REFUSED,
                )
            for host in hosts:
                status = await self.call("web.get_host_status", host[0]) or []
                if {"Online", "Connected"} & {str(field) for field in status}:
                    break
            else:
                where = ", ".join(f"{h[1]}:{h[2]}" for h in hosts)
                raise ClientError(f"Deluge web: its daemon is not running ({where})")
            try:
                await self.call("web.connect", host[0])
            except ClientError as err:
                raise ClientError(f"Deluge web could not connect to its daemon: {err}") from err
            _LOGGER.info(
                "Deluge web at %s: connected it to its daemon %s:%s", self.where, *host[1:3]
            )

    async def daemon(self, method: str, *params: Any) -> Any:
        """A daemon method (core.*, label.*, daemon.*), on a web UI `attach` connected."""
        try:
            return await self.call(method, *params)
        except UnknownMethod as err:
            if method.startswith("label."):
                raise
            # the web UI lost its daemon since attach asked
            raise ClientError(f"Deluge web is not connected to its daemon ({method})") from err

    async def close(self) -> None:
        if self._http is not None:
            # Ends the web session; the web UI stays connected to its daemon for others.
            if self._logged_in:
                with contextlib.suppress(ClientError):
                    await self.post("auth.delete_session", [])
                self._logged_in = False
            await self._http.close()
            self._http = None


# --- helpers, also tested on their own -----------------------------------------------


def json_url(url: str) -> str:
    """deluge-web's JSON-RPC endpoint: the url as given if it ends in /json, else with
    /json appended (`http://10.0.0.5:8112`, `https://box.example.com/deluge/`)."""
    base = url.rstrip("/")
    return base if base.endswith("/json") else base + "/json"


def without_credentials(url: str) -> str:
    """The url without a `user:password@` (basic auth for a proxy in front)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def answer_json(status: int, body: bytes) -> dict[str, Any]:
    """The JSON-RPC answer in a 200 response; ValueError naming what came instead."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status != 200 or not isinstance(data, dict) or "error" not in data:
        text = body[:120].decode("utf-8", "replace").strip()
        raise ValueError(f"HTTP {status}, not a JSON-RPC answer: {text!r}")
    return data


def _code(data: dict[str, Any]) -> int | None:
    error = data.get("error")
    return error.get("code") if isinstance(error, dict) else None


# Deluge wraps a daemon's exception in a Twisted Failure repr with a traceback:
# `Failure: [Failure instance: Traceback …: <class 'deluge.error.X'>: message\n…`.
_FAILURE = re.compile(r"<class '(?:[\w]+\.)*(\w+)'>: ([^\n]*)")
_NOT_FOUND = ("InvalidTorrentError",)
_UNREACHABLE = ("ConnectionDone", "ConnectionLost", "ConnectionRefusedError", "TimeoutError")


def rpc_error(method: str, error: Any) -> ClientError:
    """The ClientError for a JSON-RPC error object."""
    if not isinstance(error, dict):
        return ClientError(f"Deluge {method}: {error!r}", ClientErrorKind.REFUSED)
    code, message = error.get("code"), str(error.get("message") or "")
    if code == NOT_AUTHENTICATED:
        return ClientError(f"Deluge {method}: not authenticated", ClientErrorKind.AUTH)
    if code == UNKNOWN_METHOD:
        return UnknownMethod(f"Deluge web has no method {method}", ClientErrorKind.REFUSED)
    wrapped = _FAILURE.search(message)
    kind_name, reason = (
        wrapped.groups() if wrapped else ("", message.strip().split("\n", 1)[0] or "error")
    )
    if kind_name in _NOT_FOUND or reason == "Unknown Torrent":
        kind = ClientErrorKind.NOT_FOUND
    elif kind_name in _UNREACHABLE:
        kind = ClientErrorKind.UNREACHABLE
    else:
        kind = ClientErrorKind.REFUSED
    return ClientError(f"Deluge {method}: {reason}", kind)
