"""The q4d demo: the whole loop on this machine, on loopback only.

Started by ``scripts/demo`` (which runs ``scripts/setup`` first). It starts, each
as its own process recorded by PID in ``demo/run/state.json``:

* Mosquitto (the home broker);
* a "seedbox": a throwaway sshd plus a qbittorrent-nox with the q4d hook and
  label daemon installed by ``seedbox/install.sh`` into a demo HOME;
* a second qbittorrent-nox that seeds the sample content (created on the fly);
* the bridge, ``q4d-bridge run`` with a generated config (SFTP engine, the
  seedbox's qBittorrent as its client, reconciliation on);
* Home Assistant (``scripts/demo_hass.py``): onboarded with a demo user, MQTT
  added, the q4d bridge set up from MQTT discovery, the q4d dashboard.

Sample torrents (a movie-like file and a TV-season directory) are added to the
seedbox's qBittorrent, which downloads them from the seeder over loopback; the
hook fires, the bridge pulls them into ``demo/library/<category>/`` and labels
them DONE; Home Assistant shows each item paused, transferring and done. The
demo checks the payloads are byte-identical to the seeder's, the torrents carry
``q4d:DONE`` and Home Assistant saw every transfer through. ``--headless`` then
stops everything and exits 0 (non-zero with a message otherwise);
``--screenshot`` first checks the dashboard in headless Chromium. Otherwise the
processes keep running until Ctrl-C or ``scripts/demo --stop``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.cookiejar
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.qbittorrent import QBittorrent  # noqa: E402
from tests.helpers.services import (  # noqa: E402
    LOOPBACK,
    OFFLINE_TRACKER,
    Q4D_BROKER_SETTINGS,
    Mosquitto,
    SshServer,
    free_port,
)

try:
    from scripts.demo_hass import (
        MDNS_SOCKETS,
        PASSWORD,
        USERNAME,
        Dashboard,
        DemoHass,
        HassError,
        Observer,
        chromium,
    )
except ImportError:
    # `--stop` needs only the standard library (scripts/demo may run it on python3).
    if "--stop" not in sys.argv:
        raise

DEMO = ROOT / "demo"
RUN = DEMO / "run"
LIBRARY = DEMO / "library"
STATE = RUN / "state.json"
LOGS = RUN / "logs"
BRIDGE_ID = "demo"
# The shipped dashboard's bridge entity IDs are those of a bridge named "q4d".
BRIDGE_NAME = "q4d"
SEEDBOX_ID = "demo"
DONE_TAG = "q4d:DONE"
STOP_WAIT = 10.0
MiB = 1024 * 1024

# scripts/demo exports its start time, so the clock includes ./scripts/setup.
try:
    T0 = time.monotonic() - max(0.0, time.time() - float(os.environ["DEMO_STARTED_AT"]))
except (KeyError, ValueError):
    T0 = time.monotonic()


class DemoError(Exception):
    """A step of the demo failed; the message says which and where to look."""


class Stopped(Exception):
    """SIGTERM (scripts/demo --stop) or SIGINT (Ctrl-C) arrived."""


def say(message: str) -> None:
    print(f"demo [{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  (no {path})"
    return "\n".join(f"  | {line}" for line in text)


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise DemoError(f"{name} is not installed: run ./scripts/setup (as root)")
    return found


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def listening_beyond_loopback(pid: int, allowed: Collection[str] = ()) -> list[str]:
    """Listening sockets of pid bound to anything but 127.0.0.1/::1 (a safety check),
    but for the named ones in allowed (`udp:*:5353`)."""
    listed = subprocess.run(
        [tool("ss"), "-H", "-ltnup"], capture_output=True, text=True, timeout=10, check=False
    )
    exposed = []
    for line in listed.stdout.splitlines():
        fields = line.split()
        if f"pid={pid}," not in line or len(fields) < 5:
            continue
        address = fields[4].rsplit(":", 1)[0].split("%", 1)[0]
        if address not in {"127.0.0.1", "[::1]"} and f"{fields[0]}:{fields[4]}" not in allowed:
            exposed.append(fields[4])
    return exposed


def connected_beyond_loopback(pid: int) -> list[str]:
    """Peers of pid's TCP connections that are not on loopback."""
    listed = subprocess.run(
        [tool("ss"), "-H", "-tnp", "state", "all"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    remote = []
    for line in listed.stdout.splitlines():
        fields = line.split()
        if f"pid={pid}," not in line or len(fields) < 5 or fields[0] == "LISTEN":
            continue
        address = fields[4].rsplit(":", 1)[0].split("%", 1)[0]
        unconnected = {"*", "0.0.0.0", "[::]"}  # noqa: S104 (peer addresses, not a bind)
        if address not in {"127.0.0.1", "[::1]", *unconnected}:
            remote.append(fields[4])
    return remote


# --- processes, by PID -------------------------------------------------------------


def proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a PID apart from a later reuse of it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int, start_time: str | None) -> bool:
    now = proc_start_time(pid)
    if now is None:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return start_time is None or now == start_time


def descendants(pid: int) -> list[int]:
    """Every process below pid (sshd's per-connection children, qBittorrent's hooks)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def terminate(pid: int, start_time: str | None, name: str) -> None:
    """SIGTERM, wait, SIGKILL: this PID only, then whatever it left running below it."""
    if not alive(pid, start_time):
        return
    below = [(child, proc_start_time(child)) for child in descendants(pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while alive(pid, start_time) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.05)
    if alive(pid, start_time):
        say(f"{name} (pid {pid}) ignored SIGTERM: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    reap(pid)
    for child, started in below:
        if alive(child, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class Proc:
    name: str
    pid: int
    start_time: str | None
    ports: list[int]
    log: str
    allowed: list[str]


class Processes:
    """Everything the demo starts, in start order, mirrored into <run>/state.json
    (demo/run/ for the demo itself), each with its log in <run>/logs/."""

    def __init__(self, run: Path = RUN) -> None:
        self.state = run / "state.json"
        self.logs = run / "logs"
        self.procs: list[Proc] = []
        self.info: dict[str, Any] = {}
        self.popen: dict[int, subprocess.Popen[bytes]] = {}
        self.owns_state = False  # set once this run wrote its state.json

    def save(self) -> None:
        state = {
            "main_pid": os.getpid(),
            "main_start_time": proc_start_time(os.getpid()),
            "procs": [p.__dict__ for p in self.procs],
            "info": self.info,
        }
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state)
        self.owns_state = True

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        ports: tuple[int, ...] = (),
        env: Mapping[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
        timeout: float = 20.0,
        allowed: Collection[str] = (),
    ) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: Ctrl-C reaches only the demo, which stops
            # everything in order.
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        proc = Proc(
            name, popen.pid, proc_start_time(popen.pid), list(ports), str(log), list(allowed)
        )
        self.procs.append(proc)
        self.popen[popen.pid] = popen
        self.save()
        deadline = time.monotonic() + timeout
        while True:
            if popen.poll() is not None:
                raise DemoError(
                    f"{name} exited with code {popen.returncode} while starting; "
                    f"{log}:\n{tail(log)}"
                )
            if all(port_open(p) for p in ports) and (ready is None or ready()):
                break
            if time.monotonic() > deadline:
                raise DemoError(f"{name} not ready after {timeout:.0f} s; {log}:\n{tail(log)}")
            time.sleep(0.1)
        exposed = listening_beyond_loopback(popen.pid, allowed)
        if exposed:
            raise DemoError(f"{name} listens beyond loopback ({', '.join(exposed)}): refusing")
        say(f"started {name} (pid {proc.pid}{', port ' if ports else ''}"
            f"{', '.join(map(str, ports))})")  # fmt: skip
        return proc

    def check_loopback(self) -> None:
        for proc in self.procs:
            exposed = listening_beyond_loopback(proc.pid, proc.allowed)
            if exposed:
                raise DemoError(f"{proc.name} listens beyond loopback ({', '.join(exposed)})")

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            terminate(proc.pid, proc.start_time, proc.name)
            popen = self.popen.get(proc.pid)
            if popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    popen.wait(timeout=1)
            say(f"stopped {proc.name} (pid {proc.pid})")
        still = [p for proc in self.procs for p in proc.ports if port_open(p)]
        if self.owns_state:
            self.state.unlink(missing_ok=True)
        self.procs.clear()
        if still:
            say(f"WARNING: still listening on 127.0.0.1 port(s) {still}")


def stop_recorded() -> int:
    """scripts/demo --stop: end a running demo (and anything it left) by recorded PID."""
    if not STATE.exists():
        print("demo: nothing running (no demo/run/state.json)")
        return 0
    state = json.loads(STATE.read_text())
    main_pid, main_start = int(state["main_pid"]), state.get("main_start_time")
    if main_pid != os.getpid() and alive(main_pid, main_start):
        print(f"demo: stopping the demo (pid {main_pid})", flush=True)
        os.kill(main_pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while alive(main_pid, main_start) and time.monotonic() < deadline:
            time.sleep(0.1)
    for proc in reversed(state.get("procs", [])):
        if alive(proc["pid"], proc.get("start_time")):
            print(f"demo: stopping {proc['name']} (pid {proc['pid']})", flush=True)
            terminate(proc["pid"], proc.get("start_time"), proc["name"])
    ports = [p for proc in state.get("procs", []) for p in proc.get("ports", [])]
    still = [p for p in ports if port_open(p)]
    STATE.unlink(missing_ok=True)
    if still:
        print(f"demo: WARNING: still listening on 127.0.0.1 port(s) {still}", file=sys.stderr)
        return 1
    print("demo: stopped; nothing left listening")
    return 0


def refuse_if_running() -> None:
    if not STATE.exists():
        return
    state = json.loads(STATE.read_text())
    if alive(int(state["main_pid"]), state.get("main_start_time")):
        raise DemoError(
            f"a demo is already running (pid {state['main_pid']}): ./scripts/demo --stop first"
        )
    # A demo that died without cleaning up: stop what it left.
    for proc in state.get("procs", []):
        if alive(proc["pid"], proc.get("start_time")):
            say(f"stopping {proc['name']} (pid {proc['pid']}) left by an earlier run")
            terminate(proc["pid"], proc.get("start_time"), proc["name"])
    STATE.unlink(missing_ok=True)


# --- qBittorrent's WebUI API (stdlib) ----------------------------------------------------


class Qbt:
    def __init__(self, qbt: QBittorrent) -> None:
        self.url = qbt.url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        answer = self.post("auth/login", {"username": qbt.username, "password": qbt.password})
        if answer != b"Ok.":
            raise DemoError(f"qBittorrent at {self.url} refused the login: {answer!r}")

    def _open(self, request: urllib.request.Request | str) -> bytes:
        with self.opener.open(request, timeout=10) as answer:
            data: bytes = answer.read()
            return data

    def post(self, endpoint: str, fields: Mapping[str, str]) -> bytes:
        request = urllib.request.Request(  # noqa: S310 (an http://127.0.0.1 URL we made)
            f"{self.url}/api/v2/{endpoint}",
            data=urlencode(fields).encode(),
            headers={"Referer": self.url},
        )
        return self._open(request)

    def add(self, torrent: bytes, save_path: Path, **fields: str) -> None:
        boundary = "q4ddemoboundary7MA4YWxkTrZu0gW"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in {"savepath": str(save_path), **fields}.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="torrents"; '
            'filename="t.torrent"\r\nContent-Type: application/x-bittorrent\r\n\r\n'.encode()
            + torrent
            + b"\r\n"
        )
        request = urllib.request.Request(  # noqa: S310 (an http://127.0.0.1 URL we made)
            f"{self.url}/api/v2/torrents/add",
            data=b"".join(parts) + f"--{boundary}--\r\n".encode(),
            headers={
                "Referer": self.url,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        answer = self._open(request)
        if answer != b"Ok.":
            raise DemoError(f"qBittorrent at {self.url} refused the torrent: {answer!r}")

    def info(self, info_hash: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(
            self._open(f"{self.url}/api/v2/torrents/info?hashes={info_hash}")
        )
        return found[0] if found else {}

    def tags(self, info_hash: str) -> set[str]:
        return {t.strip() for t in self.info(info_hash).get("tags", "").split(",") if t.strip()}


# --- sample content ------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str  # the torrent's name: a file or a directory
    category: str
    data: Path  # the seeder's copy
    raw: bytes  # the .torrent
    hash: str

    @property
    def landed(self) -> Path:
        return LIBRARY / self.category / self.name


def write_random(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))  # noqa: S311 (not crypto)


def torrent_hash(raw: bytes) -> str:
    import fastbencode  # noqa: PLC0415 (the venv only: --stop runs without it)

    info = fastbencode.bdecode(raw)[b"info"]
    return hashlib.sha1(fastbencode.bencode(info)).hexdigest()  # noqa: S324 (BitTorrent v1)


def make_samples(root: Path) -> list[Sample]:
    movie = "Big.Buck.Demo.2024.1080p.mkv"
    season = "Demo.Show.S01.1080p"
    write_random(root / movie, 24 * MiB + 12345, seed=1)
    for episode in range(1, 5):
        write_random(root / season / f"Demo.Show.S01E0{episode}.mkv", 6 * MiB + episode, episode)
    write_random(root / season / "Subs" / "Demo.Show.S01E01.en.srt", 4321, seed=9)
    (root / season / "Demo.Show.S01.nfo").write_text("A q4d demo season.\n")
    samples = []
    for name, category in ((movie, "movies"), (season, "tv")):
        out = RUN / "torrents" / f"{name}.torrent"
        out.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            [tool("mktorrent"), "-a", OFFLINE_TRACKER, "-o", str(out), str(root / name)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if made.returncode != 0:
            raise DemoError(f"mktorrent failed for {name}: {made.stderr.strip()}")
        raw = out.read_bytes()
        samples.append(Sample(name, category, root / name, raw, torrent_hash(raw)))
    return samples


def digest_tree(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file (a single file: its name)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


# --- watching the bridge over MQTT ---------------------------------------------------


class Watcher:
    """Prints the hook's completions and the bridge's lifecycle events as they happen."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415 (the venv only)
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.completed: dict[str, dict[str, Any]] = {}
        self.items: dict[str, str] = {}  # torrent hash -> the bridge's item id
        self.first_done: float | None = None
        self.online = False
        self.lock = threading.Lock()
        subscribed = threading.Event()
        topics = [
            f"q4d/seedbox/{SEEDBOX_ID}/completed",
            f"q4d/bridge/{BRIDGE_ID}/event",
            f"q4d/bridge/{BRIDGE_ID}/status",
            f"q4d/bridge/{BRIDGE_ID}/item/+",
        ]
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="q4d-demo-watcher", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise DemoError("could not subscribe to the demo broker")

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if message.topic.endswith("/status"):
            self.online = body.get("state") == "online"
            say(f"bridge: {body.get('state')} (MQTT status)")
            return
        if "/item/" in message.topic:
            if body.get("state") == "transferring" and body.get("progress", 0) > 0:
                eta = body.get("eta")
                say(f"bridge: {body.get('name')!r} {body['progress']:5.1f} % at "
                    f"{body.get('rate', 0) / 1e6:.1f} MB/s"
                    f"{f', {eta:.0f} s left' if eta is not None else ''}")  # fmt: skip
            return
        if message.topic.endswith("/completed"):
            say(f"seedbox hook: completed {body.get('name')!r} (category {body.get('category')})")
            return
        kind = body.get("event")
        item = body.get("item") or {}
        name = item.get("name", "")
        if item.get("hash") and item.get("id"):
            with self.lock:
                self.items[item["hash"]] = item["id"]
        if kind == "completed":
            with self.lock:
                self.completed[item.get("hash", "")] = item
                if self.first_done is None:
                    self.first_done = time.monotonic() - T0
            say(f"bridge: completed {name!r} -> {item.get('local_path')} "
                f"(verified: {body.get('verified')})")  # fmt: skip
        elif kind == "rejected":
            say(f"bridge: REJECTED an event: {body.get('reason')} {body.get('detail')}")
        elif kind in {"failed", "waiting"}:
            say(f"bridge: {kind} {name!r}: {item.get('error')}")
        elif kind != "duplicate":
            say(f"bridge: {kind} {name!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the demo --------------------------------------------------------------------------


class Demo:
    def __init__(self, *, headless: bool, timeout: float, screenshot: Path | None) -> None:
        self.headless = headless
        self.screenshot = screenshot
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.procs = Processes()
        self.watcher: Watcher | None = None
        self.observer: Observer | None = None
        self.dashboard: Dashboard | None = None

    def left(self, what: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DemoError(f"gave up after {self.timeout:.0f} s (--timeout) waiting for {what}")
        return left

    def until(self, predicate: Callable[[], Any], what: str, interval: float = 0.3) -> Any:
        while True:
            result = predicate()
            if result:
                return result
            self.left(what)
            time.sleep(interval)

    def prepare(self) -> None:
        refuse_if_running()
        for stale in (RUN, LIBRARY):
            if stale.exists():
                shutil.rmtree(stale)
        for made in (RUN, LOGS, LIBRARY):
            made.mkdir(parents=True, exist_ok=True)
        for name in ("mosquitto", "sshd", "ssh-keygen", "qbittorrent-nox", "mktorrent", "ss"):
            tool(name)
        if self.screenshot is not None:
            chromium()

    def start_services(self) -> None:
        python = sys.executable
        broker = Mosquitto(RUN / "mosquitto", persistent=True, extra_config=Q4D_BROKER_SETTINGS)
        self.procs.start("mosquitto", broker._argv(), ports=(broker.port,))
        self.broker_port = broker.port

        # Home Assistant takes longest to start: it starts first and is set up later.
        self.hass = DemoHass(
            RUN / "hass",
            free_port(),
            dashboard=ROOT / "dashboards" / "q4d.yaml",
            integration=ROOT / "custom_components" / "q4d",
        )
        self.hass.write_config()
        self.hass_proc = self.procs.start(
            "home-assistant", self.hass.argv(python), allowed=MDNS_SOCKETS
        )
        self.procs.info.update(home_assistant=self.hass.url)

        self.sshd = SshServer(RUN / "seedbox" / "sshd")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.sshd._check_config()
        self.procs.start("sshd", self.sshd._argv(), ports=(self.sshd.port,))

        seeder = QBittorrent(RUN / "seeder", password="q4d-demo-seeder")  # noqa: S106
        self.seeder = seeder
        self.procs.start("seeder-qbittorrent", self.seeder._argv(), ports=(self.seeder.port,))
        box = QBittorrent(RUN / "seedbox" / "qbittorrent", password="q4d-demo")  # noqa: S106
        self.box = box
        self.procs.start("seedbox-qbittorrent", self.box._argv(), ports=(self.box.port,))
        self.procs.info.update(
            broker_port=self.broker_port,
            sshd_port=self.sshd.port,
            seedbox_webui=self.box.url,
            seeder_webui=self.seeder.url,
        )
        self.procs.save()

        # The seedbox side, exactly as a user installs it: into the (demo) home.
        self.home = RUN / "seedbox" / "home"
        self.home.mkdir(parents=True)
        password = RUN / "seedbox" / "qbittorrent.password"
        password.write_text(self.box.password + "\n")
        password.chmod(0o600)
        env = {**os.environ, "HOME": str(self.home)}
        say("seedbox/install.sh: installing the hook and the label daemon into the demo HOME")
        installed = subprocess.run(
            [tool("bash"), str(ROOT / "seedbox" / "install.sh"),
             "--broker-host", LOOPBACK, "--broker-port", str(self.broker_port),
             "--seedbox-id", SEEDBOX_ID, "--python", python, "--service", "none",
             "--client", "qbittorrent", "--client-url", self.box.url,
             "--client-user", self.box.username, "--client-password-file", str(password)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        (LOGS / "install.log").write_text(installed.stdout + installed.stderr)
        if installed.returncode != 0:
            raise DemoError(f"seedbox/install.sh failed:\n{tail(LOGS / 'install.log')}")
        self.hook = self.home / ".local" / "bin" / "q4d-hook"
        labeld_log = LOGS / "q4d-labeld.log"
        self.procs.start(
            "q4d-labeld",
            [str(self.home / ".local" / "bin" / "q4d-labeld")],
            env=env,
            ready=lambda: "listening on" in labeld_log.read_text(errors="replace"),
        )

        self.remote = self.box.downloads
        config = self.write_bridge_config()
        self.watcher = Watcher(self.broker_port)
        bridge = str(Path(python).parent / "q4d-bridge")
        checked = subprocess.run(
            [bridge, "check-config", "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if checked.returncode != 0:
            raise DemoError(f"the demo bridge config is invalid:\n{checked.stdout}{checked.stderr}")
        watcher = self.watcher
        self.procs.start(
            "q4d-bridge",
            [bridge, "run", "--config", str(config)],
            ready=lambda: watcher.online,
            timeout=30,
        )
        self.set_up_hass()

    def set_up_hass(self) -> None:
        hass = self.hass
        self.until(hass.http_ready, f"Home Assistant's HTTP API (logs: {LOGS})", interval=0.5)
        self.hass_proc.ports.append(hass.port)
        self.procs.save()
        say(f"Home Assistant is up on {hass.url}: onboarding the demo user, adding MQTT")
        try:
            hass.set_up(self.broker_port, BRIDGE_ID, self.left("Home Assistant's set-up"))
        except (HassError, TimeoutError) as err:
            raise DemoError(f"setting up Home Assistant failed: {err}; "
                            f"log: {hass.config_dir / 'home-assistant.log'}") from err  # fmt: skip
        say("Home Assistant: MQTT added, the q4d bridge discovered and set up; dashboard "
            f"{hass.dashboard_url} (user {USERNAME}, password {PASSWORD})")  # fmt: skip
        self.observer = Observer(hass, LOGS / "hass-observed.jsonl")
        try:
            self.observer.start()
        except HassError as err:
            raise DemoError(str(err)) from err

    def write_bridge_config(self) -> Path:
        import yaml  # noqa: PLC0415 (the venv only)

        config = {
            "bridge": {"id": BRIDGE_ID, "name": BRIDGE_NAME},
            "data_dir": str(RUN / "bridge-data"),
            "log_level": "INFO",
            "broker": {"host": LOOPBACK, "port": self.broker_port, "keepalive": 10},
            "seedboxes": [
                {
                    "id": SEEDBOX_ID,
                    "name": "Demo seedbox",
                    "host": LOOPBACK,
                    "port": self.sshd.port,
                    "user": self.sshd.user,
                    "key": str(self.sshd.client_key),
                    "known_hosts": str(self.sshd.known_hosts),
                    "remote_roots": [str(self.remote)],
                    "max_concurrent": 2,
                    "engine": "sftp",
                    # sshd's user is not the demo HOME the hook was installed into.
                    "hook_flush": f"{shlex.quote(str(self.hook))} flush",
                    "client": {
                        "type": "qbittorrent",
                        "url": self.box.url,
                        "username": self.box.username,
                        "password": self.box.password,
                        "poll_interval": "2s",
                    },
                    "reconcile": {"interval": "1m", "max_age": "1d"},
                }
            ],
            "destinations": {
                "movies": str(LIBRARY / "movies"),
                "tv": str(LIBRARY / "tv"),
                "default": str(LIBRARY / "other"),
            },
            "rules": [
                {"destination": "tv", "match": [{"field": "category", "is": "tv"}]},
                {"destination": "movies", "match": [{"field": "category", "is": "movies"}]},
            ],
            # Limited so that the transfers last long enough to watch in Home Assistant.
            "transfers": {
                "max_concurrent": 2,
                "max_attempts": 3,
                "retry_initial": "1s",
                "bandwidth_limit": "16MiB",
            },
        }
        path = RUN / "bridge.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def run(self) -> int:
        self.prepare()
        say(f"run directory {RUN.relative_to(ROOT)}/ (logs in {LOGS.relative_to(ROOT)}/)")
        samples = make_samples(RUN / "seeder" / "content")
        say("sample content: " + ", ".join(f"{s.name} ({s.category})" for s in samples))
        self.start_services()
        # Held from Home Assistant until both items show there (paused), then resumed.
        self.call_hass("pause")
        say("Home Assistant: q4d.pause (the queue holds until both samples are shown)")
        self.add_samples(samples)
        self.download(samples)
        self.wait_queued(samples)
        if self.screenshot is not None:
            self.open_dashboard()
        self.call_hass("resume")
        say("Home Assistant: q4d.resume")
        if self.screenshot is not None:
            self.capture_dashboard(
                self.screenshot.with_name(f"{self.screenshot.stem}-transferring.png"),
                ["transferring"],
            )
        self.procs.check_loopback()
        self.wait_landed(samples)
        self.check_recorded(samples[0])
        self.check_offline()
        first = self.watcher.first_done if self.watcher else None
        say(f"all {len(samples)} samples landed byte-identical in "
            f"{LIBRARY.relative_to(ROOT)}/ and are tagged {DONE_TAG} on the seedbox")  # fmt: skip
        if first is not None:
            say(f"first completed transfer {first:.1f} s after ./scripts/demo started")
        for sample in samples:
            say(f"  {sample.landed.relative_to(ROOT)}")
        if self.screenshot is not None:
            expect = ["Transfers", "Recent", "Seedboxes", "Demo seedbox"]
            self.capture_dashboard(self.screenshot, expect + [s.name for s in samples])
        if self.headless or self.screenshot is not None:
            return 0
        say(f"Home Assistant: open {self.hass.dashboard_url} "
            f"(user {USERNAME}, password {PASSWORD})")  # fmt: skip
        say(f"the demo keeps running: seedbox qBittorrent {self.box.url} "
            f"(user {self.box.username}, password {self.box.password})")  # fmt: skip
        say(f"MQTT broker 127.0.0.1:{self.broker_port}; Ctrl-C or ./scripts/demo --stop to stop")
        while True:
            time.sleep(3600)

    def add_samples(self, samples: list[Sample]) -> None:
        seeder, box = Qbt(self.seeder), Qbt(self.box)
        for sample in samples:
            seeder.add(sample.raw, sample.data.parent)
        for sample in samples:
            self.until(lambda s=sample: seeder.info(s.hash).get("progress") == 1,
                       f"the seeder to check {sample.name}")  # fmt: skip
        say("seeder: seeding both samples")
        for category in {s.category for s in samples}:
            box.post("torrents/createCategory", {"category": category, "savePath": ""})
        for sample in samples:
            box.add(sample.raw, self.remote, category=sample.category)
            say(f"seedbox: added {sample.name} (category {sample.category})")

    def download(self, samples: list[Sample]) -> None:
        box = Qbt(self.box)
        peer = f"{LOOPBACK}:{self.seeder.peer_port}"
        pending = {s.hash: s for s in samples}
        while pending:
            for info_hash, sample in list(pending.items()):
                info = box.info(info_hash)
                if info.get("progress") == 1:
                    say(f"seedbox: finished downloading {sample.name}")
                    del pending[info_hash]
                elif info:
                    # Offline: no tracker, DHT or LSD, so the seeder is given by hand.
                    box.post("torrents/addPeers", {"hashes": info_hash, "peers": peer})
            if pending:
                self.left("the seedbox's downloads")
                time.sleep(0.5)

    def call_hass(self, service: str) -> None:
        try:
            self.hass.call("q4d", service)
        except HassError as err:
            raise DemoError(f"Home Assistant's q4d.{service} failed: {err}") from err

    def item_id(self, sample: Sample) -> str:
        watcher = self.watcher
        assert watcher is not None
        found: str = self.until(lambda: watcher.items.get(sample.hash),
                                f"the bridge to queue {sample.name}")  # fmt: skip
        return found

    def wait_queued(self, samples: list[Sample]) -> None:
        """Queued while the queue is paused: Home Assistant shows them paused."""
        observer = self.observer
        assert observer is not None
        for sample in samples:
            item_id = self.item_id(sample)
            self.until(lambda i=item_id: observer.went_through(i, "paused"),
                       f"Home Assistant to show {sample.name} paused")  # fmt: skip
            say(f"Home Assistant: {observer.entities[item_id]} is paused")

    def wait_landed(self, samples: list[Sample]) -> None:
        box = Qbt(self.box)
        observer = self.observer
        assert observer is not None
        for sample in samples:
            self.until(lambda s=sample: DONE_TAG in box.tags(s.hash),
                       f"the {DONE_TAG} tag on {sample.name} (logs: {LOGS})")  # fmt: skip
            if not sample.landed.exists():
                raise DemoError(f"{sample.name} is tagged DONE but {sample.landed} does not exist")
            if digest_tree(sample.landed) != digest_tree(sample.data):
                raise DemoError(f"{sample.landed} differs from the seeder's {sample.data}")
            say(f"verified {sample.landed.relative_to(ROOT)}: byte-identical, tagged {DONE_TAG}")
            item_id = self.item_id(sample)
            self.until(lambda i=item_id: observer.went_through(i, "done")
                       and observer.fired("completed", i),
                       f"Home Assistant to show {sample.name} done")  # fmt: skip
            if not observer.went_through(item_id, "paused", "transferring", "done"):
                raise DemoError(f"Home Assistant showed {sample.name} as "
                                f"{' -> '.join(observer.states[item_id])}, "
                                "not paused -> transferring -> done")  # fmt: skip
            went = " -> ".join(observer.states[item_id])
            say(f"Home Assistant: {observer.entities[item_id]} went {went}; "
                "q4d_transfer_completed fired")  # fmt: skip

    def check_recorded(self, sample: Sample) -> None:
        """History and Logbook (the recorder) have what Home Assistant saw."""
        observer = self.observer
        assert observer is not None
        item_id = self.item_id(sample)
        entity_id = observer.entities[item_id]
        seen = len(observer.states[item_id])  # queued, transferring, ... done

        def recorded() -> tuple[int, int] | None:
            try:
                states, entries = self.hass.recorded(entity_id)
            except HassError as err:
                raise DemoError(f"Home Assistant's History or Logbook failed: {err}") from err
            return (states, entries) if states >= seen and entries else None

        states, entries = self.until(recorded, f"History and Logbook to show {entity_id}")
        say(f"Home Assistant: History has {states} states of {entity_id}, "
            f"the Logbook {entries} entries")  # fmt: skip

    def check_offline(self) -> None:
        """Home Assistant (like everything else here) talks to loopback only."""
        for proc in self.procs.procs:
            remote = connected_beyond_loopback(proc.pid)
            if remote:
                raise DemoError(f"{proc.name} connected beyond loopback: {', '.join(remote)}")

    def open_dashboard(self) -> None:
        say(f"headless Chromium: logging in and opening {self.hass.dashboard_url}")
        try:
            self.dashboard = Dashboard(
                self.hass, self.left("the browser"), request_log=LOGS / "chromium-requests.jsonl"
            )
        except Exception as err:
            raise DemoError(f"opening the dashboard failed: {err}") from err

    def capture_dashboard(self, screenshot: Path, expect: list[str]) -> None:
        assert self.dashboard is not None
        try:
            titles = self.dashboard.capture(screenshot, expect)
        except Exception as err:
            raise DemoError(f"the dashboard never showed {expect}: {err}") from err
        say(f"dashboard rendered its cards ({', '.join(titles)}); screenshot {screenshot}")

    def stop(self) -> None:
        if self.dashboard is not None:
            self.dashboard.close()
            browser = self.dashboard.browser
            blocked = browser.blocked()
            say(f"headless Chromium: {browser.loopback_requests()} requests to 127.0.0.1, "
                f"{len(blocked)} beyond loopback blocked{': ' if blocked else ''}"
                f"{', '.join(blocked)} (log: {browser.request_log.relative_to(ROOT)})")  # fmt: skip
        if self.observer is not None:
            self.observer.stop()
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.close()
        self.procs.stop_all()


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class TimedCheck:
    """A headless check's clock: every wait draws on one deadline."""

    poll = 0.1  # seconds between looks at a predicate

    def __init__(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout

    def left(self, what: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DemoError(f"gave up after {self.timeout:.0f} s waiting for {what}")
        return left

    def until(self, predicate: Callable[[], Any], what: str) -> Any:
        while not (result := predicate()):
            self.left(what)
            time.sleep(self.poll)
        return result


def run_check(
    name: str, body: Callable[[], None], stop: Callable[[], None], where: Callable[[], str]
) -> int:
    """A headless check (the card's, the docs' screenshots): body run, everything it
    started stopped whatever happens; 0 when body returned. where: what to look at on a
    failure."""
    code = 1
    with signals_raise():
        try:
            body()
            code = 0
        except Stopped as stopped:
            say(f"{stopped}: stopping")
        except Exception as err:  # Playwright's errors too: reported, then all is stopped
            say(f"FAILED: {err} ({where()})")
        finally:
            stop()
    say(f"{name}: OK" if code == 0 else f"{name} failed (exit code {code})")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.split("\n")[0])
    parser.add_argument("--headless", action="store_true",
                        help="run the loop, check the samples landed, stop, exit 0/1")  # fmt: skip
    parser.add_argument("--stop", action="store_true",
                        help="stop a running demo (every process it started)")  # fmt: skip
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="run the loop, check the q4d dashboard in headless Chromium, "
                        "save a screenshot of it, stop; exit 0/1")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=240.0,
                        help="give up after this many seconds (default 240)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.stop:
        return stop_recorded()
    demo = Demo(headless=args.headless, timeout=args.timeout, screenshot=args.screenshot)
    code = 1
    with signals_raise():
        try:
            code = demo.run()
        except Stopped as stop:
            say(f"{stop}: stopping")
            code = 130 if str(stop) == "SIGINT" else 0
        except DemoError as err:
            say(f"FAILED: {err}")
            code = 1
        finally:
            # Signals during the shutdown must not cut it short.
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            demo.stop()
    say("demo finished: OK" if code == 0 else f"demo finished with exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
