"""`config_test` (docs/protocol.md#test-commands): the SSH, torrent-client, destination,
Sonarr/Radarr and home-client tests Home Assistant runs before saving an entry. Answered
when the test ends, like `rescan`: a test runs as its own task, so it never holds up
other commands."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import voluptuous as vol

from .. import probes
from ..config.model import Config
from ..probes.base import ProbeError, secrets_in

_LOGGER = logging.getLogger(__name__)
# Tests at once; more wait their turn (each may hold a connection or a thread).
MAX_RUNNING = 4
# Shorter secrets are not looked for in answers: replacing "1" everywhere would garble
# them, and no message quotes a secret (this is a second guard).
MIN_REDACTED = 4

SCHEMAS: dict[str, vol.Schema | vol.All] = {
    "config_test": vol.Schema(
        {
            vol.Required("kind"): vol.In(probes.KINDS),
            # a destination may be a bare folder, as in the YAML file
            vol.Required("value"): vol.Any(dict, str),
        }
    ),
}


def _redacted(found: Any, secrets: list[str]) -> Any:
    if isinstance(found, str):
        for secret in secrets:
            found = found.replace(secret, "***")
        return found
    if isinstance(found, dict):
        return {k: _redacted(x, secrets) for k, x in found.items()}
    if isinstance(found, list):
        return [_redacted(x, secrets) for x in found]
    return found


class ProbeDesk:
    """Runs the tests against the running configuration (`config()`, read per test:
    an entry named by id is the one in force now)."""

    def __init__(self, config: Callable[[], Config], *, timeout: float = probes.TIMEOUT) -> None:
        self.config = config
        self.timeout = timeout
        self._slots = asyncio.Semaphore(MAX_RUNNING)

    async def test(self, valid: dict[str, Any]) -> dict[str, Any]:
        kind = valid["kind"]
        secrets = [s for s in secrets_in(valid) if len(s) >= MIN_REDACTED]
        async with self._slots:
            try:
                found = await probes.run(kind, valid["value"], self.config(), within=self.timeout)
            except ProbeError as err:
                failed = ProbeError(
                    err.code, _redacted(err.message, secrets), **_redacted(err.detail, secrets)
                )
                _LOGGER.info("config_test %s: %s: %s", kind, failed.code, failed.message)
                raise failed from None
        _LOGGER.info("config_test %s: ok", kind)
        return {"kind": kind, **_redacted(found, secrets)}


def handlers(desk: ProbeDesk, valid: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """The coroutine each op runs with its validated arguments."""
    return {"config_test": lambda: desk.test(valid)}
