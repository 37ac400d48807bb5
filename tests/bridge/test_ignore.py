"""Ignore rules at intake, through the real bridge and Mosquitto: what an ignore rule
matches is left on the seedbox (no item, no label), recorded, counted once however
often it is announced, announced as an `ignored` event and counted in the state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.config.loader import parse_config
from q4d_bridge.intake.decode import Accepted, accept
from q4d_bridge.models import CompletionEvent
from q4d_bridge.persistence.ignored import record_ignored
from q4d_bridge.persistence.store import Store

from tests.bridge.test_e2e import Env, running_bridge
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import publish
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(60)
HASH = "ab" * 20
IGNORE_FIRST = [
    {"ignore": True, "match": [{"field": "category", "is": "keep-remote"}]},
    {"destination": "tv", "match": [{"field": "category", "is": "tv"}]},
]


def state_of(env: Env) -> dict[str, Any]:
    snapshots = [m.json() for m in env.recorder.on("q4d/bridge/test/state") if m.payload]
    return snapshots[-1] if snapshots else {}


async def test_ignored_completion_is_recorded_counted_and_announced(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=IGNORE_FIRST) as env:
        await env.complete("Film.mkv", HASH, event_id="e1", category="keep-remote")
        (event,) = await env.recorder.wait_for(lambda: env.recorder.events("ignored"), 15)
        assert {k: event[k] for k in ("seedbox", "event_id", "hash", "name", "rule")} == {
            "seedbox": "sb1", "event_id": "e1", "hash": HASH, "name": "Film.mkv",
            "rule": "rules[0]",
        }  # fmt: skip
        assert event["path"] == str(env.remote / "Film.mkv") and "item" not in event
        # the same event resent, and another event (reconciliation's, say) of the torrent
        await env.complete("Film.mkv", HASH, event_id="e1", category="keep-remote")
        await env.complete("Film.mkv", HASH, event_id="e2", category="keep-remote")
        # a routed completion after them: once it is queued, they were handled (in order)
        await env.complete("Show.mkv", "cd" * 20, event_id="e3", category="tv")
        await env.recorder.wait_for(lambda: env.recorder.events("queued"), 15, "queued")
        await env.recorder.wait_for(
            lambda: state_of(env).get("totals", {}).get("ignored") == 1, 15, "state"
        )
        counters = env.bridge.store.counters()
        assert (counters["ignored"], counters["ignored.sb1"], counters["received"]) == (1, 1, 1)
        assert state_of(env)["seedboxes"]["sb1"]["ignored"] == 1
        assert len(env.recorder.events("ignored")) == 1
        assert not env.recorder.events("rejected") and not env.recorder.events("duplicate")
        assert [i.name for i in env.bridge.lifecycle.items.values()] == ["Show.mkv"]
        labels = [m.json() for m in env.recorder.on("q4d/seedbox/sb1/label")]
        assert labels and all(label["hash"] == "cd" * 20 for label in labels)
        with env.bridge.store.transaction() as db:
            rows = [dict(r) for r in db.execute("SELECT seedbox, hash, name, rule FROM ignored")]
        assert rows == [{"seedbox": "sb1", "hash": HASH, "name": "Film.mkv", "rule": "rules[0]"}]


async def test_ignored_classic_down_gets_no_label(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    rules = [{"ignore": True, "match": [{"field": "type", "is": "X"}]}]
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", classic=True, rules=rules
    ) as env:
        line = f"{env.remote / 'Remote.Only'}\t{HASH}\tX".encode()
        await publish(env.port, [("Down", line), ("Down", line)])
        await env.recorder.wait_for(lambda: env.recorder.events("ignored"), 15, "ignored")
        await env.recorder.wait_for(
            lambda: state_of(env).get("totals", {}).get("ignored") == 1, 15, "state"
        )
        assert env.bridge.store.counters()["ignored"] == 1
        assert not env.recorder.on("Label") and not env.recorder.on("q4d/seedbox/sb1/label")
        assert not env.bridge.lifecycle.items


def test_reconciled_torrent_is_ignored_once(tmp_path: Path) -> None:
    """An ignored torrent that reconciliation finds again on every pass (no item knows
    it) is not counted again, whatever its event id."""
    raw = bridge_config(
        tmp_path / "data", tmp_path / "lib", key=tmp_path / "k", known_hosts=tmp_path / "kh",
        remote_root="/srv", rules=IGNORE_FIRST,
    )  # fmt: skip
    (tmp_path / "k").write_text("key")
    (tmp_path / "kh").write_text("hosts")
    config = parse_config(raw)
    store = Store(tmp_path / "q.sqlite3")
    recorded = []
    for event_id in ("reconcile-1", "reconcile-2", "reconcile-1"):
        event = CompletionEvent(
            event_id=event_id, seedbox="sb1", path="/srv/Film", name="Film", category="keep-remote"
        )
        outcome = accept(event, seedboxes=config.seedboxes, routing=config.routing)
        assert isinstance(outcome, Accepted) and outcome.resolution.ignore
        rule = config.routing.rule_name(outcome.resolution.rule)
        recorded.append(record_ignored(store, outcome.event, rule))
    assert recorded == [True, False, False]
    assert store.counters() == {"ignored": 1, "ignored.sb1": 1}
