"""Who may use the qBittorrent API, the way qBittorrent decides it: a session cookie
from `auth/login` (an idle session expires: the next call gets 403, which Sonarr and
Radarr answer by logging in again), or the credentials on every request, HTTP Basic
(Radarr and Prowlarr always send it) or `Authorization: Bearer <api_key>`. Anything
else gets 403, never 401: a 401 is an error Sonarr does not retry. Wrong passwords are
answered `Fails.`; an address that keeps sending wrong credentials (to the login, or
as Basic or Bearer on any call) is refused for a while."""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from ..config.model import ApiConfig

_LOGGER = logging.getLogger(__name__)
SESSION_COOKIE = "SID"  # qBittorrent's name up to 5.1 (the apps keep whatever they get)
MAX_SESSIONS = 1000  # the oldest goes first: a login flood cannot grow memory
MAX_FAILURES = 5  # wrong logins from one address in a row before it is refused
BAN = 300.0  # seconds an address is refused after that
MAX_BANNED = 10000


def _same(given: str, expected: str | None) -> bool:
    # surrogateescape: aiohttp hands header bytes that are not UTF-8 over as surrogates,
    # which a plain encode() refuses (a 500 instead of the 403 they deserve)
    return expected is not None and hmac.compare_digest(
        given.encode(errors="surrogateescape"), expected.encode()
    )


class Auth:
    def __init__(self, settings: ApiConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._sessions: OrderedDict[str, float] = OrderedDict()  # id → expires at
        self._failures: dict[str, tuple[int, float]] = {}  # address → (count, last at)

    # --- the credentials -------------------------------------------------------------

    def valid_login(self, username: str, password: str) -> bool:
        # Both compared, whatever the first gives: the time taken tells nothing.
        user_ok = _same(username, self.settings.username)
        return _same(password, self.settings.password) and user_ok

    def allowed(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme, value = scheme.lower(), value.strip()
        address = request.remote or ""
        # Credentials on the request count like logins: wrong ones from an address that
        # keeps sending them get it refused, else Basic on any call would let a password
        # be guessed at full speed past the login's limit. While refused, they are not
        # even checked (nor counted: a fixed app gets in once the time is up).
        presented = scheme in ("bearer", "basic") and not self.banned(address)
        if presented and (
            _same(value, self.settings.api_key) if scheme == "bearer" else self._basic(value)
        ):
            self.succeeded(address)
            return True
        # Wrong credentials do not end a good session: qBittorrent before 5.2 ignores
        # the header, and the apps send the cookie it gave them beside it.
        session = request.cookies.get(SESSION_COOKIE)
        if session is not None and self._touch(session):
            return True
        if presented:
            self.failed(address)
        return False

    def _basic(self, value: str) -> bool:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except ValueError:  # not base64 (or not ASCII at all), not UTF-8 once decoded
            return False
        return bool(sep) and self.settings.password is not None and self.valid_login(user, password)

    # --- sessions ----------------------------------------------------------------------

    def open_session(self) -> str:
        session = secrets.token_urlsafe(24)
        self._sessions[session] = self.clock() + self.settings.session_lifetime
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def close_session(self, session: str | None) -> None:
        if session is not None:
            self._sessions.pop(session, None)

    def _touch(self, session: str) -> bool:
        """A live session is good for another lifetime from now (it ends when idle)."""
        expires = self._sessions.get(session)
        now = self.clock()
        if expires is None or expires <= now:
            self._sessions.pop(session, None)
            return False
        self._sessions[session] = now + self.settings.session_lifetime
        self._sessions.move_to_end(session)
        return True

    # --- wrong passwords ----------------------------------------------------------------

    def banned(self, address: str) -> bool:
        count, last = self._failures.get(address, (0, 0.0))
        if count < MAX_FAILURES:
            return False
        if self.clock() - last < BAN:
            return True
        del self._failures[address]
        return False

    def failed(self, address: str) -> None:
        count, _ = self._failures.get(address, (0, 0.0))
        if len(self._failures) >= MAX_BANNED and address not in self._failures:
            self._failures.clear()  # a flood from many addresses: start counting again
        self._failures[address] = (count + 1, self.clock())
        if count + 1 == MAX_FAILURES:  # once: the tries while refused are not counted
            _LOGGER.warning(
                "API: %s refused for %.0f s after %d wrong logins or credentials in a row",
                address or "an unknown address", BAN, MAX_FAILURES,
            )  # fmt: skip

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
