"""Liveness and readiness probes (docs/metrics.md#health-and-readiness).

/health answers 200 whenever the event loop runs the handler at all: a wedged loop is
what a supervisor should restart. /ready answers 200 only when the bridge can do its
job: connected to the MQTT broker (completions and commands arrive there) and able to
write its store (nothing is acknowledged before it is committed).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..persistence.store import Store

READY_PROBE_SETTING = "ready_probe_at"  # the setting /ready writes to prove the store writes


def store_write_check(store: Store) -> Callable[[], None]:
    """A real write (a setting's upsert, committed), so a full disk, a read-only
    filesystem or a closed store fails the probe the way it would fail an admission."""

    def check() -> None:
        store.set_setting(READY_PROBE_SETTING, time.time())

    return check


def routes(
    *, mqtt_connected: Callable[[], bool], store_writable: Callable[[], None]
) -> list[web.RouteDef]:
    """GET /health and GET /ready. `store_writable` raises (sqlite3.Error, OSError) when
    the store cannot be written: see store_write_check."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_request: web.Request) -> web.Response:
        checks: dict[str, dict[str, Any]] = {
            "mqtt": {"ok": True}
            if mqtt_connected()
            else {"ok": False, "error": "not connected to the MQTT broker"},
            "store": _store_check(store_writable),
        }
        failed = [name for name, check in checks.items() if not check["ok"]]
        return web.json_response(
            {"ready": not failed, "failed": failed, "checks": checks},
            status=503 if failed else 200,
        )

    return [web.get("/health", health), web.get("/ready", ready)]


def _store_check(store_writable: Callable[[], None]) -> dict[str, Any]:
    try:
        store_writable()
    except (sqlite3.Error, OSError) as err:
        return {"ok": False, "error": f"the store cannot be written: {err}"}
    return {"ok": True}
