"""The bridge's HTTP server: aiohttp on the configured address only, run as one of the
bridge's supervised jobs. It carries the qBittorrent-compatible download-client API
(`/api/v2/...`, guarded the way qBittorrent guards it) and whatever other routes the
bridge adds before it starts (`add_routes`: metrics, health, management), each of
which guards itself."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..config.model import Config
from ..dispatch.dispatcher import Dispatcher
from ..lifecycle.controller import Controller
from ..lifecycle.machine import Lifecycle
from ..persistence.api_marks import ApiMarks
from ..persistence.api_removals import ApiRemovals
from ..persistence.requests import DispatchRecords
from ..persistence.store import Store
from ..rules import destination_root
from .app_routes import LOGIN, AppRoutes
from .auth import Auth
from .catalog import Catalog
from .categories import Categories
from .forms import MAX_BODY
from .removal import Removal
from .torrent_routes import TorrentRoutes

_LOGGER = logging.getLogger(__name__)
QBITTORRENT_API = "/api/v2/"


class ApiServer:
    def __init__(
        self,
        host: str,
        port: int,
        auth: Auth,
        routes: Iterable[web.AbstractRouteDef] = (),
        jobs: Iterable[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.host = host
        self.jobs = list(jobs)  # run while it serves (the removals left pending)
        self.port = port  # the bound one once started (0 in the config: any free port)
        self.auth = auth
        self.routes: list[web.AbstractRouteDef] = list(routes)
        # Run around every request, outermost first (e.g. counting requests by status).
        self.middlewares: list[Middleware] = []
        self.listening = asyncio.Event()  # set once bound (tests wait for it)
        self._runner: web.AppRunner | None = None

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """More routes (metrics, health, management), before `start`."""
        self.routes.extend(routes)

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_BODY, middlewares=[*self.middlewares, self._qbittorrent_guard]
        )
        app.add_routes(self.routes)
        return app

    @web.middleware
    async def _qbittorrent_guard(self, request: web.Request, handler: Handler) -> Any:
        """403 before anything else, as qBittorrent answers, for every call but the login
        (unknown ones too: they are told nothing without credentials)."""
        path = request.path
        if path.startswith(QBITTORRENT_API) and path != LOGIN and not self.auth.allowed(request):
            raise web.HTTPForbidden(text="Forbidden")
        return await handler(request)

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.listening.set()
        _LOGGER.info("HTTP API listening on %s port %d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            self.listening.clear()
            await self._runner.cleanup()
            self._runner = None

    async def run(self) -> None:
        """The bridge's job: serve until cancelled. Failing to listen (the port taken)
        ends the job, and so stops the bridge with the reason."""
        await self.start()
        try:
            async with asyncio.TaskGroup() as jobs:
                for job in self.jobs:
                    jobs.create_task(job())
                await asyncio.Event().wait()
        finally:
            await self.stop()


def qbittorrent_server(
    config: Config,
    *,
    store: Store,
    records: DispatchRecords,
    lifecycle: Lifecycle,
    dispatcher: Dispatcher,
    controller: Controller,
) -> ApiServer:
    """The server with the qBittorrent API on the bridge's parts."""
    settings = config.api
    routing = config.routing
    catalog = Catalog(records, lifecycle.items, ApiMarks(store), routing)
    lifecycle.observers.append(catalog.item_changed)
    categories = Categories(store, dispatcher, catalog)

    # the routing is live (Bridge.apply): read at each use
    def roots() -> Iterable[Path]:
        return routing.destinations.values()

    def default_root() -> Path:
        return destination_root(routing, routing.default_destination)

    retry = (config.transfers.retry_initial, config.transfers.retry_max)
    removal = Removal(settings, catalog, dispatcher, controller, roots, ApiRemovals(store), retry)
    auth = Auth(settings)
    if settings.admin_key is None and not ipaddress.ip_address(settings.host).is_loopback:
        # the management routes answer anyone who reaches the address (a dry run may
        # fetch a .torrent URL it is given): said once, at the start
        _LOGGER.warning(
            "API: listening on %s without api.admin_key: its management routes "
            "(/q4d/dispatch/...) are open to every host that reaches it; set api.admin_key",
            settings.host,
        )

    return ApiServer(
        settings.host,
        settings.port,
        auth,
        [
            *AppRoutes(auth, default_root).routes(),
            *TorrentRoutes(catalog, categories, removal, dispatcher).routes(),
        ],
        [removal.run],
    )
