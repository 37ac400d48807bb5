"""Dispatch: how many decisions per second the bridge makes with 10 torrent clients, and
how long a torrent takes from the add to "downloading on the seedbox" with a real
qBittorrent on loopback.

Part A (decisions/s): 10 clients answering at once from memory (200 torrents each, so
the duplicate check walks 2,000 torrents, 1,000 requests and 1,000 queue items): dry
runs (poll, duplicates, scores, choice) and real adds (the same, plus the decision and
the request committed to SQLite and the client's add).

Part B (add -> downloading): magnets added to a real qbittorrent-nox through the
dispatcher; the time until the request is `downloading` (the tracker's poll saw the
client list it), with the default `dispatch.watch_interval` (5 s) and with 1 s.

No peer tool runs here: the space-aware dispatcher this replaces ships as a
description, not as code, so only q4d's own figures are printed.

Run: .venv/bin/python bench/dispatch.py [--decisions 2000] [--adds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bridge"))

from q4d_bridge.clients import make_client
from q4d_bridge.clients.base import ClientStats, NewTorrent, Torrent
from q4d_bridge.clients.monitor import ClientMonitor
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.dispatch.dispatcher import AddRequest, Dispatcher
from q4d_bridge.dispatch.requests import Request, RequestState
from q4d_bridge.dispatch.tracker import RequestTracker
from q4d_bridge.models import Item, ItemState
from q4d_bridge.persistence.requests import DispatchRecords
from q4d_bridge.persistence.store import Message, Store

from tests.helpers.configs import bridge_config
from tests.helpers.qbittorrent import QBittorrent

GIB = 1024**3
RESULTS = Path(__file__).resolve().parent / "results" / "dispatch.json"


class MemoryClient:
    """A torrent client answering from memory: Part A measures the bridge, not a client."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.listed = [
            Torrent(hash=f"{n:02x}{k:038x}", name=f"Client{n}.Release.{k}", state="uploading",
                    progress=1.0 if k % 4 else 0.5, category="tv", tags=(), content_path="/x",
                    size=GIB, completed_at=None, tracker=None)
            for k in range(200)
        ]  # fmt: skip

    async def stats(self) -> ClientStats:
        return ClientStats(free_space=(500 + 50 * self.n) * GIB, active_downloads=self.n % 4,
                           download_rate=self.n * 1_000_000, upload_rate=0, torrents=200)  # fmt: skip

    async def torrents(self) -> list[Torrent]:
        return self.listed

    async def version(self) -> str:
        return "memory"

    async def add(self, torrent: NewTorrent) -> None:
        pass

    async def close(self) -> None:
        pass

    # the rest of ManagedTorrentClient, unused here
    async def completed_torrents(self) -> list[Torrent]:
        return []

    async def export_torrent(self, info_hash: str) -> bytes:
        raise NotImplementedError

    async def add_tags(self, hashes: list[str], tags: list[str]) -> None:
        pass

    async def remove_tags(self, hashes: list[str], tags: list[str]) -> None:
        pass

    async def pause(self, hashes: list[str]) -> None:
        pass

    async def resume(self, hashes: list[str]) -> None:
        pass

    async def remove(self, hashes: list[str], *, delete_data: bool) -> None:
        pass

    async def set_category(self, hashes: list[str], category: str | None) -> None:
        pass


class Quiet:
    def request(self, request: Any) -> None:
        pass

    def removal_message(self, item_id: str) -> Message:
        return Message(f"item/{item_id}", b"", retain=True)

    def outbox_pending(self) -> None:
        pass


def config_for(tmp: Path, clients: list[dict[str, Any]], **dispatch: Any) -> Config:
    key = tmp / "key"
    tmp.mkdir(parents=True, exist_ok=True)
    key.write_text("unused")
    raw = bridge_config(tmp / "data", tmp / "library", key=key, known_hosts=key)
    base = raw["seedboxes"][0]
    raw["seedboxes"] = [{**base, "id": f"sb{n}", "client": c} for n, c in enumerate(clients)]
    raw["classic"] = {"enabled": False}
    raw["dispatch"] = {"history": 200, **dispatch}
    return parse_config(raw)


def desk(config: Config, clients: dict[str, Any], store: Store, items: dict[str, Item]) -> tuple[Dispatcher, RequestTracker]:  # fmt: skip
    monitor = ClientMonitor(config.seedboxes, clients, on_change=lambda: None)
    records = DispatchRecords(store)
    tracker = RequestTracker(records, monitor, Quiet(), interval=config.dispatch.watch_interval, retention=86400)  # fmt: skip
    dispatcher = Dispatcher(config, clients, monitor, records, tracker, items)
    tracker.busy = dispatcher.busy
    return dispatcher, tracker


async def decisions_per_second(tmp: Path, count: int) -> dict[str, float]:
    settings = [
        {"type": "qbittorrent", "url": "http://127.0.0.1:9", "min_free": 0} for _ in range(10)
    ]
    config = config_for(tmp, settings)
    clients = {f"sb{n}": MemoryClient(n) for n in range(10)}
    store = Store(tmp / "data" / "q4d.sqlite3")
    items = {
        f"{k:016x}": Item(id=f"{k:016x}", event_id=str(k), seedbox="sb0", hash=f"ff{k:038x}",
                          name=f"Landed.{k}", remote_path="/r", destination="tv", local_path="/l",
                          category=None, tags=(), type_code=None, size=GIB, state=ItemState.DONE)
        for k in range(1000)
    }  # fmt: skip
    dispatcher, _ = desk(config, clients, store, items)
    for k in range(1000):
        dispatcher.records.save(Request(
            id=f"{k:016x}", created_at=k, updated_at=k, source="mqtt", category=None,
            name=f"Requested.{k}", info_hash=f"ee{k:038x}", v1=f"ee{k:038x}", v2=None,
            seedbox="sb1", size=GIB, state=RequestState.LANDED, decision_id="d"))  # fmt: skip
    figures = {}
    for label, dry in (("dry_run", True), ("add", False)):
        started = time.perf_counter()
        for k in range(count):
            magnet = f"magnet:?xt=urn:btih:ab{(k + (0 if dry else count)):038x}&dn=New.{label}.{k}"
            await dispatcher.add(AddRequest(magnet=magnet), dry_run=dry)
        figures[label] = count / (time.perf_counter() - started)
    store.close()
    return figures


async def add_to_downloading(tmp: Path, adds: int, interval: float) -> list[float]:
    with QBittorrent(tmp / f"qbt-{interval:g}") as qbt:
        client = {"type": "qbittorrent", "url": qbt.url, "username": qbt.username,
                  "password": qbt.password, "min_free": 0}  # fmt: skip
        config = config_for(
            tmp / f"c{interval:g}", [client], watch_interval=interval, size_estimate="1GiB"
        )
        clients = {"sb0": make_client(config.seedboxes["sb0"].client)}  # type: ignore[arg-type]
        store = Store(tmp / f"c{interval:g}" / "data" / "q4d.sqlite3")
        dispatcher, tracker = desk(config, clients, store, {})
        # qBittorrent reports 0 bytes free until it first measured the disk
        for _ in range(200):
            await dispatcher.monitor.refresh(clients)
            stats = dispatcher.monitor.status["sb0"].stats
            if stats is not None and stats.free_space:
                break
            await asyncio.sleep(0.1)
        follow = asyncio.create_task(tracker.run())
        times = []
        try:
            for k in range(adds):
                started = time.perf_counter()
                added = await dispatcher.add(
                    AddRequest(magnet=f"magnet:?xt=urn:btih:{k + 1:040x}&dn=Timed.{k}")
                )
                request_id = added["request"]["id"]
                for _ in range(int(30 / 0.005)):
                    request = tracker.active.get(request_id)
                    if request is not None and request.state is RequestState.DOWNLOADING:
                        break
                    await asyncio.sleep(0.005)
                else:
                    raise RuntimeError(f"request {request_id} never showed downloading")
                times.append(time.perf_counter() - started)
        finally:
            follow.cancel()
            await asyncio.gather(follow, return_exceptions=True)
            await clients["sb0"].close()
            store.close()
        return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--adds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="q4d-bench-dispatch-") as name:
        tmp = Path(name)
        rates = await decisions_per_second(tmp / "a", args.decisions)
        print(f"A. decisions with 10 clients ({args.decisions} each, 2,000 client torrents, "
              "1,000 requests, 1,000 items checked for duplicates)")  # fmt: skip
        print(f"   dry run (poll, duplicates, scores):  {rates['dry_run']:8.0f} decisions/s")
        print(f"   real add (+ SQLite commit, add):     {rates['add']:8.0f} decisions/s")
        result: dict[str, Any] = {"decisions_per_s": rates}
        for interval in (5.0, 1.0):
            times = await add_to_downloading(tmp / "b", args.adds, interval)
            print(f"B. add -> downloading on a real qBittorrent, watch_interval {interval:g} s "
                  f"({args.adds} adds): p50 {statistics.median(times):.2f} s, "
                  f"max {max(times):.2f} s")  # fmt: skip
            result[f"add_to_downloading_s_interval_{interval:g}"] = {
                "p50": statistics.median(times), "max": max(times), "all": times}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"saved {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )


if __name__ == "__main__":
    asyncio.run(main())
