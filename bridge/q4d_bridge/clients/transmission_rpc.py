"""How the Transmission adapter reaches Transmission: its JSON-RPC (`POST
…/transmission/rpc`), one request at a time, with failures as ClientErrors of a kind.
The mapping onto the bridge's interface stays in transmission.py.

This client is the few lines below, on aiohttp, rather than the PyPI `transmission-rpc`
package: that one is synchronous (requests), so each call would block the bridge's
event loop or need a thread of its own, and it would bring requests along for what is
one POST with two headers.

- **Session id (CSRF).** Every request carries `X-Transmission-Session-Id`. Transmission
  answers 409 with the id to use when it is missing or stale (the first request, a
  restarted daemon), and the request is sent again once with the new id.
- **Login.** HTTP Basic auth when `username` is set (an unset password is empty).
- **Retries.** A request that cannot reach the client is tried again after 1, 2 and
  4 s (`retry.with_retries`) unless the caller says otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from ..config.model import ClientConfig
from .base import ClientError, ClientErrorKind
from .retry import with_retries

REQUEST_TIMEOUT = 30.0
DEFAULT_PATH = "/transmission/rpc"
SESSION_HEADER = "X-Transmission-Session-Id"
_TAG = re.compile(r"<[^>]*>")


class TransmissionRpc:
    def __init__(
        self, config: ClientConfig, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.config = config
        self.url = rpc_url(config.url)
        parts = URL(self.url)
        self.where = f"Transmission at {parts.host}:{parts.port}"
        self._auth = (
            aiohttp.BasicAuth(config.username, config.password or "")
            if config.username is not None
            else None
        )
        self._sleep = sleep
        self._http: aiohttp.ClientSession | None = None
        # public: a new id is a new session, in which the adapter asks the version again
        self.session_id = ""

    async def request(self, method: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One call: the session-id exchange included, no retries."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        body = {"method": method, "arguments": arguments}
        renewed = resent = False
        while True:
            try:
                async with self._http.post(
                    self.url,
                    json=body,
                    headers={SESSION_HEADER: self.session_id},
                    auth=self._auth,
                    ssl=self.config.verify_tls,
                ) as answer:
                    if answer.status == 409:
                        session_id = answer.headers.get(SESSION_HEADER)
                        if not session_id:
                            raise ClientError(
                                f"{self.where}: HTTP 409 without a session id; is "
                                f"{self.url} Transmission's RPC address?",
                                ClientErrorKind.REFUSED,
                            )
                        if renewed:
                            raise ClientError(
                                f"{self.where}: a new session id at every request (HTTP 409)"
                            )
                        self.session_id, renewed = session_id, True
                        continue
                    status, text = answer.status, await answer.text(errors="replace")
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                # A kept-alive connection the daemon closed (it restarted, say): every
                # call here has the same effect sent twice, so send it again at once.
                if resent or not _closed_connection(err):
                    raise _unreachable(err) from err
                resent = True
                continue
            return self._answer(method, status, text)

    def _answer(self, method: str, status: int, text: str) -> dict[str, Any]:
        said = " ".join(_TAG.sub(" ", text).split())[:200]
        if status == 401:
            raise ClientError(
                "Transmission login failed (check username/password)", ClientErrorKind.AUTH
            )
        if status in (403, 421):  # rpc-whitelist, too many failed logins; rpc-host-whitelist
            raise ClientError(
                f"{self.where} refused access (HTTP {status}): {said}", ClientErrorKind.AUTH
            )
        if status >= 500:
            raise ClientError(f"Transmission unreachable: HTTP {status}: {said}")
        if status != 200:
            raise ClientError(
                f"{self.where}: HTTP {status} from {self.url} (Transmission's RPC address "
                f"normally ends in {DEFAULT_PATH})",
                ClientErrorKind.REFUSED,
            )
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("result"), str):
            raise ClientError(
                f"{self.where}: the answer to {method} is not Transmission RPC (is {self.url} "
                f"its RPC address? it normally ends in {DEFAULT_PATH})",
                ClientErrorKind.REFUSED,
            )
        if data["result"] != "success":
            raise ClientError(f"Transmission {method}: {data['result']}", ClientErrorKind.REFUSED)
        arguments = data.get("arguments")
        return arguments if isinstance(arguments, dict) else {}

    async def call(
        self, method: str, arguments: dict[str, Any] | None = None, *, retried: bool = True
    ) -> dict[str, Any]:
        """A method's answer (its `arguments`); retried while Transmission is unreachable
        unless `retried` is False."""

        async def attempt() -> dict[str, Any]:
            return await self.request(method, arguments or {})

        if not retried:
            return await attempt()
        return await with_retries(attempt, what=f"{self.where} ({method})", sleep=self._sleep)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def _closed_connection(err: BaseException) -> bool:
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return True
    return isinstance(err, aiohttp.ClientOSError) and err.errno in (errno.EPIPE, errno.ECONNRESET)


def _unreachable(err: BaseException) -> ClientError:
    return ClientError(f"Transmission unreachable: {type(err).__name__}: {str(err) or 'no answer'}")


def rpc_url(url: str) -> str:
    """The RPC address: a URL without a path gets Transmission's `/transmission/rpc`."""
    parts = urlsplit(url)
    return url.rstrip("/") + DEFAULT_PATH if parts.path in ("", "/") else url
