"""The MQTT broker the Supervisor hands to add-ons that declare `services: [mqtt:need]`:
`GET /services/mqtt` with the add-on's token answers
`{"result": "ok", "data": {"host", "port", "username", "password", "ssl", "protocol", …}}`,
or `{"result": "error", "message": "Service not enabled"}` (400) while no broker add-on
provides it (supervisor/api/services.py, supervisor/services/modules/mqtt.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from . import TOKEN_ENV, AddonError

REQUEST_TIMEOUT = 10.0
RETRY_DELAY = 2.0


@dataclass(frozen=True)
class MqttService:
    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        return (
            f"MqttService(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={'***' if self.password else None}, ssl={self.ssl})"
        )


class _Retry(Exception):
    """A failure that may pass: the Supervisor or the broker add-on is still starting."""


def _service(data: Any) -> MqttService:
    if not isinstance(data, dict):
        raise AddonError(["Supervisor: the MQTT service answer has no data"])
    host, port = data.get("host"), data.get("port")
    if not isinstance(host, str) or not host:
        raise AddonError(["Supervisor: the MQTT service has no host"])
    if not isinstance(port, int | str) or not str(port).isdigit():
        raise AddonError([f"Supervisor: the MQTT service's port is not a number: {port!r}"])
    username, password = data.get("username"), data.get("password")
    return MqttService(
        host=host,
        port=int(port),
        username=str(username) if username not in (None, "") else None,
        password=str(password) if password not in (None, "") else None,
        ssl=bool(data.get("ssl", False)),
    )


async def _ask(session: aiohttp.ClientSession, url: str, token: str) -> MqttService:
    try:
        async with session.get(
            f"{url.rstrip('/')}/services/mqtt",
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            status = response.status
            try:
                body = await response.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                body = None
    except (aiohttp.ClientError, TimeoutError) as err:
        raise _Retry(f"Supervisor at {url} not reachable: {err or type(err).__name__}") from err
    message = body.get("message") if isinstance(body, dict) else None
    if status == 200 and isinstance(body, dict) and body.get("result") == "ok":
        return _service(body.get("data"))
    if status in (401, 403):
        raise AddonError(
            [
                f"Supervisor refused the MQTT service ({status}: {message or 'no message'}); "
                "the add-on's config.yaml must declare services: [mqtt:need]"
            ]
        )
    if status == 400 and message and "not enabled" in message.lower():
        raise _Retry(
            "no MQTT broker is available: install and start the Mosquitto broker add-on, "
            "or set mqtt_host (and its login) in the add-on's options"
        )
    if status >= 500:
        raise _Retry(f"Supervisor answered {status}: {message or 'no message'}")
    raise AddonError([f"Supervisor answered {status} for the MQTT service: {message or body!r}"])


async def mqtt_service(url: str, token: str, *, wait: float = 30.0) -> MqttService:
    """The broker's address and login; transient failures are retried for `wait` seconds,
    since the add-on may start before the Supervisor's API or the broker add-on."""
    if not token:
        raise AddonError(
            [f"{TOKEN_ENV} is not set: the Supervisor gives it to add-ons; run this as one"]
        )
    deadline = time.monotonic() + wait
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                return await _ask(session, url, token)
            except _Retry as err:
                if time.monotonic() + RETRY_DELAY > deadline:
                    raise AddonError([str(err)]) from None
            await asyncio.sleep(RETRY_DELAY)
