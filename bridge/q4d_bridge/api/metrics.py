"""Prometheus metrics (docs/metrics.md) in a registry of the bridge's own.

Most figures are read when Prometheus scrapes, from what the bridge already keeps (the
state snapshot, the store's counters, the requests), so they cannot drift from it and
survive restarts. Only what happens and is then gone is observed as it happens: how long
a landed transfer took, and the API's requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..models import Item, ItemState
from ..persistence.requests import OUTCOME_COUNTER
from ..state import BridgeState

REJECTED_COUNTER = "rejected."  # + the reason: the store counts rejections per reason
# an add's final outcomes (docs/dispatch.md), shown from 0 so a first one makes a rate
DECISION_OUTCOMES = ("added", "failed", "duplicate", "no_eligible_client")
# A landed transfer takes seconds (an episode on a fast link) to hours (a season).
TRANSFER_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
UNMATCHED = "unmatched"  # the endpoint label of a request no route matched
# any other method (the parser knows WebDAV's and more) is counted as "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BridgeCollector(Collector):
    """The bridge's figures, read from its parts at each scrape (on the event loop,
    where those parts live: aiohttp's handler collects synchronously)."""

    def __init__(
        self,
        *,
        state: Callable[[], BridgeState],
        counters: Callable[[], Mapping[str, int]],
        requests: Callable[[], Mapping[str, int]],
        mqtt_connected: Callable[[], bool],
    ) -> None:
        self.state = state
        self.counters = counters
        self.requests = requests
        self.mqtt_connected = mqtt_connected

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        counters = self.counters()
        yield from _queue(state)
        yield from _totals(state, counters)
        yield from _seedboxes(state)
        requests = GaugeMetricFamily(
            "q4d_dispatch_requests",
            "Add requests by state (kept, so landed ones too)",
            labels=["state"],
        )
        for name, count in self.requests().items():
            requests.add_metric([name], count)
        yield requests
        yield _gauge("q4d_mqtt_connected", "1 while the bridge is connected to the MQTT broker",
                     int(self.mqtt_connected()))  # fmt: skip


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _queue(state: BridgeState) -> Iterator[Metric]:
    items = GaugeMetricFamily(
        "q4d_items", "Queue items by state (finished ones until pruned)", labels=["state"]
    )
    for item_state in ItemState:
        items.add_metric([item_state.value], state.counts.get(item_state.value, 0))
    yield items
    yield _gauge("q4d_queue_paused", "1 while the whole queue is paused", int(state.paused))
    yield _gauge("q4d_transfer_rate_bytes_per_second", "Current rate of all transfers", state.rate)
    free = GaugeMetricFamily(
        "q4d_destination_free_bytes",
        "Free space on each destination's filesystem, as last checked",
        labels=["destination"],
        unit="bytes",
    )
    for name, destination in state.destinations.items():
        if destination.free_space is not None:
            free.add_metric([name], destination.free_space)
    yield free


def _totals(state: BridgeState, counters: Mapping[str, int]) -> Iterator[Metric]:
    totals = state.totals
    for name, documentation, value in (
        ("q4d_events_received", "Completion events admitted as new items", totals["received"]),
        ("q4d_events_duplicate", "Completion events for an item already queued",
         totals["duplicates"]),
        ("q4d_items_completed", "Items landed in the library", totals["completed"]),
        ("q4d_items_failed", "Items failed for good", totals["failed"]),
    ):  # fmt: skip
        yield CounterMetricFamily(name, documentation, value=value)
    yield CounterMetricFamily(
        "q4d_transferred_bytes",
        "Bytes of the payloads landed",
        value=totals["bytes_transferred"],
        unit="bytes",
    )
    rejected = CounterMetricFamily(
        "q4d_events_rejected", "Completion events rejected, by reason", labels=["reason"]
    )
    decisions = CounterMetricFamily(
        "q4d_dispatch_decisions",
        "Adds by final outcome: added, failed (by the client), or refused (duplicate, "
        "no_eligible_client); dry runs are not counted",
        labels=["outcome"],
    )
    outcomes = dict.fromkeys(DECISION_OUTCOMES, 0)
    for name, value in sorted(counters.items()):
        if name.startswith(REJECTED_COUNTER):
            rejected.add_metric([name.removeprefix(REJECTED_COUNTER)], value)
        elif name.startswith(OUTCOME_COUNTER):
            outcomes[name.removeprefix(OUTCOME_COUNTER)] = value
    for outcome, value in outcomes.items():
        decisions.add_metric([outcome], value)
    yield rejected
    yield decisions


def _seedboxes(state: BridgeState) -> Iterator[Metric]:
    breaker = GaugeMetricFamily(
        "q4d_seedbox_breaker_open",
        "1 while the seedbox's circuit breaker keeps its items from starting",
        labels=["seedbox"],
    )
    reachable = GaugeMetricFamily(
        "q4d_client_reachable",
        "1 when the seedbox's torrent client answered its last poll, 0 when it did not "
        "(absent before the first poll)",
        labels=["seedbox", "type"],
    )
    eligible = GaugeMetricFamily(
        "q4d_dispatch_eligible",
        "1 when the seedbox's client would take a new torrent of the default size",
        labels=["seedbox"],
    )
    score = GaugeMetricFamily(
        "q4d_dispatch_score",
        "The client's dispatch score for a torrent of the default size (absent while it "
        "cannot be scored: unreachable, dispatch off)",
        labels=["seedbox"],
    )
    for seedbox, facts in state.seedboxes.items():
        breaker.add_metric([seedbox], int(facts.breaker == "open"))
        client = facts.client
        if client is None:
            continue
        if client["reachable"] is not None:
            reachable.add_metric([seedbox, client["type"]], int(client["reachable"]))
        dispatch = client["dispatch"]
        eligible.add_metric([seedbox], int(dispatch["eligible"]))
        if dispatch["score"] is not None:
            score.add_metric([seedbox], dispatch["score"])
    yield from (breaker, reachable, eligible, score)


class Metrics:
    """The registry, with the bridge's figures and the metrics observed as they happen.

    Made once the bridge's parts exist (registering reads them once), then wired:
    `bridge.lifecycle.observers.append(metrics.item_changed)`, `metrics.middleware`
    among the app's middlewares, `routes(metrics)` mounted."""

    def __init__(
        self,
        *,
        state: Callable[[], BridgeState],
        counters: Callable[[], Mapping[str, int]],
        requests: Callable[[], Mapping[str, int]],
        mqtt_connected: Callable[[], bool],
        seedboxes: Iterable[str],
    ) -> None:
        # never the global registry: the bridge may share a process (tests, Home Assistant).
        # auto_describe: the registry learns the collector's names from one collect() now,
        # which `?name[]=` filtering and the duplicate-name check need.
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(
            BridgeCollector(
                state=state, counters=counters, requests=requests, mqtt_connected=mqtt_connected
            )
        )
        self.transfer_seconds = Histogram(
            "q4d_transfer_duration_seconds",
            "How long the attempt that landed an item took, from its start to landed",
            ["seedbox"],
            buckets=TRANSFER_BUCKETS,
            registry=self.registry,
            unit="seconds",
        )
        for seedbox in seedboxes:
            self.transfer_seconds.labels(seedbox)  # every seedbox's series from the start
        self.api_requests = Counter(
            "q4d_api_requests",
            "HTTP API requests answered, by route and status",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "q4d_api_request_duration_seconds",
            "Time to answer an HTTP API request, by route",
            ["endpoint"],
            registry=self.registry,
            unit="seconds",
        )

    def item_changed(self, item: Item) -> None:
        """A Lifecycle observer. `done` is the one change that sets finished_at and
        updated_at to the same instant; later changes of a done item (a new priority)
        move only updated_at, so each landing is observed once."""
        if (
            item.state is ItemState.DONE
            and item.started_at is not None
            and item.finished_at is not None
            and item.finished_at == item.updated_at
        ):
            self.transfer_seconds.labels(item.seedbox).observe(item.finished_at - item.started_at)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts every request by its route's pattern and the status it got, errors
        included. Labels stay bounded: never the raw path or method, which a client
        chooses."""
        started = time.perf_counter()
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"

        def answered(status: int) -> None:
            self.api_requests.labels(method, endpoint, str(status)).inc()
            self.api_seconds.labels(endpoint).observe(time.perf_counter() - started)

        try:
            response = await handler(request)
        except web.HTTPException as err:
            answered(err.status)
            raise
        except Exception:
            answered(500)  # aiohttp answers an unhandled error with a 500
            raise
        answered(response.status)
        return response


def routes(metrics: Metrics) -> list[web.RouteDef]:
    """GET /metrics: the text exposition (OpenMetrics when the scraper asks for it)."""
    return [web.get("/metrics", make_aiohttp_handler(metrics.registry))]
