"""The dispatch commands (docs/protocol.md#operations): add a torrent, preview where it
would go, the clients with their scores, the decision history, the requests, and
pause/resume/remove of one torrent on a seedbox's client. Each answers when done."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import voluptuous as vol

from ..dispatch.dispatcher import AddRequest, Dispatcher, DispatchError
from ..dispatch.requests import SOURCES, RequestState

MAX_TORRENT_BASE64 = 11 * 1024 * 1024  # an 8 MiB .torrent is 10.7 MiB in base64
HASH = vol.All(str, vol.Match(r"^[0-9a-fA-F]{40}\Z", msg="hash must be 40 hex digits"), vol.Lower)
SEEDBOX = vol.All(str, vol.Length(min=1, max=64))


def _int(value: Any) -> int:
    if type(value) is not int:
        raise vol.Invalid("expected int")
    return value


TORRENT_FIELDS = {
    vol.Optional("magnet"): vol.All(str, vol.Length(min=1, max=64 * 1024)),
    vol.Optional("url"): vol.All(str, vol.Length(min=1, max=8 * 1024)),
    vol.Optional("torrent"): vol.All(
        str, vol.Length(min=1, max=MAX_TORRENT_BASE64, msg="torrent: more than 8 MiB")
    ),
    vol.Optional("category"): vol.All(str, vol.Length(min=1, max=200)),
    vol.Optional("seedbox"): SEEDBOX,
    vol.Optional("size"): vol.All(_int, vol.Range(min=0)),
}
ONE_SOURCE = vol.Any(
    vol.Schema({vol.Required("magnet"): object}, extra=vol.ALLOW_EXTRA),
    vol.Schema({vol.Required("url"): object}, extra=vol.ALLOW_EXTRA),
    vol.Schema({vol.Required("torrent"): object}, extra=vol.ALLOW_EXTRA),
    msg="give one of magnet, url or torrent (a .torrent file, base64)",
)

SCHEMAS: dict[str, vol.Schema | vol.All] = {
    "add": vol.All(
        vol.Schema(
            {
                **TORRENT_FIELDS,
                vol.Optional("paused", default=False): bool,
                vol.Optional("source", default="mqtt"): vol.In(SOURCES),
                vol.Optional("dry_run", default=False): bool,
            }
        ),
        ONE_SOURCE,
    ),
    "preview": vol.All(vol.Schema(TORRENT_FIELDS), ONE_SOURCE),
    "clients": vol.Schema({}),
    "decisions": vol.Schema(
        {vol.Optional("limit", default=50): vol.All(_int, vol.Range(min=1, max=1000))}
    ),
    "requests": vol.Schema(
        {
            vol.Optional("limit", default=100): vol.All(_int, vol.Range(min=1, max=10000)),
            vol.Optional("states"): [vol.All(str, vol.In([s.value for s in RequestState]))],
        }
    ),
    "torrent_pause": vol.Schema({vol.Required("seedbox"): SEEDBOX, vol.Required("hash"): HASH}),
    "torrent_resume": vol.Schema({vol.Required("seedbox"): SEEDBOX, vol.Required("hash"): HASH}),
    "torrent_remove": vol.Schema(
        {
            vol.Required("seedbox"): SEEDBOX,
            vol.Required("hash"): HASH,
            vol.Optional("delete_data", default=False): bool,
        }
    ),
}


def handlers(
    dispatcher: Dispatcher, valid: dict[str, Any]
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The coroutine each op runs with its validated arguments."""

    def adding() -> AddRequest:
        return AddRequest(
            magnet=valid.get("magnet"),
            url=valid.get("url"),
            torrent=valid.get("torrent"),
            category=valid.get("category"),
            seedbox=valid.get("seedbox"),
            paused=valid.get("paused", False),
            size=valid.get("size"),
            source=valid.get("source", "mqtt"),
        )

    async def steer(op: str) -> dict[str, Any]:
        delete = valid.get("delete_data", False)
        await dispatcher.steer(op, valid["seedbox"], valid["hash"], delete_data=delete)
        answer = {"seedbox": valid["seedbox"], "hash": valid["hash"]}
        return {**answer, "delete_data": delete} if op == "remove" else answer

    async def decisions() -> dict[str, Any]:
        return {"decisions": dispatcher.records.decisions(valid["limit"])}

    async def requests() -> dict[str, Any]:
        states = [RequestState(s) for s in valid["states"]] if "states" in valid else None
        found = dispatcher.records.requests(states, valid["limit"])
        live = dispatcher.tracker.active  # progress and rates newer than the last save
        return {"requests": [live.get(r.id, r).as_dict() for r in found]}

    return {
        "add": lambda: dispatcher.add(adding(), dry_run=valid.get("dry_run", False)),
        "preview": lambda: dispatcher.add(adding(), dry_run=True),
        "clients": dispatcher.clients_report,
        "decisions": decisions,
        "requests": requests,
        "torrent_pause": lambda: steer("pause"),
        "torrent_resume": lambda: steer("resume"),
        "torrent_remove": lambda: steer("remove"),
    }


__all__ = ["SCHEMAS", "DispatchError", "handlers"]
