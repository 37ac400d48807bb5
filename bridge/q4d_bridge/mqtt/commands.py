"""Commands from Home Assistant (or any MQTT client): read the request, validate its
arguments, call the queue controller, and answer every request exactly once on
`command/result`. Unknown ops and bad arguments answer `ok: false` with a code."""

from __future__ import annotations

import asyncio
import inspect
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import voluptuous as vol

from ..dispatch.dispatcher import Dispatcher, DispatchError
from ..models import Item, ItemState
from ..probes.base import ProbeError
from . import config_commands, dispatch_commands, probe_commands, rule_commands
from .codec import MAX_COMMAND_BYTES, RejectedEvent, decode_json
from .payloads import EncodedItems, command_result

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    op: str
    args: dict[str, Any]


def parse_command(raw: bytes) -> Command:
    data = decode_json(raw, MAX_COMMAND_BYTES)
    request_id = data.get("id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
        raise RejectedEvent("bad_request", "'id' must be a non-empty string (max 128)")
    op = data.get("op")
    if not isinstance(op, str) or not op:
        raise RejectedEvent("bad_request", "'op' must be a non-empty string")
    args = data.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise RejectedEvent("bad_request", "'args' must be an object")
    return Command(request_id, op, args)


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Controller(Protocol):
    def retry(self, item_id: str | None, *, force: bool = False) -> list[Item]: ...
    def cancel(self, item_id: str) -> str: ...
    def pause(self, item_id: str | None) -> list[str]: ...
    def resume(self, item_id: str | None) -> list[str]: ...
    def set_priority(self, item_id: str, priority: int) -> str: ...
    def get_queue(
        self, states: list[ItemState] | None, limit: int, offset: int
    ) -> EncodedItems: ...
    def set_limits(
        self, bandwidth_limit: int | None, max_concurrent: int | None
    ) -> dict[str, int]: ...
    def rescan(self, seedbox_id: str | None) -> Awaitable[dict[str, Any]]: ...
    def seedbox_cleanup(self, dry_run: bool) -> Awaitable[dict[str, Any]]: ...


MAX_BANDWIDTH = 2**40  # bytes/s (1 TiB/s): far above any link, small for any rate option
# get_queue pages. 500 items (~0.5 MB of JSON) hold any live queue in one answer and
# answer a 10,000-item history well within 50 ms; MAX_PAGE is the whole of such a history.
DEFAULT_PAGE = 500
MAX_PAGE = 10_000


def _int(value: Any) -> int:
    """A JSON integer: not a boolean (True would pass `int`), not 1.0."""
    if type(value) is not int:
        raise vol.Invalid("expected int")
    return value


def _force_needs_item(args: dict[str, Any]) -> dict[str, Any]:
    # Fetching every done item again is never what anyone means.
    if args["force"] and "item_id" not in args:
        raise vol.Invalid("force needs an item_id", path=["force"])
    return args


ITEM_ID = vol.All(str, vol.Match(r"^[0-9a-f]{16}\Z", msg="item_id must be a 16-character item id"))
STATE = vol.All(str, vol.In([s.value for s in ItemState]), vol.Coerce(ItemState))

# the queue's commands; the dispatch commands are in dispatch_commands.py
SCHEMAS: dict[str, vol.Schema | vol.All] = {
    "retry": vol.All(
        vol.Schema({vol.Optional("item_id"): ITEM_ID, vol.Optional("force", default=False): bool}),
        _force_needs_item,
    ),
    "cancel": vol.Schema({vol.Required("item_id"): ITEM_ID}),
    "pause": vol.Schema({vol.Optional("item_id"): ITEM_ID}),
    "resume": vol.Schema({vol.Optional("item_id"): ITEM_ID}),
    "set_priority": vol.Schema(
        {
            vol.Required("item_id"): ITEM_ID,
            vol.Required("priority"): vol.All(_int, vol.Range(min=-100, max=100)),
        }
    ),
    "get_queue": vol.Schema(
        {
            vol.Optional("states"): [STATE],
            vol.Optional("limit", default=DEFAULT_PAGE): vol.All(
                _int, vol.Range(min=1, max=MAX_PAGE)
            ),
            vol.Optional("offset", default=0): vol.All(_int, vol.Range(min=0)),
        }
    ),
    "rescan": vol.Schema({vol.Optional("seedbox"): vol.All(str, vol.Length(min=1, max=64))}),
    "set_limits": vol.All(
        vol.Schema(
            {
                vol.Optional("bandwidth_limit"): vol.All(_int, vol.Range(min=0, max=MAX_BANDWIDTH)),
                vol.Optional("max_concurrent"): vol.All(_int, vol.Range(min=1, max=256)),
            }
        ),
        vol.Length(min=1, msg="give bandwidth_limit (bytes/s, 0 = unlimited) or max_concurrent"),
    ),
    # what the seedbox clean-up removes now (a dry run, by default, only lists it)
    "seedbox_cleanup": vol.Schema({vol.Optional("dry_run", default=True): bool}),
}


def execute(
    controller: Controller,
    op: str,
    args: dict[str, Any],
    dispatcher: Dispatcher | None = None,
    rules: rule_commands.TrackerRuleDesk | None = None,
    config: config_commands.ConfigDesk | None = None,
    probes: probe_commands.ProbeDesk | None = None,
) -> Any:
    schemas = {
        **SCHEMAS,
        **(dispatch_commands.SCHEMAS if dispatcher else {}),
        **(rule_commands.SCHEMAS if rules else {}),
        **(config_commands.SCHEMAS if config else {}),
        **(probe_commands.SCHEMAS if probes else {}),
    }
    schema = schemas.get(op)
    if schema is None:
        raise CommandError("unknown_op", f"unknown op {op!r}; known: {', '.join(sorted(schemas))}")
    try:
        valid = schema(args)
    except vol.Invalid as err:
        raise CommandError("invalid_args", f"{op}: {err}") from err
    if dispatcher is not None and op in dispatch_commands.SCHEMAS:
        return dispatch_commands.handlers(dispatcher, valid)[op]()
    if rules is not None and op in rule_commands.SCHEMAS:
        try:
            return rule_commands.handlers(rules, valid)[op]()
        except rule_commands.RuleCommandError as err:
            raise CommandError(err.code, err.message) from err
    if config is not None and op in config_commands.SCHEMAS:
        return config_commands.handlers(config, valid)[op]()
    if probes is not None and op in probe_commands.SCHEMAS:
        return probe_commands.handlers(probes, valid)[op]()
    handlers: dict[str, Callable[[], Any]] = {
        "retry": lambda: requeued(controller.retry(valid.get("item_id"), force=valid["force"])),
        "cancel": lambda: {"item": controller.cancel(valid["item_id"])},
        "pause": lambda: {"items": controller.pause(valid.get("item_id"))},
        "resume": lambda: {"items": controller.resume(valid.get("item_id"))},
        "set_priority": lambda: {
            "item": controller.set_priority(valid["item_id"], valid["priority"])
        },
        # {"items": [...], "total": n, "next_offset": n or None}
        "get_queue": lambda: controller.get_queue(
            valid.get("states"), valid["limit"], valid["offset"]
        ),
        "set_limits": lambda: controller.set_limits(
            valid.get("bandwidth_limit"), valid.get("max_concurrent")
        ),
        # answered once every seedbox's torrent client replied
        "rescan": lambda: controller.rescan(valid.get("seedbox")),
        "seedbox_cleanup": lambda: controller.seedbox_cleanup(valid["dry_run"]),
    }
    return handlers[op]()


def requeued(items: list[Item]) -> dict[str, Any]:
    """What a retry did, for a UI to say: ids, how many, and their names."""
    return {"items": [i.id for i in items], "count": len(items), "names": [i.name for i in items]}


class CommandDesk:
    """Takes command payloads and answers each once: a bad request or bad arguments with
    their code and no traceback; anything unexpected (a bug) with `internal`, logged once
    with its traceback. A store error propagates (fatal: see mqtt/link.py)."""

    def __init__(
        self,
        controller: Controller,
        answer: Callable[[bytes], None],
        dispatcher: Dispatcher | None = None,
        rules: rule_commands.TrackerRuleDesk | None = None,
        config: config_commands.ConfigDesk | None = None,
        probes: probe_commands.ProbeDesk | None = None,
    ) -> None:
        self.controller = controller
        self.answer = answer
        self.dispatcher = dispatcher
        self.rules = rules
        self.config = config
        self.probes = probes
        self._pending: set[asyncio.Future[None]] = set()  # answers still being worked out

    def handle(self, payload: bytes) -> None:
        try:
            command = parse_command(payload)
        except RejectedEvent as err:
            self.answer(command_result(None, error=(err.reason, err.detail)))
            return
        except Exception as err:
            _LOGGER.exception("reading a command failed")
            self.answer(command_result(None, error=("internal", type(err).__name__)))
            return
        try:
            result = execute(
                self.controller,
                command.op,
                command.args,
                self.dispatcher,
                self.rules,
                self.config,
                self.probes,
            )
            if inspect.isawaitable(result):  # e.g. rescan: answered when the seedboxes replied
                task = asyncio.ensure_future(self._answer_later(command.id, result))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                return
            answer = command_result(command.id, result=result)
        except CommandError as err:
            answer = command_result(command.id, error=(err.code, err.message))
        except sqlite3.Error:
            raise  # not recorded, so not acknowledged
        except Exception as err:
            _LOGGER.exception("command %s (%s) failed", command.id, command.op)
            answer = command_result(command.id, error=("internal", type(err).__name__))
        self.answer(answer)

    async def settled(self) -> None:
        """Wait for the answers still being worked out (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _answer_later(self, command_id: str, result: Awaitable[Any]) -> None:
        try:
            answer = command_result(command_id, result=await result)
        except (CommandError, DispatchError) as err:
            answer = command_result(command_id, error=(err.code, err.message))
        except (config_commands.ConfigCommandError, ProbeError) as err:
            answer = command_result(command_id, error=(err.code, err.message), detail=err.detail)
        except Exception as err:
            _LOGGER.exception("command %s failed", command_id)
            answer = command_result(command_id, error=("internal", f"{type(err).__name__}"))
        self.answer(answer)
