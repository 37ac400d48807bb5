"""What the bridge refused, made visible: each rejected completion and each duplicate is
announced with its seedbox (and the torrent's name when the event said it), counted for
its seedbox in the state snapshot with the last rejection's reason and message, and
those counts survive a restart. Through the real bridge, Mosquitto and sshd."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.config.loader import parse_config
from q4d_bridge.intake.decode import Rejected, accept, decode
from q4d_bridge.models import CompletionEvent
from q4d_bridge.mqtt.topics import Topics
from q4d_bridge.persistence.store import Store

from tests.bridge.test_e2e import Env, make_file, running_bridge
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import publish
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(90)
HASH = "ab" * 20
# In a payload the bridge refuses: it must never be echoed (events, state).
MARKER = "do-not-echo-7f3a"


def published_state(env: Env, since: float) -> dict[str, Any]:
    """The latest state snapshot this run published (not a retained one from before)."""
    snapshots = [m.json() for m in env.recorder.on("q4d/bridge/test/state") if m.payload]
    fresh = [s for s in snapshots if s["updated_at"] >= since]
    return fresh[-1] if fresh else {}


async def test_rejections_and_duplicates_are_announced_counted_and_kept(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    started = time.time()
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        make_file(env.remote / "Film.mkv", 2000)
        await env.complete("Film.mkv", HASH, event_id="good")
        await env.recorder.wait_for(lambda: env.recorder.events("queued"), 15, "queued")
        await env.complete("Film.mkv", HASH, event_id="good")  # redelivered: a duplicate
        unsafe_event = {"v": 1, "event_id": "e-unsafe", "path": "/etc/passwd", "name": "passwd"}
        ghost_event = {"v": 1, "event_id": "e-ghost", "path": str(env.remote / "x")}
        await publish(
            env.port,
            [
                # outside the seedbox's remote_roots
                ("q4d/seedbox/sb1/completed", json.dumps(unsafe_event).encode()),
                ("q4d/seedbox/sb1/completed", f"not json {MARKER}".encode()),
                # a seedbox this bridge does not serve: announced, not counted for one
                ("q4d/seedbox/ghost/completed", json.dumps(ghost_event).encode()),
            ],
        )
        rec = env.recorder
        await rec.wait_for(lambda: len(rec.events("rejected")) == 3, 15, "3 rejected events")
        unsafe, malformed, ghost = rec.events("rejected")
        assert {k: unsafe[k] for k in ("reason", "seedbox", "name", "topic")} == {
            "reason": "unsafe_path", "seedbox": "sb1", "name": "passwd",
            "topic": "q4d/seedbox/sb1/completed",
        }  # fmt: skip
        assert "/etc/passwd" in unsafe["detail"] and "item" not in unsafe
        assert (malformed["reason"], malformed["seedbox"], malformed["name"]) == (
            "malformed", "sb1", None,
        )  # fmt: skip
        assert (ghost["reason"], ghost["seedbox"], ghost["name"]) == (
            "unknown_seedbox", "ghost", None,
        )  # fmt: skip
        (duplicate,) = await rec.wait_for(lambda: rec.events("duplicate"), 15, "duplicate")
        assert duplicate["reason"] == "event_id"
        assert (duplicate["item"]["seedbox"], duplicate["item"]["name"]) == ("sb1", "Film.mkv")

        def counted() -> dict[str, Any]:
            sb1 = published_state(env, started).get("seedboxes", {}).get("sb1", {})
            return sb1 if sb1.get("rejected") == 2 and sb1.get("duplicates") == 1 else {}

        sb1 = await rec.wait_for(counted, 15, "the seedbox's counts in the state")
        last = sb1["last_rejection"]
        assert (last["reason"], last["message"]) == ("malformed", malformed["detail"])
        assert last["at"] == pytest.approx(malformed["at"], abs=0.01)
        totals = published_state(env, started)["totals"]
        assert (totals["rejected"], totals["duplicates"], totals["received"]) == (3, 1, 1)
        assert not any(MARKER.encode() in m.payload for m in rec.on("q4d/bridge/test/"))
        counters = env.bridge.store.counters()
        assert (counters["rejections.sb1"], counters["duplicates.sb1"]) == (2, 1)
        assert "rejections.ghost" not in counters

    restarted = time.time()
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        sb1 = (await env.recorder.wait_for(
            lambda: published_state(env, restarted), 15, "the state after the restart"
        ))["seedboxes"]["sb1"]  # fmt: skip
        assert (sb1["rejected"], sb1["duplicates"]) == (2, 1)
        assert sb1["last_rejection"] == last
        # and counting goes on from there
        await env.complete("Film.mkv", HASH, event_id="good")
        await env.recorder.wait_for(
            lambda: published_state(env, restarted)["seedboxes"]["sb1"]["duplicates"] == 2,
            15,
            "a second duplicate counted",
        )


def test_every_rejection_names_its_seedbox(tmp_path: Path) -> None:
    """Classic `Down` lines are the classic seedbox's; a torrent reconciliation refuses
    names its seedbox and name; a topic that names no seedbox gives none."""
    raw = bridge_config(
        tmp_path / "data", tmp_path / "lib", key=tmp_path / "k", known_hosts=tmp_path / "kh",
        remote_root="/srv", classic=True,
    )  # fmt: skip
    (tmp_path / "k").write_text("key")
    (tmp_path / "kh").write_text("hosts")
    config = parse_config(raw)
    topics = Topics(config.broker.topic_prefix, config.bridge_id)
    kw: dict[str, Any] = {
        "topics": topics,
        "classic": config.classic,
        "seedboxes": config.seedboxes,
        "routing": config.routing,
    }
    assert decode("Down", b"only one field", **kw) == Rejected(
        "malformed", "expected PATH<TAB>HASH<TAB>TYPE, got 1 field(s)", "sb1"
    )
    down = decode("Down", f"/etc/shadow\t{HASH}\tT".encode(), **kw)
    assert isinstance(down, Rejected)
    assert (down.reason, down.seedbox, down.name) == ("unsafe_path", "sb1", "shadow")
    assert decode("q4d/elsewhere", b"{}", **kw) == Rejected(
        "unknown_topic", "not a completion topic: 'q4d/elsewhere'"
    )
    found = CompletionEvent(event_id="reconcile-1", seedbox="sb1", path="/tmp/x", name="x")
    outcome = accept(found, seedboxes=config.seedboxes, routing=config.routing)
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.seedbox, outcome.name) == ("unsafe_path", "sb1", "x")
    huge = CompletionEvent(event_id="r2", seedbox="sb1", path="/srv/y", name="y", size=-1)
    outcome = accept(huge, seedboxes=config.seedboxes, routing=config.routing)
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.seedbox, outcome.name) == ("wrong_type", "sb1", "y")


def test_last_rejection_is_kept_in_the_store(tmp_path: Path) -> None:
    """Per seedbox: the newest rejection wins, one without a seedbox is counted in all
    alone, and pruning the rejected payloads keeps the last rejection."""
    store = Store(tmp_path / "q.db")
    store.record_rejected("t", b"a", "malformed", "not JSON", now=100.0, seedbox="sb1")
    store.record_rejected("t", b"b", "unsafe_path", "outside", now=200.0, seedbox="sb1")
    store.record_rejected("t", b"c", "unknown_topic", "no seedbox", now=300.0)
    store.prune(retention=10, now=1000.0)
    store.close()
    reopened = Store(tmp_path / "q.db")
    assert reopened.rejected() == []
    assert reopened.last_rejections() == {
        "sb1": {"reason": "unsafe_path", "message": "outside", "at": 200.0}
    }
    counters = reopened.counters()
    assert (counters["rejected"], counters["rejections.sb1"]) == (3, 2)
