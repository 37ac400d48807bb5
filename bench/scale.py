"""Scale of the bridge itself (issue 19, target 5): the real bridge process against real
Mosquitto, sshd and lftp on loopback.

1. History. A store seeded through the bridge's own persistence code (Store.admit,
   Store.save) with 10,000 items in a long-running bridge's states (done, failed,
   cancelled, a few queued and paused) and their history rows. The bridge starts on it:
   start -> retained `online`, its RSS once its retained items are re-published (and
   its peak), and `get_queue` round trips: as a user gets it (no arguments: the
   bridge's default page of 500), the unfinished items only, and for comparison the
   whole history: in one answer (`limit: 10000`) and walked page by page by
   `next_offset` (each page's round trip, and the whole walk's).
2. Bursts with 8 transfers running. 8 large payloads transfer, unthrottled (the
   seedbox's sshd and the bridge's lftp/ssh load both cores), then capped at 100 MB/s in
   all (a fast home link); each time 1,000 completion events are published as fast as
   MQTT takes them: intake events/s, and meanwhile the control plane's response time (a
   small `get_queue` every 50 ms, whose answer waits behind the events published before
   it).
3. Burst while tiny payloads churn through the 8 slots (bench/latency.py's phase B, with
   1,000 events): intake events/s and the control plane's response time; every payload
   that landed is compared with its source (size and SHA-256).

The seedbox's sshd, and so every session and SFTP server it forks for the transfers,
runs at nice 10 (as the bridge runs its own lftp and ssh, `transfers.nice`): a real
seedbox is another machine, and at nice 0 on these 2 cores the bench's own seedbox
starved the bridge it measures (intake during the 8 transfers). Nice alone is not
enough where the kernel groups processes by session (autogroup, the default on most
distributions): sshd starts a session for each connection, and each session weighs as
much as the bridge's whatever its nice. So where it can (root, cgroup v1 `cpu` or v2
with the cpu controller) the bench puts the sshd in a cpu cgroup of its own weighted as
one nice-10 process, which the sessions inherit; the table says which held.

`--baseline DIR` runs the same measurements first with the bridge package in DIR (e.g.
a checkout of main's bridge/), for old and new side by side with their ratio. A bridge
without paging answers `get_queue` without arguments with the whole history: its
"default" rows are that, and it has no page or walk rows.

Run: .venv/bin/python bench/scale.py [--items 10000] [--events 1000] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bridge"))

import aiomqtt
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config
from q4d_bridge.intake.decode import Accepted, accept
from q4d_bridge.models import CompletionEvent, ItemState
from q4d_bridge.persistence.store import Store

from bench.latency import event_payload, make_files, pct, rss_kib
from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config

# docs/configuration.md#broker-settings: a default Mosquitto drops a burst's events
# beyond 1000 queued for the bridge
from tests.helpers.services import Q4D_BROKER_SETTINGS, Mosquitto, SshServer

PREFIX = "q4d/bridge/bench"
BIG = 4 << 30  # sparse sources: 8 of them keep transferring through a whole burst
WAN = 100_000_000  # bytes/s in all: a fast home link (800 Mbit/s)
UNFINISHED = ["queued", "transferring", "verifying", "processing", "waiting"]
ID = re.compile(rb'"id":"([^"]+)"')
# the end of a get_queue page: where the next one starts (absent from a bridge without paging)
NEXT = re.compile(rb'"next_offset":(\d+|null)\}\}$')
SEEDBOX_NICE = 10
RESULTS = Path(__file__).parent / "results"
LOST = 20.0  # seconds without an answer: a command's answer counts as lost


def seed_history(config: Config, remote: Path, count: int, now: float) -> dict[str, int]:
    """`count` items over the last 25 days: 95 % done, 3 % failed, 1.5 % cancelled, the
    rest queued and paused, each with the history its transitions write."""
    store = Store(config.data_dir / "q4d.sqlite3")
    span = 25 * 86400.0
    states: dict[str, int] = {}
    batch = 50
    for first in range(0, count, batch):
        at = now - span + span * first / count
        accepted = []
        for n in range(first, min(count, first + batch)):
            name = f"Show.Name.{n // 20:04}.S01E{n % 20 + 1:02}.1080p.WEB.h264-GRP.mkv"
            event = CompletionEvent(
                event_id=f"hist-{n}", seedbox="sb1", path=f"{remote}/history/{name}",
                name=name, hash=hashlib.sha1(f"hist-{n}".encode()).hexdigest(),
                category="tv", size=1_500_000_000 + n, stream="seedbox-outbox", seq=n + 1,
            )  # fmt: skip
            outcome = accept(event, seedboxes=config.seedboxes, routing=config.routing)
            assert isinstance(outcome, Accepted)
            accepted.append((outcome.event, outcome.resolution))
        for k, admission in enumerate(store.admit(accepted, now=at)):
            item = admission.item
            n = first + k
            share = n % 200  # 190 done, 6 failed, 3 cancelled, 1 queued
            state = "done" if share < 190 else "failed" if share < 196 else "cancelled"
            state = "queued" if share == 199 else state
            states[state] = states.get(state, 0) + 1
            if state == "queued":
                item.paused, item.updated_at = True, at + 1
                store.save(item, "paused")
                continue
            if state == "cancelled":
                item.state, item.finished_at, item.updated_at = ItemState.CANCELLED, at + 5, at + 5
                store.save(item, "cancelled")
                continue
            item.state, item.attempts = ItemState.TRANSFERRING, 1
            item.started_at = item.updated_at = at + 2
            store.save(item, "started", {"attempt": 1})
            if state == "failed":
                item.state, item.error_code = ItemState.FAILED, "remote_missing"
                item.last_error = "the payload is no longer on the seedbox"
                item.finished_at = item.updated_at = at + 3
                store.save(item, "failed", {"code": "remote_missing"}, counters={"failed": 1})
                continue
            item.state, item.bytes_done, item.updated_at = (
                ItemState.VERIFYING,
                item.size or 0,
                at + 60,
            )
            store.save(item, "verifying")
            item.state, item.finished_at, item.updated_at = ItemState.DONE, at + 70, at + 70
            store.save(
                item, "completed", {"bytes": item.size, "verified": True, "seconds": 68},
                counters={"completed": 1, "bytes_transferred": item.size or 0},
            )  # fmt: skip
    store.close()
    return states


class NicedSshServer(SshServer):
    """The seedbox's sshd at nice SEEDBOX_NICE and, where it can, in a cpu cgroup of
    that weight; the sessions it forks inherit both."""

    cgroup: Path | None = None

    def _argv(self) -> list[str]:
        return ["nice", "-n", str(SEEDBOX_NICE), *super()._argv()]

    def start(self) -> None:
        super().start()
        assert self.pid is not None
        self.cgroup = low_cpu_cgroup(f"q4d-bench-seedbox-{self.pid}", self.pid)

    def stop(self) -> None:
        super().stop()
        if self.cgroup is not None:
            for _ in range(50):  # the last sessions may take a moment to exit
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


NICE_10_WEIGHT = 110  # CFS: nice 10 weighs 110 against nice 0's 1024


def low_cpu_cgroup(name: str, pid: int) -> Path | None:
    """A new cpu cgroup weighted as a nice-10 process, holding pid; None where the
    machine has none to give (not root, no cpu controller)."""
    for root, weight_file, weight in (
        (Path("/sys/fs/cgroup/cpu"), "cpu.shares", NICE_10_WEIGHT),  # cgroup v1
        (Path("/sys/fs/cgroup"), "cpu.weight", max(1, NICE_10_WEIGHT * 100 // 1024)),  # v2
    ):
        group = root / name
        try:
            if weight_file == "cpu.weight" and "cpu" not in (
                (root / "cgroup.subtree_control").read_text().split()
            ):
                continue
            group.mkdir()
        except OSError:
            continue
        try:
            (group / weight_file).write_text(str(weight))
            (group / "cgroup.procs").write_text(str(pid))
            return group
        except OSError:
            group.rmdir()
    return None


class Desk:
    """Sends commands on its own connection and times each answer's arrival (the answer
    is matched by the id at its start, without parsing a 7 MB listing)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.waiting: dict[str, asyncio.Future[tuple[float, int]]] = {}
        self.tails: dict[str, bytes] = {}  # the last bytes of each answer, by id
        self.sent = 0

    async def pump(self) -> None:
        async for message in self.client.messages:
            arrived = time.perf_counter()
            payload = message.payload if isinstance(message.payload, bytes) else b""
            match = ID.search(payload[:200])
            command_id = match.group(1).decode() if match else ""
            future = self.waiting.pop(command_id, None)
            if future is not None and not future.done():
                self.tails[command_id] = payload[-64:]
                future.set_result((arrived, len(payload)))

    async def page(self, args: dict[str, Any]) -> tuple[float, int, bool, int | None]:
        """get_queue: (round trip, bytes, whether the answer is a page, its next_offset).
        A bridge without paging answers with no next_offset (and refuses offsets)."""
        rtt, size = await self.ask("get_queue", args)
        match = NEXT.search(self.tails.pop(f"bench-{self.sent}", b""))
        if match is None:
            return rtt, size, False, None
        return rtt, size, True, None if match.group(1) == b"null" else int(match.group(1))

    async def walk(self) -> tuple[float, list[float]]:
        """Every page of the default size from offset 0 by next_offset: (the whole
        walk's seconds, each page's round trip)."""
        started, offset = time.perf_counter(), 0
        rtts: list[float] = []
        while True:
            rtt, _, paged, next_offset = await self.page({"offset": offset})
            assert paged and not math.isinf(rtt), "a page went unanswered"
            rtts.append(rtt)
            if next_offset is None:
                return time.perf_counter() - started, rtts
            offset = next_offset

    async def ask(self, op: str, args: dict[str, Any]) -> tuple[float, int]:
        """(seconds from publishing to the answer's arrival, answer bytes); an answer
        that has not come after LOST seconds is counted lost: (inf, 0)."""
        self.sent += 1
        command_id = f"bench-{self.sent}"
        future = asyncio.get_running_loop().create_future()
        self.waiting[command_id] = future
        started = time.perf_counter()
        body = json.dumps({"id": command_id, "op": op, "args": args}).encode()
        await self.client.publish(f"{PREFIX}/command", body, qos=1)
        try:
            arrived, size = await asyncio.wait_for(future, LOST)
        except TimeoutError:
            self.waiting.pop(command_id, None)
            return math.inf, 0
        return arrived - started, size


async def probe(desk: Desk, stop: asyncio.Event, rtts: list[tuple[float, float]]) -> None:
    """The control plane under load: a small get_queue every 50 ms, one at a time;
    (sent at, round trip) each."""
    while not stop.is_set():
        sent = time.time()
        rtts.append((sent, (await desk.ask("get_queue", {"states": ["verifying"]}))[0]))
        await asyncio.sleep(0.05)


async def get_queue_rounds(desk: Desk, rounds: int) -> dict[str, Any]:
    """get_queue round trips (ms) and answer sizes: the default (a page), the unfinished
    items, the whole history in one answer, and walked page by page."""
    kinds: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, int] = {}
    figures: dict[str, Any] = {}
    for _ in range(rounds):
        rtt, sizes["default"], paged, _ = await desk.page({})
        kinds["default"].append(rtt)
        rtt, sizes["unfinished"], _, _ = await desk.page({"states": UNFINISHED})
        kinds["unfinished"].append(rtt)
        if not paged:
            continue  # its default is the whole history; limit and offset it refuses
        rtt, sizes["whole"], _, _ = await desk.page({"limit": 10_000})
        kinds["whole"].append(rtt)
        seconds, pages = await desk.walk()
        kinds["walk"].append(seconds)
        kinds["page"] += pages
        figures["get_queue_walk_pages"] = len(pages)
    figures.update({f"get_queue_{k}_bytes": v for k, v in sizes.items()})
    for kind, rtts in kinds.items():
        figures[f"get_queue_{kind}_ms_p50"] = 1000 * pct(rtts, 50)
        figures[f"get_queue_{kind}_ms_p99"] = 1000 * pct(rtts, 99)
    return figures


def note(text: str) -> None:
    print(
        f"{time.strftime('%H:%M:%S')} {text} (load {os.getloadavg()[0]:.2f})",
        file=sys.stderr,
        flush=True,
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def burst(port: int, files: list[Path], prefix: str) -> float:
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


class Heard:
    """What the bridge says, each message parsed once as it arrives (the bench must not
    take the CPU it measures): its status, its events by kind and by the prefix of the
    item's name, and how many retained item topics came."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.online = False
        self.items_seen = 0
        self.events: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)

    async def pump(self) -> None:
        async for message in self.client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic.endswith("/status"):
                self.online = self.online or json.loads(payload)["state"] == "online"
            elif "/item/" in topic:
                self.items_seen += 1
            elif (item := (event := json.loads(payload)).get("item")) is not None:
                self.events[event["event"], item["name"].split("-")[0]].append(item)

    def of(self, kind: str, prefix: str) -> list[dict[str, Any]]:
        return self.events[kind, prefix]

    async def wait_for(self, done: Callable[[], object], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {seconds} s waiting for {what}")
            await asyncio.sleep(0.01)


async def capped_everywhere(rec: Heard) -> None:
    """lftp and rsync restart their 8 transfers to take a new cap (8 more `started`);
    the SFTP engine takes it live: no restart comes within a few seconds."""
    first_eight = len(rec.of("started", "big"))
    try:
        await rec.wait_for(lambda: len(rec.of("started", "big")) > first_eight, 5, "a restart")
    except AssertionError:
        return
    await rec.wait_for(lambda: len(rec.of("started", "big")) >= 16, 60, "capped")


def start_spy(spy: str, pid: int, profile: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling the bridge (without pausing it) until SIGINT: raw stacks."""
    argv = [spy, "record", "--nonblocking", "--format", "raw", "-r", "200", "-p", str(pid)]
    quiet = subprocess.DEVNULL
    return subprocess.Popen([*argv, "-o", str(profile)], stdout=quiet, stderr=quiet)


async def measured_burst(
    port: int, rec: Heard, desk: Desk, files: list[Path], prefix: str, pid: int, spy: str | None
) -> dict[str, Any]:
    """One burst: intake rate, the control plane's answers meanwhile, the bridge's CPU;
    with `spy` (py-spy's path) the bridge's profile during it, in bench/results."""
    stop, rtts = asyncio.Event(), []
    prober = asyncio.create_task(probe(desk, stop, rtts))
    await asyncio.sleep(0.3)  # the probe under way
    profile = RESULTS / f"scale-{prefix}.txt"
    spying = start_spy(spy, pid, profile) if spy else None
    cpu = cpu_seconds(pid)
    t0 = await burst(port, files, prefix)
    n = len(files)
    await rec.wait_for(lambda: len(rec.of("queued", prefix)) >= n, 300, f"{prefix} queued")
    announced = time.time()
    cpu = cpu_seconds(pid) - cpu
    if spying is not None:
        spying.send_signal(signal.SIGINT)
        spying.wait(30)
    stop.set()
    await prober
    during = [rtt for sent, rtt in rtts if t0 <= sent <= announced]
    received = sorted(i["received_at"] for i in rec.of("queued", prefix))
    return {
        "events": n,
        "intake_events_per_s": n / (received[-1] - received[0]),
        "publish_to_announced_events_per_s": n / (announced - t0),
        "bridge_cpu_ms_per_event": 1000 * cpu / n,
        "bridge_cpu_share": cpu / (announced - t0),
        "control_ms_p50": 1000 * pct(during, 50),
        "control_ms_p99": 1000 * pct(during, 99),
        "control_ms_max": 1000 * max(during),
        "control_answers": len(during),
        "control_lost": sum(math.isinf(rtt) for rtt in during),
        "last_received": received[-1],
        "load": os.getloadavg()[0],
    }


def landed_ok(rec: Heard) -> tuple[int, int]:
    """(payloads compared equal to their source, payloads that differ)."""
    good = bad = 0
    for prefix in ("load", "wan", "churn"):
        for item in rec.of("completed", prefix):
            local, source = Path(item["local_path"]), Path(item["remote_path"])
            same = local.stat().st_size == source.stat().st_size and (
                hashlib.sha256(local.read_bytes()).digest()
                == hashlib.sha256(source.read_bytes()).digest()
            )
            good, bad = good + same, bad + (not same)
    return good, bad


async def run(
    src: Path, args: argparse.Namespace, spy: str | None, *, bursts: bool = True
) -> dict[str, Any]:
    """The measurements with the bridge package found in src (without `bursts`, the
    history's only)."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(src), str(Path(__file__).parents[1])])
    with tempfile.TemporaryDirectory(prefix="q4d-scale-") as tmp:
        work = Path(tmp)
        remote = work / "seedbox"
        big = [remote / f"big-{n}.mkv" for n in range(8)]
        remote.mkdir()
        for path in big:
            with path.open("wb") as sparse:
                sparse.truncate(BIG)
        load_files = make_files(remote, "load", args.events)
        wan_files = make_files(remote, "wan", args.events)
        churn_files = make_files(remote, "churn", args.events)
        with (
            Mosquitto(work / "mosquitto", extra_config=Q4D_BROKER_SETTINGS) as broker,
            NicedSshServer(work / "sshd") as sshd,
        ):
            raw = bridge_config(
                work / "data", work / "library", key=sshd.client_key,
                known_hosts=sshd.known_hosts, broker_port=broker.port, ssh_port=sshd.port,
                user=sshd.user, remote_root=str(remote), bridge_id="bench",
                history_retention="30d", log_level="WARNING",
            )  # fmt: skip
            raw["transfers"]["max_concurrent"] = raw["seedboxes"][0]["max_concurrent"] = 8
            note(f"seedbox sshd at nice {SEEDBOX_NICE}, cpu cgroup: {sshd.cgroup or 'none'}")
            seeded = seed_history(parse_config(raw), remote, args.items, time.time())
            async with (
                aiomqtt.Client("127.0.0.1", broker.port) as listener,
                aiomqtt.Client("127.0.0.1", broker.port) as client,
            ):
                for topic in ("event", "status", "item/+"):
                    await listener.subscribe(f"{PREFIX}/{topic}", qos=1)
                await client.subscribe(f"{PREFIX}/command/result", qos=1)
                # A client that sends at once (as the bridge does): with Nagle's algorithm
                # each command would wait for the broker's delayed ACK of the last PUBACK.
                client._client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                rec, desk = Heard(listener), Desk(client)
                pumps = [asyncio.create_task(rec.pump()), asyncio.create_task(desk.pump())]
                bridge = BridgeProcess(work / "bridge", raw)
                started = time.perf_counter()
                bridge.start()
                try:
                    assert bridge.proc is not None
                    pid = bridge.proc.pid
                    await rec.wait_for(lambda: rec.online, 30, "online")
                    online = time.perf_counter() - started
                    rss_online = rss_kib(pid)[0]
                    await rec.wait_for(
                        lambda: rec.items_seen >= args.items, 120, "items re-published"
                    )
                    republished = time.perf_counter() - started - online
                    note(
                        f"online after {online:.2f} s, items re-published {republished:.2f} s later"
                    )
                    await asyncio.sleep(1.0)
                    rss_settled = rss_kib(pid)[0]
                    history = {
                        "items": args.items, "states": seeded,
                        "start_to_online_s": online, "republish_s": republished,
                        "rss_online_mib": rss_online / 1024, "rss_settled_mib": rss_settled / 1024,
                        **await get_queue_rounds(desk, args.rounds),
                        "load": os.getloadavg()[0],
                    }  # fmt: skip
                    rss_after, peak = rss_kib(pid)
                    history["rss_after_get_queue_mib"] = rss_after / 1024
                    history["peak_rss_mib"] = peak / 1024
                    history["seedbox_cpu_cgroup"] = sshd.cgroup is not None
                    note("get_queue measured")
                    if not bursts:
                        return {"history": history, "peak_rss_mib": peak / 1024}
                    # 2. 8 large transfers, each burst queued behind them: unthrottled on
                    # loopback, then capped in all at a fast home link's rate
                    await burst(broker.port, big, "big")
                    await rec.wait_for(lambda: len(rec.of("started", "big")) >= 8, 60, "8 big")
                    await asyncio.sleep(1.0)
                    loaded = await measured_burst(
                        broker.port, rec, desk, load_files, "load", pid, spy
                    )
                    note(f"burst with 8 transfers: {loaded['intake_events_per_s']:.0f} events/s")
                    await desk.ask("set_limits", {"bandwidth_limit": WAN})
                    await capped_everywhere(rec)
                    await asyncio.sleep(1.0)
                    capped = await measured_burst(
                        broker.port, rec, desk, wan_files, "wan", pid, spy
                    )
                    note(
                        f"burst with 8 capped transfers: {capped['intake_events_per_s']:.0f} events/s"
                    )
                    ended = [i for k in ("completed", "failed") for i in rec.of(k, "big")]
                    loaded["transfers_running_throughout"] = not ended
                    # 3. the big ones go; the queued tiny payloads churn through the slots
                    for item_id in {i["id"] for i in rec.of("started", "big")}:
                        await desk.ask("cancel", {"item_id": item_id})
                    await desk.ask("set_limits", {"bandwidth_limit": 0})
                    await rec.wait_for(
                        lambda: len(rec.of("completed", "load")) >= 8, 120, "churn under way"
                    )
                    churn = await measured_burst(
                        broker.port, rec, desk, churn_files, "churn", pid, spy
                    )
                    done_before = len([i for i in rec.of("completed", "load")
                                       if i["finished_at"] <= churn["last_received"]])  # fmt: skip
                    churn["transfers_completed_during"] = done_before
                    churn["landed_equal"], churn["landed_differ"] = landed_ok(rec)
                    peak = rss_kib(pid)[1]
                    note(f"burst while churning: {churn['intake_events_per_s']:.0f} events/s")
                except AssertionError:
                    print(bridge.log()[-5000:], file=sys.stderr)
                    raise
                finally:
                    bridge.stop()
                    for pump in pumps:
                        pump.cancel()
    return {
        "history": history, "loaded": loaded, "capped": capped, "churn": churn,
        "peak_rss_mib": peak / 1024,
    }  # fmt: skip


def rows(results: dict[str, dict[str, Any]]) -> list[str]:
    new = results["new"]
    old = results.get("baseline")
    table = [
        ("start -> retained online (s)", ("history", "start_to_online_s"), 1.0, "le"),
        ("RSS, settled after start (MiB)", ("history", "rss_settled_mib"), 100.0, "le"),
        ("RSS after the get_queue rounds (MiB)", ("history", "rss_after_get_queue_mib"), 100.0, "le"),
        ("peak RSS, whole run (MiB)", ("peak_rss_mib",), None, ""),
        ("re-publishing every item after online (s)", ("history", "republish_s"), None, ""),
        ("get_queue as a user gets it (default page), p50 (ms)", ("history", "get_queue_default_ms_p50"), 50.0, "le"),
        ("get_queue as a user gets it (default page), p99 (ms)", ("history", "get_queue_default_ms_p99"), 50.0, "le"),
        ("  its answer (KiB)", ("history", "get_queue_default_bytes"), None, ""),
        ("get_queue, unfinished, p99 (ms)", ("history", "get_queue_unfinished_ms_p99"), 50.0, "le"),
        ("get_queue, walking all pages, each page p99 (ms)", ("history", "get_queue_page_ms_p99"), 50.0, "le"),
        ("get_queue, walking all pages, whole walk p50 (ms)", ("history", "get_queue_walk_ms_p50"), 50.0, "le"),
        ("get_queue, walking all pages, whole walk p99 (ms)", ("history", "get_queue_walk_ms_p99"), 50.0, "le"),
        ("get_queue, all in one answer (limit 10000), p99 (ms)", ("history", "get_queue_whole_ms_p99"), 50.0, "le"),
        ("  its answer (KiB)", ("history", "get_queue_whole_bytes"), None, ""),
        ("intake, 8 large transfers running (events/s)", ("loaded", "intake_events_per_s"), 1000.0, "ge"),
        ("  publish -> stored+announced (events/s)", ("loaded", "publish_to_announced_events_per_s"), None, ""),
        ("  bridge CPU per event (ms)", ("loaded", "bridge_cpu_ms_per_event"), None, ""),
        ("  bridge CPU share (cores)", ("loaded", "bridge_cpu_share"), None, ""),
        ("  control plane during the burst p50 (ms)", ("loaded", "control_ms_p50"), None, ""),
        ("  control plane during the burst p99 (ms)", ("loaded", "control_ms_p99"), 1000.0, "le"),
        ("intake, 8 transfers capped at 100 MB/s (events/s)", ("capped", "intake_events_per_s"), 1000.0, "ge"),
        ("  publish -> stored+announced (events/s)", ("capped", "publish_to_announced_events_per_s"), None, ""),
        ("  bridge CPU per event (ms)", ("capped", "bridge_cpu_ms_per_event"), None, ""),
        ("  bridge CPU share (cores)", ("capped", "bridge_cpu_share"), None, ""),
        ("  control plane during the burst p50 (ms)", ("capped", "control_ms_p50"), None, ""),
        ("  control plane during the burst p99 (ms)", ("capped", "control_ms_p99"), 1000.0, "le"),
        ("intake, tiny payloads churning (events/s)", ("churn", "intake_events_per_s"), 1000.0, "ge"),
        ("  publish -> stored+announced (events/s)", ("churn", "publish_to_announced_events_per_s"), None, ""),
        ("  bridge CPU per event (ms)", ("churn", "bridge_cpu_ms_per_event"), None, ""),
        ("  bridge CPU share (cores)", ("churn", "bridge_cpu_share"), None, ""),
        ("  control plane during the burst p50 (ms)", ("churn", "control_ms_p50"), None, ""),
        ("  control plane during the burst p99 (ms)", ("churn", "control_ms_p99"), 1000.0, "le"),
    ]  # fmt: skip

    def value(run: dict[str, Any], path: tuple[str, ...]) -> float | None:
        for key in path:
            if key not in run:
                return None  # not measured in this run
            run = run[key]
        return float(run) / (1024 if path[-1].endswith("_bytes") else 1)  # type: ignore[arg-type]

    lines = [f"{'figure':54} {'baseline':>9} {'this tree':>9} {'ratio':>6}  target"]
    for label, path, target, sense in table:
        now = value(new, path)
        assert now is not None
        before = value(old, path) if old else None
        ratio = f"{now / before:6.2f}" if before else "     -"
        verdict = ""
        if target is not None:
            ok = now <= target if sense == "le" else now >= target
            verdict = f"{'<=' if sense == 'le' else '>='} {target:g}  {'PASS' if ok else 'MISS'}"
        shown = f"{before:9.2f}" if before is not None else f"{'-':>9}"
        lines.append(f"{label:54} {shown} {now:9.2f} {ratio}  {verdict}")
    for name, run in (("baseline", old), ("this tree", new)):
        if run is None:
            continue
        if "get_queue_walk_pages" in run["history"]:
            lines.append(f"{name}: a walk is {run['history']['get_queue_walk_pages']} pages")
        lines.append(
            f"{name}: seedbox sshd at nice {SEEDBOX_NICE}, in a cpu cgroup of that weight: "
            f"{run['history']['seedbox_cpu_cgroup']}"
        )
        if "churn" not in run:
            lines.append(f"{name}: load avg {run['history']['load']:.2f} (history; no bursts)")
            continue
        lines.append(
            f"{name}: load avg {run['history']['load']:.2f} (history), "
            f"{run['loaded']['load']:.2f} (8 transfers), {run['capped']['load']:.2f} (capped), "
            f"{run['churn']['load']:.2f} (churn); "
            f"8 transfers ran throughout the burst: {run['loaded']['transfers_running_throughout']}; "
            f"churn: {run['churn']['transfers_completed_during']} payloads landed, "
            f"{run['churn']['landed_equal']} equal to their source, "
            f"{run['churn']['landed_differ']} differ; commands never answered during the "
            f"bursts: {', '.join(str(run[k]['control_lost']) for k in ('loaded', 'capped', 'churn'))}"
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40, help="get_queue round trips of each kind")
    parser.add_argument("--baseline", type=Path, help="a bridge/ directory to compare with")
    parser.add_argument(
        "--baseline-bursts", action="store_true", help="the bursts with the baseline too"
    )
    parser.add_argument("--py-spy", help="profile each burst with this py-spy (raw stacks)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    if args.baseline:
        note(f"baseline: {args.baseline}")
        results["baseline"] = await run(
            args.baseline.resolve(), args, None, bursts=args.baseline_bursts
        )
    note("this tree")
    results["new"] = await run(Path(__file__).resolve().parents[1] / "bridge", args, args.py_spy)
    lines = [
        f"q4d bridge at scale ({args.items} items in history, {args.events}-event bursts, "
        "8 transfer slots, lftp over sshd, everything on loopback, 2 cores shared)",
        *rows(results),
    ]
    print("\n".join(lines))
    (RESULTS / "scale.json").write_text(json.dumps({**results, "table": lines}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
