"""The qBittorrent-compatible HTTP API: latency (p50/p99) and calls/s of
`torrents/info?category=tv`, the call Sonarr makes every minute, with 1000 torrents
known to the bridge, over HTTP on loopback.

The bridge side is the real one (Bridge with its API on 127.0.0.1, the catalog, the
metrics middleware), in a child process of its own as in service, started and stopped
by PID. Its 1000 torrents are written to the store as the dispatcher and the request
tracker write them (like bench/dispatch.py): 500 landed at home, 250 coming home, 250
downloading on the seedbox, all in category `tv`, so the call answers all 1000. No MQTT
broker or seedbox is needed: nothing moves while it is measured.

From this process, one logged-in aiohttp session: --calls calls one after another on
one keep-alive connection (latency: request sent to the whole answer read), then
--seconds seconds with --concurrency calls in flight (calls/s).

No peer tool can run here for this: nothing else serves the *arr apps a torrent list
that completes only once the payload is home (the space-aware dispatcher this replaces
ships as a description, not code). The nearest figure is qBittorrent itself answering
the same call for 1000 torrents: when qbittorrent-nox is installed, 1000 tiny torrents
are added to it from .torrent files without their data, stopped, and measured the same
way; the ratios are printed.

Run: .venv/bin/python bench/api.py [--calls 2000] [--peer-calls 200] [--seconds 10]
     [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bridge"))

import aiohttp
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.dispatch.requests import Request, RequestState
from q4d_bridge.models import Item, ItemState

from tests.helpers.configs import bridge_config
from tests.helpers.qbittorrent import QBittorrent
from tests.helpers.torrents import random_file, torrent_of

TORRENTS = 1000
GIB = 1024**3
USER, PASSWORD = "bench", "bench-secret-pw"
CALL = "/api/v2/torrents/info?category=tv"
RESULTS = Path(__file__).resolve().parent / "results" / "api.json"
START_TIMEOUT = 30.0
SETTLE_TIMEOUT = 120.0
ADD_BATCH = 100  # .torrent files in one torrents/add to qBittorrent


# --- the bridge, in its own process ---------------------------------------------------


def seed(bridge: Bridge, count: int) -> None:
    """`count` torrents as the dispatcher and tracker leave them: requests (with their
    queue items once the seedbox finished) in the store and the lifecycle."""
    library = bridge.config.routing.destinations["tv"]
    now = time.time()
    for k in range(count):
        info_hash = f"{k + 1:040x}"
        name = f"Show.{k // 20:02d}.S01E{k % 20:02d}.1080p.mkv"
        request = Request(
            id=f"{k:016x}", created_at=now - count + k, updated_at=now, source="api",
            category="tv", name=name, info_hash=info_hash, v1=info_hash, v2=None,
            seedbox="sb1", size=GIB, state=RequestState.DOWNLOADING, decision_id=f"d{k}",
            progress=40.0, bytes_done=2 * GIB // 5, rate=5e6,
        )  # fmt: skip
        if k % 4 >= 1:  # three in four finished on the seedbox: in the queue at home
            landed = k % 4 >= 2
            item = Item(
                id=f"i{k:015x}", event_id=str(k), seedbox="sb1", hash=info_hash, name=name,
                remote_path=f"/seedbox/{name}", destination="tv",
                local_path=str(library / name), category="tv", tags=(), type_code=None,
                size=GIB, state=ItemState.DONE if landed else ItemState.TRANSFERRING,
                bytes_done=GIB if landed else GIB // 3, rate=0.0 if landed else 2e7,
                eta=None if landed else 33.0, received_at=now - 60, started_at=now - 50,
                finished_at=now - 10 if landed else None, updated_at=now, request_id=request.id,
            )  # fmt: skip
            bridge.lifecycle.items[item.id] = item
            request.follow(item, now)
        bridge.records.save(request)


async def _serve(tmp: Path, count: int, ready: Connection) -> None:
    key = tmp / "unused-key"
    key.write_text("unused")
    raw = bridge_config(tmp / "data", tmp / "library", key=key, known_hosts=key)
    raw["api"] = {"enabled": True, "port": 0, "username": USER, "password": PASSWORD}
    bridge = Bridge(parse_config(raw))
    seed(bridge, count)
    assert bridge.api is not None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await bridge.api.start()
    ready.send(bridge.api.port)
    try:
        await stop.wait()  # the parent's SIGTERM
    finally:
        await bridge.api.stop()
        bridge.store.close()


def serve(tmp: str, count: int, ready: Connection) -> None:
    asyncio.run(_serve(Path(tmp), count, ready))


# --- measuring, the same way for both -------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(pid: int) -> float:
    """Waits until the server is idle (under 5 % of a core for a second): qBittorrent
    goes on writing its 1000 new torrents' files for a while after it lists them.
    Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT:
        before = cpu_seconds(pid)
        await asyncio.sleep(1)
        if cpu_seconds(pid) - before < 0.05:
            return time.monotonic() - started
    raise RuntimeError(f"the server {pid} was still busy after {SETTLE_TIMEOUT} s")


async def measure(base: str, pid: int, login: dict[str, str], calls: int,
                  args: argparse.Namespace,
                  headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    jar = aiohttp.CookieJar(unsafe=True)  # an address, not a name: keep its cookie
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector, headers=headers) as http:
        async with http.post(base + "/api/v2/auth/login", data=login) as r:
            assert await r.text() == "Ok.", f"login refused: {r.status}"
        async with http.get(base + "/api/v2/app/version") as r:
            version = await r.text()

        async def one() -> bytes:
            async with http.get(base + CALL) as r:
                body = await r.read()
                assert r.status == 200, r.status
                return body

        body = await one()
        listed = json.loads(body)
        assert len(listed) == TORRENTS, f"{len(listed)} torrents listed, {TORRENTS} expected"
        states = Counter(t["state"] for t in listed)
        for _ in range(50):  # warm: connections, caches
            await one()
        waited = await settle(pid)
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)

        done = 0
        deadline = time.perf_counter() + args.seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await one()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        took = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "version": version,
        "states": dict(states),
        "settled_after_s": waited,
        "calls": calls,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": cuts[98] * 1000,
        "max_ms": max(latencies) * 1000,
        "answer_bytes": len(body),
        "calls_per_s": done / took,
        "concurrency": args.concurrency,
    }


async def bridge_figures(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    child = spawn.Process(target=serve, args=(str(tmp / "bridge"), TORRENTS, send), daemon=True)
    (tmp / "bridge").mkdir()
    child.start()
    try:
        if not receive.poll(START_TIMEOUT):
            raise RuntimeError(f"the bridge did not start within {START_TIMEOUT} s")
        port = receive.recv()
        login = {"username": USER, "password": PASSWORD}
        assert child.pid is not None
        return await measure(f"http://127.0.0.1:{port}", child.pid, login, args.calls, args)
    finally:
        child.terminate()  # SIGTERM to its PID
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join(5)


async def qbittorrent_figures(tmp: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        box = QBittorrent(tmp / "qbt")
    except FileNotFoundError:
        return None
    login = {"username": box.username, "password": box.password}
    payloads, empty = tmp / "tiny", tmp / "nodata"
    empty.mkdir()
    torrents = [
        torrent_of(random_file(payloads / f"Show.{k // 20:02d}.S01E{k % 20:02d}.bin", 1024, k),
                   tracker=None)
        for k in range(TORRENTS)
    ]  # fmt: skip
    # qBittorrent refuses a request whose Referer/Origin is another site; this one is its own
    headers = {"Referer": box.url}
    with box:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers
        ) as http:
            async with http.post(box.url + "/api/v2/auth/login", data=login) as r:
                assert await r.text() == "Ok.", f"qbittorrent-nox refused the login: {r.status}"
            for first in range(0, TORRENTS, ADD_BATCH):
                form = aiohttp.FormData()
                for k in range(first, min(TORRENTS, first + ADD_BATCH)):
                    form.add_field("torrents", torrents[k], filename=f"{k}.torrent")
                # stopped (5.x) and paused (4.x): nothing to fetch, nothing to check
                for name, value in (("savepath", str(empty)), ("category", "tv"),
                                    ("stopped", "true"), ("paused", "true")):  # fmt: skip
                    form.add_field(name, value)
                async with http.post(box.url + "/api/v2/torrents/add", data=form) as r:
                    assert await r.text() == "Ok.", r.status
            for _ in range(int(START_TIMEOUT / 0.2)):
                async with http.get(box.url + CALL) as r:
                    if len(await r.json()) == TORRENTS:
                        break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"qbittorrent-nox did not list {TORRENTS} torrents")
        assert box.pid is not None
        return await measure(box.url, box.pid, login, args.peer_calls, args, headers)


def show(label: str, f: dict[str, Any]) -> None:
    print(f"   {label:<22} p50 {f['p50_ms']:6.2f} ms   p99 {f['p99_ms']:6.2f} ms   "
          f"{f['calls_per_s']:6.0f} calls/s ({f['concurrency']} in flight)   "
          f"answer {f['answer_bytes'] / 1024:.0f} KiB   {f['calls']} calls timed")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    # qBittorrent takes ~15 times longer per call: fewer keep the run short
    parser.add_argument("--peer-calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="q4d-bench-api-") as name:
        tmp = Path(name)
        q4d = await bridge_figures(tmp, args)
        peer = await qbittorrent_figures(tmp, args)
    load_after = os.getloadavg()
    print(f"torrents/info?category=tv with {TORRENTS} torrents, over HTTP on loopback "
          f"({os.cpu_count()} cores, load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after)")  # fmt: skip
    show(f"q4d bridge ({q4d['version']})", q4d)
    result: dict[str, Any] = {
        "torrents": TORRENTS, "call": CALL, "cpus": os.cpu_count(),
        "loadavg_before": load_before, "loadavg_after": load_after, "q4d": q4d,
    }  # fmt: skip
    if peer is None:
        print("   qbittorrent-nox is not installed: no peer figure")
    else:
        show(f"qbittorrent-nox {peer['version']}", peer)
        ratios = {
            "p50": q4d["p50_ms"] / peer["p50_ms"],
            "p99": q4d["p99_ms"] / peer["p99_ms"],
            "calls_per_s": q4d["calls_per_s"] / peer["calls_per_s"],
        }
        print(f"   q4d / qBittorrent:      p50 x{ratios['p50']:.2f}   p99 x{ratios['p99']:.2f}"
              f"   calls/s x{ratios['calls_per_s']:.2f}")  # fmt: skip
        result |= {"qbittorrent": peer, "ratio": ratios}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    asyncio.run(main())
