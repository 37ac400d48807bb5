"""qBittorrent's `auth/*` and `app/*` endpoints: the login, the API version Sonarr and
Radarr probe before every poll, and the preferences they check (docs/arr.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from .auth import SESSION_COOKIE, Auth
from .forms import read_form
from .states import APP_VERSION, WEBAPI_VERSION

_LOGGER = logging.getLogger(__name__)
LOGIN = "/api/v2/auth/login"
BANNED = "Your IP address has been banned after too many failed authentication attempts."


class AppRoutes:
    def __init__(self, auth: Auth, save_path: Callable[[], Path]) -> None:
        self.auth = auth
        # the default destination, where uncategorised land, as configured now
        self.save_path = save_path

    def routes(self) -> list[web.RouteDef]:
        reads = {
            "app/webapiVersion": self.webapi_version,
            "app/version": self.version,
            "app/preferences": self.preferences,
            "app/defaultSavePath": self.default_save_path,
        }
        return [
            web.post(LOGIN, self.login),
            web.post("/api/v2/auth/logout", self.logout),
            *(web.get(f"/api/v2/{name}", handler) for name, handler in reads.items()),
            *(web.post(f"/api/v2/{name}", handler) for name, handler in reads.items()),
        ]

    async def login(self, request: web.Request) -> web.Response:
        address = request.remote or ""
        if self.auth.banned(address):
            raise web.HTTPForbidden(text=BANNED)
        form = await read_form(request)
        username = form.get("username") or ""
        if self.auth.settings.password is None or not self.auth.valid_login(
            username, form.get("password") or ""
        ):
            self.auth.failed(address)
            _LOGGER.warning("API login refused from %s", address)  # never what was typed
            return web.Response(text="Fails.")
        self.auth.succeeded(address)
        response = web.Response(text="Ok.")
        response.set_cookie(
            SESSION_COOKIE, self.auth.open_session(), path="/", httponly=True, samesite="Strict"
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self.auth.close_session(request.cookies.get(SESSION_COOKIE))
        response = web.Response()
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def webapi_version(self, request: web.Request) -> web.Response:
        return web.Response(text=WEBAPI_VERSION)

    async def version(self, request: web.Request) -> web.Response:
        return web.Response(text=APP_VERSION)

    async def default_save_path(self, request: web.Request) -> web.Response:
        return web.Response(text=str(self.save_path()))

    async def preferences(self, request: web.Request) -> web.Response:
        """What Sonarr and Radarr read: no share limit that removes torrents (their test
        fails on one), DHT on (magnets without trackers allowed), queueing on (their
        "First" priority needs it) and where downloads land."""
        return web.json_response(
            {
                "save_path": str(self.save_path()),
                "temp_path_enabled": False,
                "dht": True,
                "queueing_enabled": True,
                "max_ratio_enabled": False,
                "max_ratio": -1,
                "max_seeding_time_enabled": False,
                "max_seeding_time": -1,
                "max_inactive_seeding_time_enabled": False,
                "max_inactive_seeding_time": -1,
                "max_ratio_act": 0,
                "auto_tmm_enabled": False,
            }
        )
