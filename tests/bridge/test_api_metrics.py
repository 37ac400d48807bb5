"""/metrics, /health and /ready on aiohttp's test server (127.0.0.1), scraped and read
back with prometheus_client's own parsers: first on a bridge whose transfers are
scripted (no daemon), then on the running bridge with Mosquitto, sshd and a real
qBittorrent, the values held against the store and the state; /ready through a broker
outage."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families
from q4d_bridge.api import health, management
from q4d_bridge.api import metrics as api_metrics
from q4d_bridge.api.metrics import Metrics
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.dispatch.requests import RequestState
from q4d_bridge.lifecycle import runner
from q4d_bridge.models import ItemState
from q4d_bridge.persistence.store import Store
from q4d_bridge.transfer.errors import ErrorCode, TransferError
from q4d_bridge.transfer.pipeline import Landed

from tests.bridge.test_e2e import make_file, running_bridge
from tests.bridge.test_lifecycle import Script, queue, until
from tests.bridge.test_nodes import command
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import publish
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.services import Mosquitto, SshServer
from tests.helpers.torrents import random_file, torrent_of

pytestmark = pytest.mark.timeout(180)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
METRICS_DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


# --- serving the parts as the API server will ----------------------------------------


def metrics_for(bridge: Bridge) -> Metrics:
    metrics = Metrics(
        state=bridge.state,
        counters=bridge.store.counters,
        requests=bridge.records.counts,
        mqtt_connected=bridge.connected.is_set,
        seedboxes=bridge.config.seedboxes,
    )
    bridge.lifecycle.observers.append(metrics.item_changed)
    return metrics


@contextlib.asynccontextmanager
async def served(bridge: Bridge, *, admin_key: str | None = None) -> AsyncIterator[TestClient]:
    """The metrics, health and management routes of `bridge` in one app on 127.0.0.1."""
    metrics = metrics_for(bridge)
    app = web.Application(middlewares=[metrics.middleware])
    app.add_routes(api_metrics.routes(metrics))
    app.add_routes(
        health.routes(
            mqtt_connected=bridge.connected.is_set,
            store_writable=health.store_write_check(bridge.store),
        )
    )
    app.add_routes(management.routes(bridge.dispatcher, admin_key=admin_key))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def scrape(client: TestClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("text/plain; version=") and "charset=utf-8" in content_type
    families = list(text_string_to_metric_families(await response.text()))
    for family in families:
        assert family.name.startswith("q4d_") and family.documentation, family.name
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in families
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scraped_until(
    client: TestClient, check: Callable[[Samples], bool], what: str, timeout: float = 30
) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(client)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


# --- a bridge with its transfers scripted: no daemon --------------------------------


@pytest.fixture
async def scripted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Bridge, Script]]:
    script = Script()
    monkeypatch.setattr(runner, "run_transfer", script)
    key = tmp_path / "key"
    key.write_text("k")
    raw = bridge_config(
        tmp_path / "data", tmp_path / "lib", key=key, known_hosts=key, remote_root="/r"
    )
    raw["seedboxes"][0]["hook_flush"] = ""  # no SSH link to hold
    bridge = Bridge(parse_config(raw))
    task = asyncio.create_task(bridge.scheduler.run(bridge.runner.launch))
    try:
        yield bridge, script
    finally:
        task.cancel()
        await bridge.runner.stop()
        bridge.store.close()


async def test_metrics_follow_the_queue_and_the_store(scripted: tuple[Bridge, Script]) -> None:
    bridge, script = scripted
    async with served(bridge) as client:
        fresh = await scrape(client)
        for state in ItemState:
            assert value(fresh, "q4d_items", state=state.value) == 0
        assert value(fresh, "q4d_mqtt_connected") == 0
        assert value(fresh, "q4d_transfer_duration_seconds_count", seedbox="sb1") == 0
        assert value(fresh, "q4d_transferred_bytes_total") == 0
        assert value(fresh, "q4d_seedbox_breaker_open", seedbox="sb1") == 0
        assert value(fresh, "q4d_dispatch_requests", state="landed") == 0
        # no torrent client configured: no client series at all
        assert not [key for key in fresh if key[0].startswith(("q4d_client", "q4d_dispatch_s"))]

        first, second, third = queue(bridge, 3)
        await until(lambda: len(script.attempts) == 3)
        script.end(first.id, Landed(1000, "pieces"))
        script.end(second.id, Landed(2500, "size"))
        script.end(third.id, TransferError(ErrorCode.REMOTE_MISSING, "gone from the seedbox"))
        await until(lambda: third.state is ItemState.FAILED and second.state is ItemState.DONE)
        bridge.store.record_rejected("q4d/seedbox/sb1/completed", b"{", "malformed", "not JSON")
        bridge.store.incr("duplicates")

        samples = await scrape(client)
        counters = bridge.store.counters()
        assert value(samples, "q4d_items", state="done") == 2
        assert value(samples, "q4d_items", state="failed") == 1
        assert value(samples, "q4d_items", state="queued") == 0
        assert value(samples, "q4d_items_completed_total") == counters["completed"] == 2
        assert value(samples, "q4d_items_failed_total") == counters["failed"] == 1
        assert (
            value(samples, "q4d_transferred_bytes_total") == counters["bytes_transferred"] == 3500
        )
        assert value(samples, "q4d_events_received_total") == counters["received"] == 3
        assert value(samples, "q4d_events_rejected_total", reason="malformed") == 1
        assert value(samples, "q4d_events_duplicate_total") == 1
        took = [
            i.finished_at - i.started_at for i in (first, second) if i.finished_at and i.started_at
        ]
        assert value(samples, "q4d_transfer_duration_seconds_count", seedbox="sb1") == 2
        assert value(samples, "q4d_transfer_duration_seconds_sum", seedbox="sb1") == pytest.approx(
            sum(took)
        )
        assert value(samples, "q4d_transfer_duration_seconds_bucket", seedbox="sb1", le="1.0") == 2

        # a later change of a landed item is not a second landing
        bridge.lifecycle.prioritised(first, 5)
        again = await scrape(client)
        assert value(again, "q4d_transfer_duration_seconds_count", seedbox="sb1") == 2

        assert (await client.get("/no/such/page")).status == 404
        assert (await client.request("PROPFIND", "/metrics")).status == 405
        counted = await scrape(client)  # counted once answered: the three before this one
        answered = {
            (dict(labels)["method"], dict(labels)["endpoint"], dict(labels)["status"]): n
            for (name, labels), n in counted.items()
            if name == "q4d_api_requests_total"
        }
        assert answered == {
            ("GET", "/metrics", "200"): 3,
            ("GET", "unmatched", "404"): 1,
            ("other", "unmatched", "405"): 1,
        }
        assert value(counted, "q4d_api_request_duration_seconds_count", endpoint="/metrics") == 3

        only = await client.get("/metrics", params={"name[]": "q4d_items"})
        assert {f.name for f in text_string_to_metric_families(await only.text())} == {"q4d_items"}

        # what a Prometheus server asks for: OpenMetrics, read by the strict parser
        response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        names = {
            f.name for f in openmetrics_parser.text_string_to_metric_families(await response.text())
        }
        assert {"q4d_items", "q4d_transferred_bytes", "q4d_transfer_duration_seconds"} <= names


def documented() -> dict[str, tuple[str, str]]:
    """docs/metrics.md's tables: each metric's name → (type, its labels column)."""
    rows = re.findall(r"^\| `(q4d_\w+)` \| (\w+) \|([^|]*)\|", METRICS_DOCS.read_text(), re.M)
    return {name: (kind, labels) for name, kind, labels in rows}


async def test_the_docs_list_every_metric_and_its_states(
    scripted: tuple[Bridge, Script],
) -> None:
    """docs/metrics.md names every series the bridge exports, with its type, and no
    other; the state labels are the queue's and the requests' own."""
    bridge, _ = scripted
    async with served(bridge) as client:
        await client.get("/metrics")  # so that the API's own metrics have a series
        response = await client.get("/metrics")
        families = list(text_string_to_metric_families(await response.text()))
    # (the text format's `_created` series come as gauges of their own: documented apart)
    exported = {
        f.name + ("_total" if f.type == "counter" else ""): f.type
        for f in families
        if not f.name.endswith("_created")
    }
    docs = documented()
    assert {name: kind for name, (kind, _) in docs.items()} == exported
    for state in ItemState:
        assert f"`{state.value}`" in docs["q4d_items"][1], state
    for request_state in RequestState:
        assert f"`{request_state.value}`" in docs["q4d_dispatch_requests"][1], request_state


async def test_health_and_the_store_check(tmp_path: Path) -> None:
    store = Store(tmp_path / "q4d.sqlite3")
    connected = asyncio.Event()
    app = web.Application()
    app.add_routes(
        health.routes(
            mqtt_connected=connected.is_set, store_writable=health.store_write_check(store)
        )
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/health")).status == 200
        down = await client.get("/ready")
        assert down.status == 503
        body = await down.json()
        assert (body["ready"], body["failed"]) == (False, ["mqtt"])
        assert body["checks"]["store"] == {"ok": True}
        assert store.get_setting(health.READY_PROBE_SETTING) > 0  # it really wrote

        connected.set()
        up = await client.get("/ready")
        assert up.status == 200 and (await up.json())["failed"] == []

        store.close()
        broken = await client.get("/ready")
        assert broken.status == 503
        body = await broken.json()
        assert (
            body["failed"] == ["store"] and "cannot be written" in body["checks"]["store"]["error"]
        )
        assert (await client.get("/health")).status == 200


# --- the running bridge with real daemons ---------------------------------------------


async def test_metrics_of_the_running_bridge(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    with QBittorrent(tmp_path / "qbt") as qbt:
        client_config = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                         "password": qbt.password, "poll_interval": 1, "min_free": 0}  # fmt: skip
        async with (
            running_bridge(tmp_path, mosquitto, sshd, engine="sftp",
                           seedbox={"client": client_config, "reconcile": {"interval": 0}}) as env,
            served(env.bridge) as client,
        ):  # fmt: skip

            def scored(s: Samples) -> bool:
                client_state = env.bridge.state().seedboxes["sb1"].client or {}
                score = client_state["dispatch"]["score"]
                return (
                    isinstance(score, float)
                    and value(s, "q4d_dispatch_score", seedbox="sb1") == score
                )

            # the score moves with the free space each poll reports: compared until a scrape
            # and the state agree
            up = await scraped_until(client, scored, "the client polled and scored")
            assert value(up, "q4d_client_reachable", seedbox="sb1", type="qbittorrent") == 1
            assert value(up, "q4d_dispatch_eligible", seedbox="sb1") == 1
            assert value(up, "q4d_mqtt_connected") == 1

            make_file(env.remote / "One.Film.2024.mkv", 1_500_000, seed=1)
            make_file(env.remote / "Two.Show.S01E01.mkv", 700_000, seed=2)
            await env.complete("One.Film.2024.mkv", "a" * 40, category="movies")
            await env.complete("Two.Show.S01E01.mkv", "b" * 40, category="tv")
            await env.wait_settled(2)
            await env.complete("Two.Show.S01E01.mkv", "b" * 40, category="tv", event_id="again")
            await publish(env.port, [("q4d/seedbox/sb1/completed", b"not json")])
            samples = await scraped_until(
                client, lambda s: value(s, "q4d_events_rejected_total", reason="malformed") == 1
                and value(s, "q4d_events_duplicate_total") == 1, "the duplicate and the rejection",
            )  # fmt: skip
            counters = env.bridge.store.counters()
            state = env.bridge.state()
            assert value(samples, "q4d_items", state="done") == state.counts["done"] == 2
            assert value(samples, "q4d_transferred_bytes_total") == counters["bytes_transferred"]
            assert counters["bytes_transferred"] == 2_200_000
            assert value(samples, "q4d_events_received_total") == counters["received"] == 2
            done = list(env.bridge.lifecycle.items.values())
            took = sum((i.finished_at or 0) - (i.started_at or 0) for i in done)
            assert value(samples, "q4d_transfer_duration_seconds_count", seedbox="sb1") == 2
            assert value(
                samples, "q4d_transfer_duration_seconds_sum", seedbox="sb1"
            ) == pytest.approx(took)

            # adds: one placed, one refused as a duplicate; the requests by state
            payload = random_file(tmp_path / "made" / "Three.Film.2023.mkv", 200_000, seed=3)
            torrent = base64.b64encode(torrent_of(payload)).decode()
            assert (await command(env, "add", torrent=torrent, paused=True))["ok"]
            assert (await command(env, "add", torrent=torrent))["error"]["code"] == "duplicate"
            samples = await scrape(client)
            assert value(samples, "q4d_dispatch_decisions_total", outcome="added") == 1
            assert value(samples, "q4d_dispatch_decisions_total", outcome="duplicate") == 1
            by_state = {state: value(samples, "q4d_dispatch_requests", state=state)
                        for state in env.bridge.records.counts()}  # fmt: skip
            # the tracker may have seen it on the client already
            assert {state for state, n in by_state.items() if n} <= {"added", "downloading"}
            assert sum(n or 0 for n in by_state.values()) == 1

            # the client's daemon stops: unreachable at its next poll, and not scored
            await asyncio.to_thread(qbt.stop)
            down = await scraped_until(
                client, lambda s: value(s, "q4d_client_reachable", seedbox="sb1", type="qbittorrent") == 0,
                "the client seen unreachable",
            )  # fmt: skip
            assert value(down, "q4d_dispatch_eligible", seedbox="sb1") == 0
            assert value(down, "q4d_dispatch_score", seedbox="sb1") is None


async def test_ready_follows_the_broker(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    raw = bridge_config(
        tmp_path / "data", tmp_path / "library", key=sshd.client_key, known_hosts=sshd.known_hosts,
        broker_port=mosquitto.port, ssh_port=sshd.port, user=sshd.user,
    )  # fmt: skip
    bridge = Bridge(parse_config(raw))
    async with served(bridge) as client:

        async def ready_is(status: int, what: str) -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while (response := await client.get("/ready")).status != status:
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.1)
            return dict(await response.json())

        assert (await ready_is(503, "not ready before the bridge runs"))["failed"] == ["mqtt"]
        task = asyncio.create_task(bridge.run())
        try:
            await ready_is(200, "ready once connected")
            await asyncio.to_thread(mosquitto.stop)
            down = await ready_is(503, "not ready without the broker")
            assert down["checks"]["mqtt"]["ok"] is False and down["checks"]["store"]["ok"] is True
            assert (await client.get("/health")).status == 200
            assert value(await scrape(client), "q4d_mqtt_connected") == 0
            await asyncio.to_thread(mosquitto.start)
            await ready_is(200, "ready again after the broker came back")
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)
