"""Contract tests: the bridge's real payloads through the integration's own parsers.

Item states, error codes, event kinds and the topic layout exist on both sides
(bridge/q4d_bridge and custom_components/q4d). The integration must not import the
bridge (HACS installs it alone), so these tests are where the two meet, in the spirit
of tests/seedbox/test_types_config.py: every payload is built by the bridge's own code
(`item_payload`, `Bridge.state().as_dict()`, `Publisher.event_message`/`status_payload`,
`command_result`, the `CommandDesk` answering on the bridge's `Router`) and read by the
integration's own code (`Item.from_dict`, `BridgeState`, `BridgeStatus`, `CommandResult`,
the coordinator, the config flow); the shared constants are compared as sets. A failure
names the side and the value that disagree. The bridge under test reaches its state
through its parts' own transitions (intake, lifecycle, controller, scheduler, monitor,
housekeeping), as it would at run time; nothing connects.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, NamedTuple
from unittest.mock import patch

import aiomqtt
import pytest
import q4d_bridge
from homeassistant.components import mqtt
from homeassistant.config_entries import SOURCE_MQTT, SOURCE_USER
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from paho.mqtt.client import topic_matches_sub
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_mqtt_message,
)
from q4d_bridge.bridge import Bridge
from q4d_bridge.clients.base import ClientStats as BridgeClientStats
from q4d_bridge.clients.base import Torrent
from q4d_bridge.config.loader import ConfigError, parse_config
from q4d_bridge.config.values import ID_PATTERN, TOPIC_PREFIX_PATTERN
from q4d_bridge.models import ACTIVE_STATES as BRIDGE_ACTIVE_STATES
from q4d_bridge.models import FINISHED_STATES as BRIDGE_FINISHED_STATES
from q4d_bridge.models import Item as BridgeItem
from q4d_bridge.models import ItemState
from q4d_bridge.mqtt.codec import PROTOCOL_VERSION as BRIDGE_PROTOCOL_VERSION
from q4d_bridge.mqtt.codec import dumps
from q4d_bridge.mqtt.payloads import command_result, item_payload
from q4d_bridge.mqtt.topics import Topics
from q4d_bridge.postprocess.plan import CleanupPlan, ExtractPlan, PostPlan
from q4d_bridge.transfer import remote as bridge_remote
from q4d_bridge.transfer.errors import PERMANENT, ErrorCode, TransferError

from custom_components.q4d import config_flow
from custom_components.q4d.const import (
    ACTIVE_STATES,
    COMPLETION_EVENTS,
    CONF_BRIDGE_ID,
    CONF_ITEM_ENTITIES,
    CONF_PREFIX,
    CONF_RETENTION,
    DEFAULT_PREFIX,
    DOMAIN,
    EVENT_TRANSFER_PREFIX,
    FINISHED_STATES,
    HOST_KEY_ERROR,
    ITEM_STATES,
    PROTOCOL_VERSION,
    REQUEST_STATES,
    SPACE_ERROR_CODES,
    TRANSFER_EVENTS,
)
from custom_components.q4d.coordinator import Q4dCoordinator
from custom_components.q4d.models import (
    BridgeState,
    BridgeStatus,
    ClientStats,
    CommandResult,
    Destination,
    DispatchState,
    LastCompleted,
    LastRejection,
    SeedboxState,
    SshLink,
    decode,
)
from custom_components.q4d.models import Item as HaItem
from tests.helpers.configs import bridge_config

ROOT = Path(__file__).resolve().parents[3]
INTEGRATION = ROOT / "custom_components" / "q4d"
BRIDGE_SOURCE = Path(q4d_bridge.__file__).resolve().parent

GIB = 1 << 30
MIB = 1 << 20
HASH = "0123456789abcdef0123456789abcdef01234567"
# (prefix, bridge id): the default layout, and a multi-level prefix with an id using
# every character class the bridge allows.
LAYOUTS = [("q4d", "home"), ("home/q4d", "media-box_2")]
LAYOUT_IDS = ["q4d", "home-q4d"]

# Item event kinds the bridge sends and Home Assistant deliberately fires no bus event
# for (docs/home-assistant.md: "For every queued, started, completed and failed event").
NOT_FIRED = frozenset({"waiting", "cancelled", "landed", "step_done", "refetch_failed"})
# The bridge's event kinds for completions it refused, and what Home Assistant calls them
# (bus events q4d_<name>, event types of the event entity and device triggers).
REFUSED = {"rejected": "completion_rejected", "duplicate": "completion_duplicate"}


# --- the bridge ---------------------------------------------------------------------------


class FakeClient:
    """A torrent client that answers the bridge's poll (the bridge's ClientStats)."""

    async def completed_torrents(self) -> list[Torrent]:
        """No completed torrents."""
        return []

    async def stats(self) -> BridgeClientStats:
        """What a qBittorrent would report."""
        return BridgeClientStats(
            free_space=812_345_678_848,
            active_downloads=2,
            download_rate=10 * MIB,
            upload_rate=2 * MIB,
            torrents=143,
        )

    async def export_torrent(self, info_hash: str) -> bytes:
        """Not asked for here."""
        raise NotImplementedError

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None:
        """Not asked for here."""

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None:
        """Not asked for here."""

    async def close(self) -> None:
        """Nothing to close."""


# (seedbox, completion event); admitted through the bridge's own intake.
COMPLETIONS: list[tuple[str, dict[str, Any]]] = [
    ("sb1", {"event_id": "c1", "path": "/home/me/downloads/Show.S01E01.mkv", "hash": HASH,
             "category": "tv", "tags": ["hd", "x265"], "size": 1_500_000_000, "type": "T"}),
    ("sb1", {"event_id": "c2", "path": "/home/me/downloads/Show.S01E02.mkv", "category": "tv",
             "size": 1_400_000_000}),
    ("sb1", {"event_id": "c3", "path": "/home/me/downloads/Show.S01E03.mkv", "category": "tv"}),
    ("sb1", {"event_id": "c4", "path": "/home/me/downloads/Broken.iso", "size": 700_000_000}),
    ("sb2", {"event_id": "c5", "path": "/data/Film.2021.mkv", "category": "movies",
             "size": 8 * GIB}),
    ("sb2", {"event_id": "c6", "path": "/data/Album", "name": "Album (2020)"}),
    ("sb2", {"event_id": "c7", "path": "/data/Gone.mkv"}),
    ("sb1", {"event_id": "c8", "path": "/home/me/downloads/Show.S02.Pack", "category": "tv",
             "size": 4 * GIB}),
]  # fmt: skip

# left on the seedbox by the ignore rule make_bridge adds
IGNORED = {"event_id": "c9", "path": "/home/me/downloads/Linux.iso", "category": "keep-remote"}

# Free space of the destinations' folders (tests/helpers/configs.py: library/tv,
# library/movies, library/other); a folder missing here does not exist yet.
FREE_SPACE = {"tv": 3_298_534_883_328, "movies": 512 * MIB}


def disk_free(root: Path) -> int:
    """The bridge's free-space reader, for the folders of FREE_SPACE."""
    if root.name not in FREE_SPACE:
        raise FileNotFoundError(root)
    return FREE_SPACE[root.name]


def raw_config(tmp_path: Path, bridge_id: str = "home") -> dict[str, Any]:
    """tests/helpers/configs.py's bridge config, with dummy key and known_hosts files."""
    key, known = tmp_path / "id_test", tmp_path / "known_hosts"
    key.write_text("not a key; nothing connects\n")
    known.write_text("")
    return bridge_config(
        tmp_path / "data", tmp_path / "library", key=key, known_hosts=known, bridge_id=bridge_id
    )


def make_bridge(tmp_path: Path, prefix: str, bridge_id: str) -> Bridge:
    """A real bridge (two seedboxes, one with a torrent client); nothing connects."""
    raw = raw_config(tmp_path, bridge_id)
    raw["bridge"]["name"] = "Home media bridge"
    raw["broker"]["topic_prefix"] = f"/{prefix}/"  # the bridge strips the slashes
    raw["rules"].insert(0, {"match": [{"field": "category", "is": "keep-remote"}], "ignore": True})
    raw["seedboxes"].append(
        {
            **raw["seedboxes"][0],
            "id": "sb2",
            "name": "Second seedbox",
            "max_concurrent": 2,
            "client": {"type": "qbittorrent", "url": "http://127.0.0.1:9"},
        }
    )
    return Bridge(parse_config(raw), disk_free=disk_free)


async def run_until(job: Coroutine[Any, Any, None], done: Callable[[], bool], what: str) -> None:
    """Run one of the bridge's endless jobs until `done()`, then stop it."""
    task = asyncio.create_task(job)
    for _ in range(500):  # some jobs read in a thread: up to 5 s
        await asyncio.sleep(0.01)
        if done():
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert done(), f"the bridge's {what} did not get there"


async def populate(bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    """Items in every state, totals, limits, a global pause, an open breaker, a polled
    torrent client, an SSH link refused for its host key, and destinations' free space;
    each reached through the part that does it at run time."""
    intake, lifecycle, controller = bridge.intake, bridge.lifecycle, bridge.controller
    for seedbox, event in COMPLETIONS:
        intake.on_completion(bridge.topics.completed(seedbox), dumps({"v": 1, **event}))
    intake.on_completion(bridge.topics.completed("sb1"), dumps({"v": 1, **COMPLETIONS[0][1]}))
    intake.on_completion(bridge.topics.completed("sb1"), b"not json")
    intake.on_completion(bridge.topics.completed("sb1"), dumps({"v": 1, **IGNORED}))
    items = {item.name: item for item in lifecycle.items.values()}
    assert len(items) == len(COMPLETIONS), "the bridge did not admit every completion"
    now = time.time()

    show = items["Show.S01E01.mkv"]  # transferring, its real size looked at
    lifecycle.start(show, now - 10)
    lifecycle.phase(show, ItemState.TRANSFERRING, 1_500_000_000, ())
    lifecycle.progress(show, 524_288_000, 52_428_800.04, 18.62)
    verifying = items["Show.S01E03.mkv"]  # its second attempt, after a failed one
    lifecycle.start(verifying, now - 120)
    lifecycle.waiting(
        verifying,
        TransferError(ErrorCode.CONNECTION, "lftp exit 1: pget: max-retries exceeded"),
        now - 61,
        attempt_spent=True,
    )
    lifecycle.start(verifying, now - 60)
    lifecycle.phase(verifying, ItemState.TRANSFERRING, 900_000_000, ())
    lifecycle.progress(verifying, 900_000_000, 15_000_000.0, 0.0)
    lifecycle.phase(verifying, ItemState.VERIFYING, 900_000_000, ())
    done = items["Show.S01E02.mkv"]  # as the runner lands a payload
    lifecycle.start(done, now - 90)
    lifecycle.phase(done, ItemState.TRANSFERRING, 1_400_000_000, ())
    lifecycle.phase(done, ItemState.VERIFYING, 1_400_000_000, ())
    verified = {"verified": "size", "repaired_pieces": 0, "skipped": []}
    lifecycle.done(done, 1_400_000_000, {"bytes": 1_400_000_000, **verified}, **verified)
    pack = items["Show.S02.Pack"]  # landed, its archives being extracted
    pack.plan = PostPlan(extract=ExtractPlan(), cleanup=CleanupPlan(at_once=True))
    lifecycle.start(pack, now - 200)
    lifecycle.phase(pack, ItemState.TRANSFERRING, 4 * GIB, ())
    lifecycle.phase(pack, ItemState.VERIFYING, 4 * GIB, ())
    verified_pack = {"verified": "pieces", "repaired_pieces": 0, "skipped": []}
    lifecycle.landed(pack, 4 * GIB, {"bytes": 4 * GIB, **verified_pack}, **verified_pack)
    lifecycle.step_started(pack, "extract")
    failed = items["Broken.iso"]
    lifecycle.start(failed, now - 30)
    lifecycle.failed(failed, TransferError(ErrorCode.HOST_KEY_MISMATCH, "Host key is not trusted"))
    film = items["Film.2021.mkv"]  # waits for space, the attempt not counted
    lifecycle.start(film, now - 5)
    lifecycle.waiting(
        film,
        TransferError(ErrorCode.INSUFFICIENT_SPACE, "8.0 GiB needed, 512.0 MiB free"),
        now + 300,
        attempt_spent=False,
    )
    album = items["Album (2020)"]
    controller.pause(album.id)
    controller.set_priority(album.id, 5)
    controller.cancel(items["Gone.mkv"].id)

    controller.set_limits(10 * MIB, 3)
    controller.pause(None)
    for _ in range(bridge.config.transfers.breaker_failures):
        bridge.scheduler.failed("sb1", now)
    housekeeping = bridge.housekeeping
    await run_until(housekeeping.watch_space(), lambda: bool(housekeeping.free_space), "space")

    await bridge.clients["sb2"].close()
    bridge.clients["sb2"] = FakeClient()  # the monitor polls the same mapping
    await bridge.monitor.poll("sb2")

    async def refused(_seedbox: object) -> None:
        raise TransferError(ErrorCode.HOST_KEY_MISMATCH, "Host key is not trusted for 127.0.0.1")

    monkeypatch.setattr(bridge_remote, "connect", refused)
    session = bridge.sessions["sb1"]
    await run_until(
        session.keep_connected(("127.0.0.1", 1883), asyncio.Event()),
        lambda: session.link_checked_at is not None,
        "SSH link",
    )
    assert session.link_error is not None, "the bridge's SSH link did not record its error"


@pytest.fixture
def layout() -> tuple[str, str]:
    """(prefix, bridge id); tests that check topics parametrize it."""
    return LAYOUTS[0]


@pytest.fixture
async def bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: tuple[str, str]
) -> AsyncIterator[Bridge]:
    """A populated bridge."""
    bridge = make_bridge(tmp_path, *layout)
    try:
        await populate(bridge, monkeypatch)
        yield bridge
    finally:
        bridge.store.close()


def bridge_item(state: ItemState, error: tuple[str, str] | None) -> BridgeItem:
    """A bridge item with every field set to something other than its default."""
    now = time.time()
    return BridgeItem(
        id="483d7eec632f7436",
        event_id="qbt-7f3a9c",
        seedbox="seedbox1",
        hash=HASH,
        name="Show.S01E01.mkv",
        remote_path="/home/me/downloads/Show.S01E01.mkv",
        destination="tv",
        local_path="/media/tv/Show.S01E01.mkv",
        category="tv-sonarr",
        tags=("hd", "x265"),
        type_code="T",
        size=1_500_000_000,
        state=state,
        priority=-7,
        paused=True,
        bytes_done=524_288_000,
        rate=52_428_800.04,
        eta=18.62,
        attempts=2,
        last_error=None if error is None else error[1],
        error_code=None if error is None else error[0],
        received_at=now - 100,
        started_at=now - 50,
        finished_at=now if state in BRIDGE_FINISHED_STATES else None,
        next_attempt_at=now + 20 if state is ItemState.WAITING else None,
        updated_at=now,
        engine="rsync",
    )


# --- comparing what was sent with what was parsed ------------------------------------------

NESTED = object()  # a field compared by the caller


def assert_parsed(
    what: str,
    parsed: Any,
    sent: Mapping[str, Any],
    *,
    same: Mapping[str, str],
    derived: Mapping[str, Any] | None = None,
    derived_from: frozenset[str] = frozenset(),
    unused: frozenset[str] = frozenset(),
) -> None:
    """Field by field: `same` maps the parser's field to the bridge key it holds
    unchanged; `derived` holds the expected value of the other fields (computed from the
    keys `derived_from`); `unused` are the bridge's keys the parser deliberately ignores.
    """
    derived = derived or {}
    fields = {f.name for f in dataclasses.fields(parsed)}
    unchecked = fields - set(same) - set(derived)
    assert not unchecked, f"{what}: the integration's fields {sorted(unchecked)} are unchecked"
    read = set(same.values()) | derived_from
    not_sent = read - set(sent)
    assert not not_sent, (
        f"{what}: the integration reads {sorted(not_sent)}, the bridge never sends them"
    )
    ignored = set(sent) - read - unused
    assert not ignored, (
        f"{what}: the bridge sends {sorted(ignored)}, which the integration neither parses "
        "nor lists as deliberately unused"
    )
    for field, key in same.items():
        got, expected = getattr(parsed, field), sent[key]
        assert got == expected, f"{what}.{field}: bridge sent {key}={expected!r}, parsed {got!r}"
    for field, expected in derived.items():
        if expected is not NESTED:
            got = getattr(parsed, field)
            assert got == expected, f"{what}.{field}: expected {expected!r}, parsed {got!r}"


ITEM_SAME = {
    name: name
    for name in (
        "id", "seedbox", "name", "state", "destination", "local_path", "remote_path",
        "category", "tags", "size", "bytes_done", "progress", "rate", "eta", "attempts",
        "priority", "paused", "received_at", "started_at", "finished_at", "next_attempt_at",
        "updated_at", "held",
    )
}  # fmt: skip
ITEM_UNUSED = frozenset({"v", "hash", "type", "engine"})


def assert_item(what: str, parsed: HaItem, sent: Mapping[str, Any]) -> None:
    """An item payload of the bridge, as the integration parsed it (bridges from before
    torrent dispatch send no request_id)."""
    error = sent["error"]
    assert error is None or isinstance(error, dict), f"{what}: error {error!r}"
    request_id = {"request_id": "request_id"} if "request_id" in sent else {}
    # post-processing: bridges from before it, and requests, send no steps
    steps = {"step": "step", "steps": "steps"} if "steps" in sent else {}
    assert_parsed(
        what,
        parsed,
        sent,
        same=ITEM_SAME | request_id | steps,
        derived={
            "error_code": None if error is None else error["code"],
            "error_message": None if error is None else error["message"],
            "raw": dict(sent),
            **({} if request_id else {"request_id": None}),
            **({} if steps else {"step": None, "steps": []}),
        },
        derived_from=frozenset({"error"}),
        unused=ITEM_UNUSED,
    )
    assert parsed.finished == (sent["state"] in BRIDGE_FINISHED_STATES), (
        f"{what}: the integration says finished={parsed.finished} for state {sent['state']!r}"
    )


def assert_client(what: str, parsed: ClientStats, sent: Mapping[str, Any]) -> None:
    """A seedbox's torrent client in the state (bridges from before torrent dispatch
    send no type, version or dispatch)."""
    fields = {f.name for f in dataclasses.fields(parsed)}
    newer = {"type", "version", "dispatch"}
    missing = newer - set(sent)
    dispatch = sent.get("dispatch")
    assert_parsed(
        what,
        parsed,
        sent,
        same={name: name for name in fields - missing - {"dispatch"}},
        derived={
            **dict.fromkeys(missing),
            "dispatch": None if dispatch is None else NESTED,
        },
        derived_from=frozenset({"dispatch"} - missing),
    )
    if dispatch is not None:
        assert isinstance(parsed.dispatch, DispatchState)
        assert_parsed(
            f"{what}.dispatch",
            parsed.dispatch,
            dispatch,
            same={f.name: f.name for f in dataclasses.fields(parsed.dispatch)},
            unused=frozenset({"free_after"}),  # the space left after a torrent of no size
        )


def assert_state(parsed: BridgeState, sent: Mapping[str, Any]) -> None:
    """A state snapshot of the bridge, as the integration parsed it (bridges from before
    torrent dispatch count no requests)."""
    limits = sent["limits"]
    assert_parsed(
        "state",
        parsed,
        sent,
        same={name: name for name in ("paused", "active", "rate", "totals", "updated_at")},
        derived={
            "counts": {**dict.fromkeys(REQUEST_STATES, 0), **sent["counts"]},
            "max_concurrent": limits["max_concurrent"],
            "bandwidth_limit": limits["bandwidth_limit"],
            "seedboxes": NESTED,
            "destinations": NESTED,
            "last_completed": NESTED,
        },
        derived_from=frozenset({"counts", "limits", "seedboxes", "destinations", "last_completed"}),
        unused=frozenset({"v", "bridge_id"}),
    )
    assert set(limits) == {"max_concurrent", "bandwidth_limit", "per_seedbox"}, (
        f"state.limits: the bridge sends {sorted(limits)}"
    )
    assert set(parsed.seedboxes) == set(sent["seedboxes"])
    for sb_id, sb_sent in sent["seedboxes"].items():
        sb = parsed.seedboxes[sb_id]
        assert isinstance(sb, SeedboxState)
        assert sb_sent["breaker"] in ("open", "closed"), f"breaker {sb_sent['breaker']!r}"
        assert_parsed(
            f"state.seedboxes.{sb_id}",
            sb,
            sb_sent,
            same={
                name: name
                for name in (
                    "name",
                    "breaker_until",
                    "consecutive_failures",
                    "queued",
                    "active",
                    "waiting",
                    "failed",
                    "rate",
                    "rejected",
                    "duplicates",
                )
            },
            derived={
                "id": sb_id,
                "breaker_open": sb_sent["breaker"] == "open",
                "max_concurrent": limits["per_seedbox"][sb_id],
                "client": NESTED,
                "ssh": NESTED,
                "last_rejection": NESTED,
            },
            derived_from=frozenset({"breaker", "client", "ssh", "last_rejection"}),
            # per seedbox in the state only; Home Assistant counts ignored bridge-wide
            unused=frozenset({"lost_events", "ignored"}),
        )
        for key, parsed_part, kind in (
            ("client", sb.client, ClientStats),
            ("ssh", sb.ssh, SshLink),
        ):
            part = sb_sent[key]
            if part is None:
                assert parsed_part is None, f"state.seedboxes.{sb_id}.{key}: sent null"
                continue
            assert isinstance(parsed_part, kind)
            if isinstance(parsed_part, ClientStats):
                assert_client(f"state.seedboxes.{sb_id}.client", parsed_part, part)
                continue
            assert_parsed(
                f"state.seedboxes.{sb_id}.{key}",
                parsed_part,
                part,
                same={f.name: f.name for f in dataclasses.fields(parsed_part)},
            )
        if (last_rejection := sb_sent["last_rejection"]) is None:
            assert sb.last_rejection is None, f"state.seedboxes.{sb_id}.last_rejection: null"
        else:
            assert isinstance(sb.last_rejection, LastRejection)
            assert_parsed(
                f"state.seedboxes.{sb_id}.last_rejection",
                sb.last_rejection,
                last_rejection,
                same={"message": "message", "at": "at"},
                derived={"reason_code": last_rejection["reason"]},
                derived_from=frozenset({"reason"}),
            )
    assert set(parsed.destinations) == set(sent["destinations"])
    for name, dest_sent in sent["destinations"].items():
        dest = parsed.destinations[name]
        assert isinstance(dest, Destination)
        assert_parsed(
            f"state.destinations.{name}",
            dest,
            dest_sent,
            same={"free_space": "free_space", "min_free_space": "min_free_space"},
            derived={"name": name},
        )
    last = sent["last_completed"]
    if last is None:
        assert parsed.last_completed is None
    else:
        assert isinstance(parsed.last_completed, LastCompleted)
        assert_parsed(
            "state.last_completed",
            parsed.last_completed,
            last,
            same={"id": "id", "name": "name", "at": "at"},
        )


def assert_status(parsed: BridgeStatus, sent: Mapping[str, Any]) -> None:
    """A status payload of the bridge, as the integration parsed it."""
    assert sent["state"] in ("online", "offline"), f"status state {sent['state']!r}"
    assert_parsed(
        "status",
        parsed,
        sent,
        same={name: name for name in ("bridge_id", "name", "version", "prefix", "seedboxes")},
        derived={"online": sent["state"] == "online"},
        derived_from=frozenset({"state"}),
        unused=frozenset({"v"}),
    )


def assert_result(parsed: CommandResult, sent: Mapping[str, Any]) -> None:
    """A command result of the bridge, as the integration parsed it."""
    error = sent.get("error")
    assert_parsed(
        "command/result",
        parsed,
        sent,
        same={"id": "id", "ok": "ok"},
        derived={
            "result": sent.get("result"),
            "error_code": None if error is None else error["code"],
            "error_message": None if error is None else error["message"],
            "error_details": {
                k: v for k, v in (error or {}).items() if k not in ("code", "message")
            },
        },
        derived_from=frozenset({"error"} if error is not None else {"result"}),
        unused=frozenset({"v"}),
    )


# --- shared constants ------------------------------------------------------------------------


def test_item_states_agree() -> None:
    """Every state the bridge has, and only those, in the integration's lists."""
    bridge_states = {state.value for state in ItemState}
    assert len(set(ITEM_STATES)) == len(ITEM_STATES), f"ITEM_STATES repeats: {ITEM_STATES}"
    for name, ours, theirs in (
        ("ITEM_STATES", set(ITEM_STATES), bridge_states),
        ("FINISHED_STATES", set(FINISHED_STATES), {s.value for s in BRIDGE_FINISHED_STATES}),
        ("ACTIVE_STATES", set(ACTIVE_STATES), {s.value for s in BRIDGE_ACTIVE_STATES}),
    ):
        assert ours == theirs, (
            f"{name}: only in the integration {sorted(ours - theirs)}, "
            f"only in the bridge {sorted(theirs - ours)}"
        )


def test_protocol_version_agrees() -> None:
    """Both speak the same protocol version."""
    assert PROTOCOL_VERSION == BRIDGE_PROTOCOL_VERSION, (
        f"integration speaks v{PROTOCOL_VERSION}, bridge v{BRIDGE_PROTOCOL_VERSION}"
    )


def test_error_codes_agree() -> None:
    """The error codes the integration acts on are the bridge's, in the state it expects.

    The integration lists no error codes beyond these (strings.json has none): a space
    issue is raised for a `waiting` item with a space code, a host-key issue for a
    `failed` item with host_key_mismatch, so the first must be retryable on the bridge
    and the second permanent.
    """
    codes = {code.value for code in ErrorCode}
    unknown = (set(SPACE_ERROR_CODES) | {HOST_KEY_ERROR}) - codes
    assert not unknown, f"the integration acts on error codes the bridge lacks: {sorted(unknown)}"
    permanent = {code.value for code in PERMANENT}
    assert HOST_KEY_ERROR in permanent, (
        f"{HOST_KEY_ERROR} is retryable on the bridge: its items wait, and the integration "
        "raises the host-key issue only for failed ones"
    )
    retried = set(SPACE_ERROR_CODES) & permanent
    assert not retried, (
        f"{sorted(retried)} fail at once on the bridge, and the integration raises the space "
        "issue only for waiting items"
    )


def test_every_error_code_reaches_the_integration() -> None:
    """Each transfer error code survives item_payload and Item.from_dict."""
    for code in ErrorCode:
        sent = item_payload(bridge_item(ItemState.FAILED, (code.value, f"{code.value} happened")))
        parsed = HaItem.from_payload(dumps(sent))
        assert (parsed.error_code, parsed.error_message) == (code.value, f"{code.value} happened")


def test_integration_never_imports_the_bridge() -> None:
    """custom_components/q4d stands alone (HACS installs it without the bridge)."""
    offenders = []
    for path in sorted(INTEGRATION.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in ("q4d_bridge", "q4d_seedbox")
            ]
    assert not offenders, f"the integration imports the bridge: {offenders}"
    manifest = json.loads((INTEGRATION / "manifest.json").read_text())
    assert manifest["requirements"] == []


def test_topic_rules_agree(tmp_path: Path) -> None:
    """The config flow checks ids and prefixes with the bridge's own rules, uses its
    default prefix, and discovery listens where a bridge with that prefix publishes."""
    for name, ours, theirs in (
        ("bridge id", config_flow.BRIDGE_ID.pattern, ID_PATTERN),
        ("topic prefix", config_flow.PREFIX.pattern, TOPIC_PREFIX_PATTERN),
    ):
        assert ours == theirs, f"{name}: the config flow checks {ours!r}, the bridge {theirs!r}"
    config = parse_config(raw_config(tmp_path))  # no topic_prefix: the bridge's default
    assert config.broker.topic_prefix == DEFAULT_PREFIX, (
        f"bridge default prefix {config.broker.topic_prefix!r}, integration {DEFAULT_PREFIX!r}"
    )
    (discovery,) = json.loads((INTEGRATION / "manifest.json").read_text())["mqtt"]
    for bridge_id in ("home", "media-box_2"):
        topics = Topics(DEFAULT_PREFIX, bridge_id)
        assert topic_matches_sub(discovery, topics.status), f"{discovery} misses {topics.status}"
        others = [topics.state, topics.event, topics.item("483d7eec632f7436"), topics.command]
        assert not [t for t in others if topic_matches_sub(discovery, t)]


# --- events -----------------------------------------------------------------------------------


class EventCase(NamedTuple):
    """One lifecycle event as the bridge sends it: kind, the item's state, extra fields."""

    kind: str
    state: ItemState | None  # None: no item
    extra: dict[str, Any]


ERRORS = {
    ItemState.WAITING: ("connection", "lftp exit 1: pget: max-retries exceeded"),
    ItemState.FAILED: ("auth_failed", "Permission denied (publickey)"),
}
EVENTS = [
    EventCase("queued", ItemState.QUEUED, {}),
    EventCase("queued", ItemState.QUEUED, {"retry": True}),
    EventCase("started", ItemState.TRANSFERRING, {}),
    EventCase("waiting", ItemState.WAITING, {}),
    EventCase(
        "completed",
        ItemState.DONE,
        {"verified": "pieces", "repaired_pieces": 2, "skipped": ["Subs/link.srt"]},
    ),
    EventCase(
        "completed", ItemState.DONE, {"verified": "size", "repaired_pieces": 0, "skipped": []}
    ),
    EventCase("failed", ItemState.FAILED, {}),
    # post-processing: landed (the DONE label), each step, then completed
    EventCase(
        "landed",
        ItemState.PROCESSING,
        {"verified": "pieces", "repaired_pieces": 0, "skipped": [], "steps": ["extract"]},
    ),
    EventCase("step_done", ItemState.PROCESSING, {"step": "extract", "result": "3 files"}),
    EventCase("completed", ItemState.DONE, {"steps": {"extract": "3 files from 1 archive"}}),
    EventCase("failed", ItemState.FAILED, {"step": "extract"}),
    EventCase("refetch_failed", ItemState.DONE, {}),
    EventCase("cancelled", ItemState.CANCELLED, {}),
    EventCase("duplicate", ItemState.QUEUED, {"reason": "hash"}),
    EventCase(
        "rejected",
        None,
        {
            "reason": "unsafe_path",
            "detail": "remote path is not normalised: '/a/../b'",
            "topic": "q4d/seedbox/seedbox1/completed",
            "seedbox": "seedbox1",
            "name": "passwd",
        },
    ),
    EventCase("breaker_open", None, {"seedbox": "seedbox1", "failures": 5, "until": 1.7e9}),
    EventCase(
        "ignored",
        None,
        {
            "seedbox": "seedbox1",
            "event_id": "c9",
            "hash": None,
            "name": "Linux.iso",
            "path": "/home/me/downloads/Linux.iso",
            "category": "keep-remote",
            "rule": "rules[0]",
        },
    ),
    EventCase(
        "events_lost",
        None,
        {"seedbox": "seedbox1", "stream": "k3Xq", "count": 3, "first": 7, "last": 9},
    ),
]
# Keywords of Lifecycle._record that are not fields of the event it writes.
RECORD_KEYWORDS = frozenset({"event", "label", "counters"})

Emitted = tuple[str, bool, frozenset[str]]  # (kind, carries an item, extra fields)


class Forwarder(NamedTuple):
    """A function whose `**extra` become fields of the event it writes, e.g.
    Lifecycle.done(item, size, detail, **extra): its callers name those fields."""

    event: Emitted  # with the fields the function sets itself
    params: frozenset[str]  # its named parameters: not fields of the event
    positional: int  # positional arguments every call passes (tells it from task.done())


def event_written(call: ast.Call) -> tuple[Emitted, set[str]] | None:
    """The event an `event_message("kind", [item], **extra)` or `_record(item, ...,
    event="kind", **extra)` call writes, and the names of the mappings it spreads in."""
    keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
    spread = {k.value.id for k in call.keywords if k.arg is None and isinstance(k.value, ast.Name)}
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = call.args[0] if call.args else None
    if name == "event_message" and isinstance(first, ast.Constant) and isinstance(first.value, str):
        with_item = len(call.args) > 1 or "item" in keywords
        return (first.value, with_item, frozenset(keywords) - {"item"}), spread
    kind = keywords.get("event")
    if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
        return (kind.value, True, frozenset(keywords) - RECORD_KEYWORDS), spread
    return None


def forwarder_of(func: ast.FunctionDef | ast.AsyncFunctionDef, call: ast.Call) -> Forwarder | None:
    """`func` as a Forwarder, when `call` (in its body) spreads its `**extra` into an event."""
    written = event_written(call)
    kwarg = func.args.kwarg
    if written is None or kwarg is None or kwarg.arg not in written[1]:
        return None
    positional = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
    named = {*positional, *(a.arg for a in func.args.kwonlyargs)} - {"self", "cls"}
    required = len(positional) - len(func.args.defaults) - (positional[:1] in (["self"], ["cls"]))
    return Forwarder(written[0], frozenset(named), required)


def emitted_events() -> set[Emitted]:
    """Every event the bridge's code writes, anywhere under q4d_bridge/: its
    `event_message("kind", ...)` and `_record(..., event="kind", ...)` calls, and for
    those that pass on a function's `**extra`, each call of that function."""
    trees = [ast.parse(p.read_text(encoding="utf-8")) for p in sorted(BRIDGE_SOURCE.rglob("*.py"))]
    forwarders: dict[str, Forwarder] = {}
    forwarding: set[int] = set()  # the calls inside forwarders that pass **extra on
    for tree in trees:
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for call in ast.walk(func):
                    if isinstance(call, ast.Call) and (fwd := forwarder_of(func, call)):
                        assert forwarders.get(func.name, fwd) == fwd, f"two {func.name}()"
                        forwarders[func.name] = fwd
                        forwarding.add(id(call))
    assert forwarders, "no event forwarder found (Lifecycle.done): the scan needs updating"
    found: set[Emitted] = set()
    for tree in trees:
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call) or id(call) in forwarding:
                continue
            if (written := event_written(call)) is not None:
                found.add(written[0])
                continue
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            fwd = forwarders.get(name or "")
            if fwd is None or len(call.args) < fwd.positional:
                continue
            passed = frozenset(k.arg for k in call.keywords if k.arg is not None)
            assert len(passed) == len(call.keywords), f"{name}(**...): its event fields unknown"
            kind, with_item, fields = fwd.event
            found.add((kind, with_item, fields | (passed - fwd.params)))
    return found


def test_event_cases_cover_what_the_bridge_emits() -> None:
    """The cases below are exactly the kinds (and extra fields) the bridge's code emits."""
    emitted = emitted_events()
    kinds = {kind for kind, _, _ in emitted}
    # written in lifecycle/machine.py, intake/intake.py and lifecycle/scheduler.py
    assert kinds >= {"queued", "completed", "rejected", "events_lost", "breaker_open"}, emitted
    cases = {(c.kind, c.state is not None, frozenset(c.extra)) for c in EVENTS}
    assert cases == emitted, (
        f"events the bridge emits without a case here: {sorted(emitted - cases, key=str)}; "
        f"cases the bridge no longer emits: {sorted(cases - emitted, key=str)}"
    )


def test_event_kinds_agree() -> None:
    """Home Assistant fires a bus event for item events the bridge sends, and ignores the
    others deliberately."""
    item_kinds = {kind for kind, with_item, _ in emitted_events() if with_item}
    never_sent = set(TRANSFER_EVENTS) - item_kinds
    assert not never_sent, (
        f"the integration fires {sorted(f'{EVENT_TRANSFER_PREFIX}{k}' for k in never_sent)} "
        "for event kinds the bridge never sends with an item"
    )
    unhandled = item_kinds - set(TRANSFER_EVENTS) - set(REFUSED) - NOT_FIRED
    assert not unhandled, (
        f"the bridge sends item events {sorted(unhandled)} that the integration neither "
        "fires nor lists as deliberately ignored"
    )
    stale = NOT_FIRED - item_kinds
    assert not stale, f"NOT_FIRED lists kinds the bridge no longer sends: {sorted(stale)}"
    assert set(REFUSED) <= {kind for kind, _, _ in emitted_events()}
    assert sorted(REFUSED.values()) == sorted(COMPLETION_EVENTS)


def event_payloads(bridge: Bridge) -> list[tuple[EventCase, dict[str, Any]]]:
    """Each case, published by the bridge's Publisher (checked to be on its event topic)."""
    out = []
    for case in EVENTS:
        item = None if case.state is None else bridge_item(case.state, ERRORS.get(case.state))
        message = bridge.publisher.event_message(case.kind, item, **case.extra)
        assert message.topic == bridge.topics.event
        assert not message.retain
        out.append((case, json.loads(message.payload)))
    return out


async def test_events_parse(bridge: Bridge) -> None:
    """Every event the bridge sends decodes, and its item parses to what was sent."""
    for case, sent in event_payloads(bridge):
        data = decode(dumps(sent))
        assert data["event"] == case.kind
        assert isinstance(data["at"], float)
        if case.state is None:
            assert "item" not in data, f"{case.kind}: an item in an event that has none"
            continue
        assert_item(f"event {case.kind}.item", HaItem.from_dict(data["item"]), sent["item"])


# --- items, state, status, command results ------------------------------------------------------


@pytest.mark.parametrize("with_error", [False, True], ids=["no-error", "error"])
@pytest.mark.parametrize("state", list(ItemState), ids=[s.value for s in ItemState])
def test_item_payload_parses(state: ItemState, with_error: bool) -> None:
    """item_payload of an item in each state, with and without an error."""
    error = ("connection", "lftp exit 1: pget: max-retries exceeded") if with_error else None
    sent = item_payload(bridge_item(state, error))
    assert_item(f"item ({state.value})", HaItem.from_payload(dumps(sent)), sent)


async def test_state_snapshot_parses(bridge: Bridge) -> None:
    """The snapshot of a populated bridge, field by field."""
    sent = json.loads(dumps(bridge.state().as_dict()))
    parsed = BridgeState.from_payload(dumps(sent))
    assert_state(parsed, sent)
    # the snapshot really is populated: each check above compared something
    assert {state for state, n in sent["counts"].items() if n} == set(ITEM_STATES)
    assert parsed.total_items == len(bridge.lifecycle.items)
    assert sent["paused"] is True
    assert all(sent["totals"].values()), sent["totals"]
    sb1, sb2 = parsed.seedboxes["sb1"], parsed.seedboxes["sb2"]
    assert sb1.breaker_active and sb1.ssh is not None and sb1.client is None
    assert sb1.ssh.host_key_mismatch, (
        f"the bridge reports a refused host key as {sb1.ssh.error!r}; the integration "
        f"looks for '{HOST_KEY_ERROR}: ...'"
    )
    assert sb2.ssh is None and sb2.client is not None and sb2.client.reachable is True
    # intake refused a completion of sb1 and saw one twice (populate)
    assert (sb1.rejected, sb1.duplicates, sb2.rejected, sb2.duplicates) == (1, 1, 0, 0)
    assert sb1.last_rejection is not None and sb1.last_rejection.reason_code == "malformed"
    assert sb2.last_rejection is None
    assert parsed.destinations["movies"].short_of_space
    assert parsed.destinations["default"].free_space is None
    assert parsed.last_completed is not None
    assert parsed.last_completed.name == "Show.S01E02.mkv"

    # an older bridge called the client `node`: the integration still reads it there
    older = json.loads(dumps(sent))
    for sb_sent in older["seedboxes"].values():
        sb_sent["node"] = sb_sent.pop("client")
    from_older = BridgeState.from_payload(dumps(older))
    for sb_id, sb in parsed.seedboxes.items():
        assert from_older.seedboxes[sb_id].client == sb.client, f"{sb_id}: `node` not read"


async def test_an_item_failed_at_start_up_is_announced(tmp_path: Path) -> None:
    """An unfinished item whose seedbox left the configuration fails when the bridge
    starts (not_configured) like any failed item: a failed event, a FAILED label, and
    totals.failed; the integration reads it as a failed, finished item."""
    first = make_bridge(tmp_path, "q4d", "home")
    try:
        left = {"v": 1, "event_id": "c9", "path": "/data/Left.mkv", "hash": HASH}
        first.intake.on_completion(first.topics.completed("sb2"), dumps(left))
        (item_id,) = first.lifecycle.items
        before = {seq for seq, _ in first.store.outbox()}
    finally:
        first.store.close()
    raw = raw_config(tmp_path, "home")  # sb1 only: sb2 left the configuration
    raw["broker"]["topic_prefix"] = "q4d"
    restarted = Bridge(parse_config(raw), disk_free=disk_free)
    try:
        restarted.recover()
        messages = [m for seq, m in restarted.store.outbox() if seq not in before]
        sent_state = json.loads(dumps(restarted.state().as_dict()))
    finally:
        restarted.store.close()
    topics = restarted.topics
    events = [json.loads(m.payload) for m in messages if m.topic == topics.event]
    assert [(e["event"], e["item"]["id"]) for e in events] == [("failed", item_id)], events
    labels = [json.loads(m.payload) for m in messages if m.topic == topics.label("sb2")]
    assert [(lb["hash"], lb["label"]) for lb in labels] == [(HASH, "FAILED")], labels
    sent = events[0]["item"]
    parsed = HaItem.from_dict(decode(dumps(events[0]))["item"])
    assert_item("not_configured item", parsed, sent)
    assert (parsed.state, parsed.error_code, parsed.finished) == ("failed", "not_configured", True)
    state = BridgeState.from_payload(dumps(sent_state))
    assert state.totals["failed"] == 1 and state.counts["failed"] == 1, state.totals


async def test_status_payload_parses(bridge: Bridge) -> None:
    """status_payload online and offline (the offline one is also the last will)."""
    for state in ("online", "offline"):
        raw = bridge.publisher.status_payload(state)
        assert_status(BridgeStatus.from_payload(raw), json.loads(raw))


def ask(bridge: Bridge, request: dict[str, Any] | bytes) -> bytes:
    """The bridge's answer to one command, as its CommandDesk sends it (exactly one)."""
    answers: list[bytes] = []
    bridge.commands.answer = answers.append
    bridge.commands.handle(request if isinstance(request, bytes) else dumps(request))
    assert len(answers) == 1, f"{request!r} was answered {len(answers)} times"
    return answers[0]


async def test_command_results_parse(bridge: Bridge) -> None:
    """command_result, ok and not ok, as the bridge's CommandDesk answers."""
    some_id = next(iter(bridge.lifecycle.items))
    results = [
        ask(bridge, {"id": "c1", "op": "get_queue"}),
        ask(bridge, {"id": "c2", "op": "set_limits", "args": {"max_concurrent": 2}}),
        command_result("c3", result=None),
        ask(
            bridge,
            {"id": "c4", "op": "set_priority", "args": {"item_id": some_id, "priority": 101}},
        ),
        ask(bridge, b'{"op": "pause"}'),
    ]
    queue, limits, _none, refused, unread = (json.loads(raw) for raw in results)
    assert queue["ok"] and queue["result"]["items"], queue
    assert limits["result"] == {"bandwidth_limit": 10 * MIB, "max_concurrent": 2}, limits
    assert (refused["id"], refused["error"]["code"]) == ("c4", "invalid_args"), refused
    assert (unread["id"], unread["error"]["code"]) == (None, "bad_request"), unread
    for raw in results:
        assert_result(CommandResult.from_payload(raw), json.loads(raw))
    parsed_queue = CommandResult.from_payload(results[0]).result
    for sent in parsed_queue["items"]:
        assert_item("get_queue item", HaItem.from_dict(sent), sent)


# --- through Home Assistant's MQTT, on the bridge's own topics -----------------------------


@pytest.fixture
def mock_config_entry(bridge: Bridge) -> MockConfigEntry:
    """An entry for the bridge under test (replaces conftest's `home` under `q4d`)."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Home media bridge",
        data={CONF_BRIDGE_ID: bridge.topics.bridge_id, CONF_PREFIX: bridge.topics.prefix},
        options={CONF_ITEM_ENTITIES: True, CONF_RETENTION: 60 * 24},
        unique_id=bridge.topics.bridge_id,
    )


def coordinator_of(entry: MockConfigEntry) -> Q4dCoordinator:
    """The entry's coordinator."""
    coordinator = entry.runtime_data.coordinator
    assert isinstance(coordinator, Q4dCoordinator)
    return coordinator


def integration_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the integration logged at WARNING or above (e.g. 'Ignoring invalid ...')."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("custom_components.q4d") and r.levelno >= logging.WARNING
    ]


async def async_publish_retained(hass: HomeAssistant, bridge: Bridge) -> dict[str, Any]:
    """What the bridge publishes on connect: status, every item, the state (returned)."""
    topics = bridge.topics
    async_fire_mqtt_message(hass, topics.status, bridge.publisher.status_payload("online"))
    for item in bridge.lifecycle.items.values():
        async_fire_mqtt_message(hass, topics.item(item.id), dumps(item_payload(item)))
    snapshot = dumps(bridge.state().as_dict())
    async_fire_mqtt_message(hass, topics.state, snapshot)
    await hass.async_block_till_done()
    return dict(json.loads(snapshot))


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
async def test_topics_and_payloads_reach_the_coordinator(
    hass: HomeAssistant,
    mqtt_mock: Any,
    bridge: Bridge,
    setup_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The coordinator subscribes to the bridge's topics and holds what it published."""
    topics = bridge.topics
    subscribed = {call[0][0] for call in mqtt_mock.async_subscribe.call_args_list}
    expected = {
        topics.status,
        topics.state,
        topics.item("+"),
        topics.event,
        topics.command_result,
        topics.config,
    }
    ours = {t for t in subscribed if t.startswith(f"{topics.bridge}/")}
    assert ours == expected, (
        f"the integration subscribes to {sorted(ours)}; the bridge publishes on "
        f"{sorted(expected)} (missing {sorted(expected - ours)}, extra {sorted(ours - expected)})"
    )

    snapshot = await async_publish_retained(hass, bridge)
    coordinator = coordinator_of(setup_entry)
    assert coordinator.online
    assert coordinator.status is not None
    assert_status(coordinator.status, json.loads(bridge.publisher.status_payload("online")))
    items = bridge.lifecycle.items
    assert set(coordinator.items) == set(items)
    for item_id, parsed in coordinator.items.items():
        assert_item(f"item {item_id}", parsed, item_payload(items[item_id]))
    assert coordinator.state is not None
    assert_state(coordinator.state, snapshot)
    assert coordinator.synced, "the state's counts disagree with the items published"

    gone = next(iter(items))
    removal = bridge.publisher.removal_message(gone)
    async_fire_mqtt_message(hass, removal.topic, removal.payload, retain=removal.retain)
    await hass.async_block_till_done()
    assert gone not in coordinator.items, f"the removal on {removal.topic} was not seen"
    assert integration_warnings(caplog) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
async def test_transfer_events_fire(
    hass: HomeAssistant,
    bridge: Bridge,
    setup_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each bridge event on the bridge's event topic: a bus event for the four transfer
    kinds, with the fields the integration takes from the bridge's payload."""
    fired: list[Event[Any]] = []

    @callback
    def _record(event: Event[Any]) -> None:
        if str(event.event_type).startswith(EVENT_TRANSFER_PREFIX):
            fired.append(event)

    hass.bus.async_listen("*", _record)
    await async_publish_retained(hass, bridge)
    sent_events = event_payloads(bridge)
    for _case, sent in sent_events:
        async_fire_mqtt_message(hass, bridge.topics.event, dumps(sent))
        await hass.async_block_till_done()

    expected = [(case, sent) for case, sent in sent_events if case.kind in TRANSFER_EVENTS]
    assert [e.event_type for e in fired] == [
        f"{EVENT_TRANSFER_PREFIX}{case.kind}" for case, _ in expected
    ]
    for event, (case, sent) in zip(fired, expected, strict=True):
        item, data = sent["item"], event.data
        error = item["error"] if case.kind == "failed" else None
        checks = {
            "bridge_id": bridge.topics.bridge_id,
            "item_id": item["id"],
            "name": item["name"],
            "seedbox": item["seedbox"],
            "category": item["category"],
            "destination": item["destination"],
            "destination_path": item["local_path"],
            "size": item["size"],
            "at": sent["at"],
            "error": None if error is None else error["message"],
            "error_code": None if error is None else error["code"],
        }
        if case.kind == "queued":
            checks["retry"] = sent.get("retry", False)
        if case.kind == "completed":
            checks["verified"] = sent.get("verified")
            checks["repaired_pieces"] = sent.get("repaired_pieces")
            checks["steps"] = sent.get("steps")
        if case.kind == "failed":
            checks["step"] = sent.get("step")
        if case.kind in ("completed", "failed"):
            checks["duration"] = round(item["finished_at"] - item["started_at"], 1)
        wrong = {k: (data.get(k), v) for k, v in checks.items() if data.get(k) != v}
        assert not wrong, f"{event.event_type}: (fired, sent) differ for {wrong}"
    assert integration_warnings(caplog) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
async def test_refused_completions_fire(
    hass: HomeAssistant,
    bridge: Bridge,
    setup_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bridge's `rejected` and `duplicate` events fire q4d_completion_* with what the
    bridge's payload says of the seedbox, the torrent and the reason."""
    fired: list[Event[Any]] = []

    @callback
    def _record(event: Event[Any]) -> None:
        if str(event.event_type) in {f"{DOMAIN}_{name}" for name in REFUSED.values()}:
            fired.append(event)

    hass.bus.async_listen("*", _record)
    await async_publish_retained(hass, bridge)
    sent_events = [(c, sent) for c, sent in event_payloads(bridge) if c.kind in REFUSED]
    for _case, sent in sent_events:
        async_fire_mqtt_message(hass, bridge.topics.event, dumps(sent))
        await hass.async_block_till_done()

    assert [e.event_type for e in fired] == [f"{DOMAIN}_{REFUSED[c.kind]}" for c, _ in sent_events]
    for event, (case, sent) in zip(fired, sent_events, strict=True):
        if case.kind == "rejected":
            checks = {
                "seedbox": sent["seedbox"],
                "name": sent["name"],
                "reason": sent["reason"],
                "message": sent["detail"],
                "topic": sent["topic"],
            }
        else:
            item = sent["item"]
            checks = {
                "item_id": item["id"],
                "seedbox": item["seedbox"],
                "name": item["name"],
                "reason": sent["reason"],
            }
        checks |= {"bridge_id": bridge.topics.bridge_id, "at": sent["at"]}
        wrong = {k: (event.data.get(k), v) for k, v in checks.items() if event.data.get(k) != v}
        assert not wrong, f"{event.event_type}: (fired, sent) differ for {wrong}"
    assert integration_warnings(caplog) == []


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
async def test_commands_round_trip(
    hass: HomeAssistant,
    bridge: Bridge,
    setup_entry: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The integration's actions, answered by the bridge's own command handling on the
    bridge's topics: what Home Assistant publishes goes through the bridge's Router to
    its CommandDesk, whose answers go back on the bridge's result topic."""
    received: list[str] = []

    @callback
    def _on_command(msg: mqtt.ReceiveMessage) -> None:
        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
        received.append(msg.topic)
        bridge.router.handle(
            aiomqtt.Message(msg.topic, payload, qos=msg.qos, retain=False, mid=1, properties=None)
        )

    bridge.commands.answer = lambda raw: async_fire_mqtt_message(
        hass, bridge.topics.command_result, raw
    )
    unsubscribe = await mqtt.async_subscribe(hass, bridge.topics.command, _on_command, qos=1)
    try:
        await async_publish_retained(hass, bridge)
        with (
            patch("custom_components.q4d.bridge_client.COMMAND_TIMEOUT", 2.0),
            patch("custom_components.q4d.services.RESCAN_TIMEOUT", 2.0),
        ):
            await _async_check_commands(hass, bridge)
    finally:
        unsubscribe()
        await bridge.commands.settled()
    assert received, "no command reached the bridge's command topic"
    assert integration_warnings(caplog) == []


async def _async_check_commands(hass: HomeAssistant, bridge: Bridge) -> None:
    """get_queue (filtered, whole and a page), set_priority, a refused retry, and a rescan (which
    the bridge answers once the torrent clients replied)."""
    items = bridge.lifecycle.items
    wanted = ["queued", "failed"]
    response = await hass.services.async_call(
        DOMAIN, "get_queue", {"states": wanted}, blocking=True, return_response=True
    )
    assert response is not None
    expected = [
        HaItem.from_dict(sent).summary()
        for sent in map(
            json.loads, bridge.controller.get_queue([ItemState(s) for s in wanted], 500, 0).items
        )
    ]
    assert expected and response["items"] == expected
    everything = await hass.services.async_call(
        DOMAIN, "get_queue", {}, blocking=True, return_response=True
    )
    assert everything is not None
    listed = everything["items"]
    assert isinstance(listed, list)
    assert len(listed) == len(items), "the integration skipped items of the queue"
    assert (everything["total"], everything["next_offset"]) == (len(items), None)
    page = await hass.services.async_call(
        DOMAIN, "get_queue", {"limit": 2, "offset": 1}, blocking=True, return_response=True
    )
    assert page == {"items": listed[1:3], "total": len(items), "next_offset": 3}

    album = next(i for i in items.values() if i.name == "Album (2020)")
    response = await hass.services.async_call(
        DOMAIN,
        "set_priority",
        {"item_id": album.id, "priority": 42},
        blocking=True,
        return_response=True,
    )
    assert response == {"item": album.id}
    assert album.priority == 42

    # refused before it is sent, as the bridge would: a queued item cannot be retried
    with pytest.raises(ServiceValidationError) as refused:
        await hass.services.async_call(
            DOMAIN, "retry", {"item_id": album.id}, blocking=True, return_response=True
        )
    assert refused.value.translation_key == "retry_unfinished"
    assert refused.value.translation_placeholders == {"name": "Album (2020)"}

    response = await hass.services.async_call(
        DOMAIN, "rescan", {}, blocking=True, return_response=True
    )
    assert response == {
        "seedboxes": {
            "sb1": {"enqueued": [], "error": "no torrent client configured"},
            "sb2": {"enqueued": [], "error": None},
        },
        "count": 0,
        "names": [],
    }, response


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
async def test_config_flow_finds_the_bridge(
    hass: HomeAssistant, mqtt_mock: Any, bridge: Bridge
) -> None:
    """Discovery of the bridge's status topic, and the manual step's wait for it."""
    topics = bridge.topics
    status = bridge.publisher.status_payload("online")
    with patch("custom_components.q4d.async_setup_entry", return_value=True):
        result = await hass.config_entries.flow.async_init(
            DOMAIN,
            context={"source": SOURCE_MQTT},
            data=MqttServiceInfo(
                topic=topics.status,
                payload=status.decode(),
                qos=1,
                retain=True,
                subscribed_topic=f"{DEFAULT_PREFIX}/bridge/+/status",
                timestamp=0.0,
            ),
        )
        assert result["type"] is FlowResultType.FORM, result
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    assert result["data"] == {CONF_BRIDGE_ID: topics.bridge_id, CONF_PREFIX: topics.prefix}

    with patch("custom_components.q4d.config_flow.STATUS_TIMEOUT", 2.0):
        task = hass.async_create_task(
            config_flow.async_read_status(hass, topics.prefix, topics.bridge_id)
        )
        for _ in range(100):
            await asyncio.sleep(0)
            if topics.status in {c[0][0] for c in mqtt_mock.async_subscribe.call_args_list}:
                break
        async_fire_mqtt_message(hass, topics.status, status)
        found = await task
    assert found is not None, f"the manual step did not hear {topics.status}"
    assert_status(found, json.loads(status))


# What a user types in the manual step is the bridge's `broker.topic_prefix` as written
# in its configuration (docs/home-assistant.md).
@pytest.mark.parametrize(
    "configured",
    ["q4d", "/home/q4d/", "/my home/q4d/"],
    ids=["plain", "slashes", "inner-space"],
)
async def test_manual_setup_follows_any_prefix_the_bridge_accepts(
    hass: HomeAssistant, mqtt_mock: Any, tmp_path: Path, configured: str
) -> None:
    """Any prefix the bridge's configuration accepts can be entered in the manual step,
    which then finds the bridge on the topics it really publishes on."""
    raw = raw_config(tmp_path, "home")
    raw["broker"]["topic_prefix"] = configured
    bridge = Bridge(parse_config(raw))
    bridge.store.close()
    topics = bridge.topics
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    before = mqtt_mock.async_subscribe.call_count
    with (
        patch("custom_components.q4d.async_setup_entry", return_value=True),
        patch("custom_components.q4d.config_flow.STATUS_TIMEOUT", 0.5),
    ):
        task = hass.async_create_task(
            hass.config_entries.flow.async_configure(
                result["flow_id"], {CONF_BRIDGE_ID: "home", CONF_PREFIX: configured}
            )
        )
        for _ in range(100):  # the flow subscribes to what it takes for the status topic
            await asyncio.sleep(0)
            if mqtt_mock.async_subscribe.call_count > before:
                break
        async_fire_mqtt_message(hass, topics.status, bridge.publisher.status_payload("online"))
        result = await task
    assert result["type"] is FlowResultType.CREATE_ENTRY, (
        f"bridge topic_prefix {configured!r} publishes on {topics.status!r}; the config flow "
        f"answered {result.get('errors')}"
    )
    assert result["data"] == {CONF_BRIDGE_ID: "home", CONF_PREFIX: topics.prefix}


@pytest.mark.parametrize(
    "configured",
    ["/", "//", " q4d", "q4d ", "/ q4d/", "home/q4d/ "],
    ids=["only-a-slash", "only-slashes", "leading-space", "trailing-space",
         "space-inside-slashes", "space-after-slash"],
)  # fmt: skip
def test_bridge_refuses_a_prefix_the_config_flow_cannot_follow(
    tmp_path: Path, configured: str
) -> None:
    """A prefix that is empty once its slashes are gone, or that starts or ends with a
    space there, is refused by the bridge: the config flow strips spaces and slashes (and
    refuses an empty prefix), so no entry could follow a bridge publishing under it."""
    raw = raw_config(tmp_path, "home")
    raw["broker"]["topic_prefix"] = configured
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert [e for e in refused.value.errors if e.startswith("broker.topic_prefix: ")], (
        f"topic_prefix {configured!r}: the bridge refused {refused.value.errors}"
    )
