"""The dispatcher's management endpoints (docs/metrics.md#management): a dry-run
dispatch, the decisions, the requests and the clients, as JSON.

They are the MQTT dispatch commands over HTTP: the same argument checks and the same
answers (mqtt/dispatch_commands.py), so the two cannot drift apart. They are guarded by
the admin key when one is set; the *arr endpoints keep their own credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import voluptuous as vol
from aiohttp import web

from ..dispatch.dispatcher import Dispatcher, DispatchError
from ..mqtt.codec import MAX_COMMAND_BYTES, RejectedEvent, decode_json
from ..mqtt.dispatch_commands import SCHEMAS, handlers

_LOGGER = logging.getLogger(__name__)
PREFIX = "/q4d/dispatch"
# DispatchError codes and this module's own, as HTTP statuses
STATUS = {
    "malformed": 400,
    "invalid_args": 400,
    "unauthorized": 401,
    "unknown_seedbox": 404,
    "not_found": 404,
    "duplicate": 409,
    "too_large": 413,
    "invalid_torrent": 422,
    "unknown_category": 422,
    "internal": 500,
    "client_error": 502,
    "no_eligible_client": 503,
}

Answer = Callable[[web.Request], Awaitable[dict[str, Any]]]


def routes(dispatcher: Dispatcher, *, admin_key: str | None) -> list[web.RouteDef]:
    """POST {PREFIX}/preview, GET {PREFIX}/decisions, /requests and /clients. With an
    `admin_key` (None or "": open), each needs it in `X-API-Key` or as
    `Authorization: Bearer`."""

    def run(op: str, valid: dict[str, Any]) -> Awaitable[dict[str, Any]]:
        answer: Awaitable[dict[str, Any]] = handlers(dispatcher, valid)[op]()
        return answer

    async def preview(request: web.Request) -> dict[str, Any]:
        try:
            body = decode_json(await request.read(), MAX_COMMAND_BYTES)
        except web.HTTPRequestEntityTooLarge as err:  # over the server's client_max_size
            raise DispatchError("too_large", err.text or "request body too large") from err
        except RejectedEvent as err:
            raise DispatchError(err.reason, err.detail) from err
        return await run("preview", {**_valid("preview", body), "source": "api"})

    async def decisions(request: web.Request) -> dict[str, Any]:
        return await run("decisions", _valid("decisions", _limit(request)))

    async def requests(request: web.Request) -> dict[str, Any]:
        args = _limit(request)
        if states := request.query.getall("state", []):
            args["states"] = states
        return await run("requests", _valid("requests", args))

    async def clients(_request: web.Request) -> dict[str, Any]:
        return await run("clients", _valid("clients", {}))

    guard = _guard(admin_key or None)
    return [
        web.post(f"{PREFIX}/preview", guard(preview)),
        web.get(f"{PREFIX}/decisions", guard(decisions)),
        web.get(f"{PREFIX}/requests", guard(requests)),
        web.get(f"{PREFIX}/clients", guard(clients)),
    ]


def _guard(
    admin_key: str | None,
) -> Callable[[Answer], Callable[[web.Request], Awaitable[web.Response]]]:
    """The key check, then the answer as JSON, or the refusal as {code, message}."""
    # hashed, so the comparison takes the same time whatever the length of what is sent
    wanted = None if admin_key is None else hashlib.sha256(admin_key.encode()).digest()

    def guarded(answer: Answer) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            if wanted is not None and not _key_matches(request, wanted):
                return _error(
                    "unauthorized",
                    "a valid admin key is needed (X-API-Key or Authorization: Bearer)",
                    headers={"WWW-Authenticate": 'Bearer realm="q4d"'},
                )
            try:
                return web.json_response(await answer(request))
            except DispatchError as err:
                return _error(err.code, err.message)
            except Exception:
                _LOGGER.exception("%s %s failed", request.method, request.path)
                return _error("internal", "the bridge failed to answer; see its log")

        return handler

    return guarded


def _key_matches(request: web.Request, wanted: bytes) -> bool:
    presented = request.headers.get("X-API-Key")
    if presented is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = token.strip()
    return hmac.compare_digest(
        hashlib.sha256(presented.encode(errors="surrogateescape")).digest(), wanted
    )


def _limit(request: web.Request) -> dict[str, Any]:
    if "limit" not in request.query:
        return {}
    try:
        return {"limit": int(request.query["limit"])}
    except ValueError as err:
        raise DispatchError("invalid_args", "limit: expected an integer") from err


def _valid(op: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        valid: dict[str, Any] = SCHEMAS[op](args)
    except vol.Invalid as err:
        raise DispatchError("invalid_args", f"{op}: {err}") from err
    return valid


def _error(code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"code": code, "message": message}, status=STATUS.get(code, 500), headers=headers
    )
