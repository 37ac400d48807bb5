"""A stand-in for the Supervisor's API on 127.0.0.1 (the real one runs only on Home
Assistant OS): `GET /services/mqtt` answers as supervisor/api/services.py does, to the
add-on's token only."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "0123456789abcdef0123456789abcdef-supervisor-token"


@dataclass
class FakeSupervisor:
    service: dict[str, Any] | None
    url: str = ""
    requests: list[str] = field(default_factory=list)

    async def _mqtt(self, request: web.Request) -> web.Response:
        self.requests.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"result": "error", "message": "Forbidden"}, status=403)
        if self.service is None:
            return web.json_response(
                {"result": "error", "message": "Service not enabled"}, status=400
            )
        return web.json_response({"result": "ok", "data": self.service})


@asynccontextmanager
async def fake_supervisor(service: dict[str, Any] | None) -> AsyncIterator[FakeSupervisor]:
    fake = FakeSupervisor(service)
    app = web.Application()
    app.router.add_get("/services/mqtt", fake._mqtt)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def mosquitto_service(host: str, port: int, username: str, password: str) -> dict[str, Any]:
    """What the Mosquitto add-on registers (its `addon`/`app` key included)."""
    return {
        "host": host,
        "port": port,
        "ssl": False,
        "protocol": "3.1.1",
        "username": username,
        "password": password,
        "app": "core_mosquitto",
    }


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def addon_run(
    options: dict[str, Any] | str,
    data: Path,
    supervisor_url: str,
    *args: str,
    token: str = TOKEN,
) -> Ran:
    """`q4d-bridge addon-run --write-only` as the image runs it, to completion."""
    data.mkdir(parents=True, exist_ok=True)
    options_path = data / "options.json"
    options_path.write_text(options if isinstance(options, str) else json.dumps(options))
    env = {**os.environ, "SUPERVISOR_URL": supervisor_url, "SUPERVISOR_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "q4d_bridge.cli", "addon-run", "--options", str(options_path),
        "--data", str(data), "--supervisor-wait", "0", "--write-only", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())
