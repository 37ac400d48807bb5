"""Intake and dispatch latency of the bridge, with real Mosquitto, sshd and lftp on loopback.

Phase A (burst, queue paused): 1000 completion events for small files published as fast
as MQTT takes them while the queue is paused: intake capacity (events/s), alone on the
CPU. Then the queue resumes: dispatch latency (slot free -> transfer started), drain time.

Phase B (burst under load): another burst while 8 transfers run. Here the seedbox's sshd
shares this machine's 2 cores with lftp/ssh and the bridge, so this is a worst case.

Phase C (slots free): events paced below the transfer capacity, so every event finds a
free slot: received -> started p50/p99 is pure bridge overhead (target p99 <= 50 ms).

Run: .venv/bin/python bench/latency.py [--events 1000] [--paced 200]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt

from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import Recorder, recording
from tests.helpers.services import Mosquitto, SshServer


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def make_files(root: Path, prefix: str, count: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = root / f"{prefix}-{n:04}.mkv"
        path.write_bytes(n.to_bytes(4, "big") * 256)
        paths.append(path)
    return paths


def event_payload(path: Path, n: int, prefix: str) -> bytes:
    event_id = f"{prefix}-{n}"
    info_hash = hashlib.sha1(event_id.encode()).hexdigest()  # distinct torrents per phase
    return json.dumps({"v": 1, "event_id": event_id, "path": str(path), "hash": info_hash}).encode()


def items_of(rec: Recorder, kind: str, prefix: str) -> list[dict[str, Any]]:
    return [e["item"] for e in rec.events(kind) if e["item"]["name"].startswith(prefix)]


async def command(port: int, op: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        payload = json.dumps({"id": f"bench-{op}", "op": op, "args": {}}).encode()
        await client.publish("q4d/bridge/bench/command", payload, qos=1)


async def publish_burst(port: int, files: list[Path], prefix: str) -> float:
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=1000) as client:
        client.pending_calls_threshold = 10 * len(files)
        t0 = time.time()
        await asyncio.gather(
            *(
                client.publish("q4d/seedbox/sb1/completed", event_payload(p, n, prefix), qos=1)
                for n, p in enumerate(files)
            )
        )
    return t0


async def phase_load(port: int, rec: Recorder, files: list[Path]) -> dict[str, Any]:
    t0 = await publish_burst(port, files, "load")
    n = len(files)
    await rec.wait_for(lambda: len(items_of(rec, "queued", "load")) >= n, 300, "load queued")
    await rec.wait_for(lambda: len(items_of(rec, "completed", "load")) >= n, 600, "load done")
    received = sorted(i["received_at"] for i in items_of(rec, "queued", "load"))
    return {
        "events": n,
        "intake_events_per_s": n / (received[-1] - received[0]),
        "received_all_after_s": received[-1] - t0,
    }


async def phase_burst(
    port: int, rec: Recorder, files: list[Path], bridge_pid: int
) -> dict[str, Any]:
    await command(port, "pause")
    t0 = await publish_burst(port, files, "burst")
    published = time.time()
    n = len(files)
    await rec.wait_for(lambda: len(items_of(rec, "queued", "burst")) >= n, 120, "all queued")
    queued_seen = time.time()
    await command(port, "resume")
    await rec.wait_for(lambda: len(items_of(rec, "completed", "burst")) >= n, 600, "all done")
    drained = time.time()
    rss, peak = rss_kib(bridge_pid)
    queued = items_of(rec, "queued", "burst")
    started = items_of(rec, "started", "burst")
    completed = items_of(rec, "completed", "burst")
    received = sorted(i["received_at"] for i in queued)
    finishes = sorted(i["finished_at"] for i in completed)
    waits = [i["started_at"] - i["received_at"] for i in started]
    # Dispatch latency: from the moment an item could start (received, and a slot freed
    # by the latest finish before its start) to its start: the scheduler's own overhead.
    dispatch = []
    for item in started:
        freed = [f for f in finishes if f <= item["started_at"]]
        ready = max(item["received_at"], freed[-1] if freed else 0.0)
        dispatch.append(item["started_at"] - ready)
    span = received[-1] - received[0]
    return {
        "events": n,
        "publish_seconds": published - t0,
        "intake_events_per_s_bridge": n / span if span > 0 else float("inf"),
        "intake_events_per_s_publish_to_announced": n / (queued_seen - t0),
        "queue_wait_ms_p50": 1000 * pct(waits, 50),
        "queue_wait_ms_p99": 1000 * pct(waits, 99),
        "dispatch_ms_p50": 1000 * pct(dispatch, 50),
        "dispatch_ms_p99": 1000 * pct(dispatch, 99),
        "drain_seconds": drained - t0,
        "transfers_per_s": n / (drained - t0),
        "rss_mib": rss / 1024,
        "peak_rss_mib": peak / 1024,
    }


async def phase_paced(
    port: int, rec: Recorder, files: list[Path], interval: float
) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for n, path in enumerate(files):
            await client.publish(
                "q4d/seedbox/sb1/completed", event_payload(path, n, "paced"), qos=1
            )
            await asyncio.sleep(interval)
    n = len(files)
    await rec.wait_for(lambda: len(items_of(rec, "completed", "paced")) >= n, 300, "paced done")
    started = items_of(rec, "started", "paced")
    latency = [i["started_at"] - i["received_at"] for i in started]
    return {
        "events": n,
        "interval_ms": interval * 1000,
        "received_to_started_ms_p50": 1000 * pct(latency, 50),
        "received_to_started_ms_p99": 1000 * pct(latency, 99),
        "received_to_started_ms_max": 1000 * max(latency),
        "received_to_started_ms_mean": 1000 * statistics.fmean(latency),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--paced", type=int, default=100)
    parser.add_argument("--load", type=int, default=300, help="burst size while transfers run")
    parser.add_argument(
        "--interval", type=float, default=0.3, help="seconds between paced events (slots stay free)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="q4d-bench-") as tmp:
        work = Path(tmp)
        remote = work / "seedbox"
        burst_files = make_files(remote, "burst", args.events)
        paced_files = make_files(remote, "paced", args.paced)
        load_files = make_files(remote, "load", args.load)
        with Mosquitto(work / "mosquitto") as broker, SshServer(work / "sshd") as sshd:
            config = bridge_config(
                work / "data", work / "library", key=sshd.client_key,
                known_hosts=sshd.known_hosts, broker_port=broker.port, ssh_port=sshd.port,
                user=sshd.user, remote_root=str(remote), bridge_id="bench",
            )  # fmt: skip
            config["transfers"]["max_concurrent"] = args.concurrency
            config["seedboxes"][0]["max_concurrent"] = args.concurrency
            config["log_level"] = "WARNING"
            async with recording(
                broker.port, "q4d/bridge/bench/event", "q4d/bridge/bench/status"
            ) as rec:
                with BridgeProcess(work / "bridge", config) as bridge:
                    assert bridge.proc is not None
                    log_on_failure = bridge
                    await rec.wait_for(
                        lambda: any(m.payload and m.json()["state"] == "online"
                                    for m in rec.on("q4d/bridge/bench/status")),
                        20, "bridge online",
                    )  # fmt: skip
                    try:
                        burst = await phase_burst(broker.port, rec, burst_files, bridge.proc.pid)
                        load = await phase_load(broker.port, rec, load_files)
                        paced = await phase_paced(broker.port, rec, paced_files, args.interval)
                    except AssertionError:
                        print(log_on_failure.log()[-5000:], file=sys.stderr)
                        raise
    results = {"burst": burst, "load": load, "paced": paced, "concurrency": args.concurrency}
    b, p, lo = burst, paced, load
    rows = [
        f"q4d bridge latency benchmark (loopback, lftp over sshd, {args.concurrency} slots)",
        f"  A. burst of {b['events']} events (small files) into a paused queue, published in {b['publish_seconds']:.2f} s",
        f"    intake, bridge receive rate         {b['intake_events_per_s_bridge']:6.0f} events/s",
        f"    intake, publish -> stored+announced {b['intake_events_per_s_publish_to_announced']:6.0f} events/s",
        "    then resumed:",
        f"    dispatch, ready -> started    p50 {b['dispatch_ms_p50']:7.2f} ms  p99 {b['dispatch_ms_p99']:7.2f} ms",
        f"    queue wait, received -> started p50 {b['queue_wait_ms_p50'] / 1000:5.2f} s   p99 {b['queue_wait_ms_p99'] / 1000:5.2f} s",
        f"    all transferred in {b['drain_seconds']:.1f} s ({b['transfers_per_s']:.1f} transfers/s)",
        f"    bridge RSS {b['rss_mib']:.1f} MiB (peak {b['peak_rss_mib']:.1f} MiB)",
        f"  B. burst of {lo['events']} events while {args.concurrency} transfers run (seedbox sshd on the same 2 cores)",
        f"    intake, bridge receive rate         {lo['intake_events_per_s']:6.0f} events/s",
        f"  C. paced, slots free: {p['events']} events, one every {p['interval_ms']:.0f} ms",
        f"    received -> started  p50 {p['received_to_started_ms_p50']:.2f} ms  p99 {p['received_to_started_ms_p99']:.2f} ms  max {p['received_to_started_ms_max']:.2f} ms",
    ]
    print("\n".join(rows))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latency.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
