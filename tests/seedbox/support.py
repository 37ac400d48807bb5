"""Helpers for the seedbox tests: configs, running the hook as a subprocess, an MQTT
subscriber that counts, and the torrent-client daemons (transmission-daemon, rtorrent,
deluged + deluge-web) on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from q4d_seedbox.clients.http import Http

from tests.helpers.services import (
    LOOPBACK,
    OFFLINE_TRACKER,
    _Service,
    _stop_process,
    _which,
    free_port,
)
from tests.seedbox import SEEDBOX

HOOK = SEEDBOX / "bin" / "q4d-hook"
HOOK_DELUGE = SEEDBOX / "bin" / "q4d-hook-deluge"
LABELD = SEEDBOX / "bin" / "q4d-labeld"
SEEDBOX_ID = "sb1"
COMPLETED = f"q4d/seedbox/{SEEDBOX_ID}/completed"
LABEL = f"q4d/seedbox/{SEEDBOX_ID}/label"
SEQUENCE = f"q4d/seedbox/{SEEDBOX_ID}/sequence"


# --- config and running the hook ------------------------------------------------------


def write_config(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


@dataclass
class Seedbox:
    """A seedbox config (broker, outbox, log) in a temporary directory."""

    root: Path
    port: int
    mqtt: dict[str, object]
    hook: dict[str, object]
    labels: dict[str, object] | None = None

    @property
    def config(self) -> Path:
        sections: dict[str, Mapping[str, object]] = {"mqtt": self.mqtt, "hook": self.hook}
        if self.labels is not None:
            sections["labels"] = self.labels
        return write_config(self.root / "seedbox.conf", sections)

    @property
    def outbox(self) -> Path:
        return Path(str(self.hook["outbox"]))

    def pending(self) -> list[Path]:
        return sorted(self.outbox.glob("*.msg")) if self.outbox.exists() else []

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TR_")}
        env["Q4D_SEEDBOX_CONFIG"] = str(self.config)
        env.update(extra or {})
        return env

    def hook_run(
        self,
        *args: str,
        program: Path = HOOK,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, str(program), *args],
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def hook_start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(HOOK), *args],
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def info_hash(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


# --- an MQTT subscriber that counts what arrives --------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[Received] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("subscription not acknowledged")

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(Received(message.topic, message.payload))
            self._changed.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def wait_count(self, topic: str, count: int, timeout: float = 15) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len([m for m in self.messages if m.topic == topic]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len([m for m in self.messages if m.topic == topic])
                    raise AssertionError(f"{got} of {count} messages on {topic} after {timeout}s")
                self._changed.wait(left)
        return self.on(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(LOOPBACK, port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- torrents -------------------------------------------------------------------------


def make_torrent(payload: Path, out: Path) -> bytes:
    """A real .torrent for payload (a closed loopback tracker); returns its bytes."""
    subprocess.run(
        ["mktorrent", "-a", OFFLINE_TRACKER, "-o", str(out), str(payload)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out.read_bytes()


def torrent_hash(torrent: bytes) -> str:
    """The v1 info-hash: SHA-1 of the bencoded info dictionary."""
    import fastbencode

    info = fastbencode.bdecode(torrent)[b"info"]
    return hashlib.sha1(fastbencode.bencode(info)).hexdigest()


# --- torrent-client daemons ------------------------------------------------------------


class Transmission(_Service):
    """transmission-daemon on 127.0.0.1 with RPC basic auth, offline."""

    def __init__(self, workdir: Path, *, done_script: Path | None = None) -> None:
        self.workdir = workdir
        self.host = LOOPBACK
        self.port = free_port()
        self.peer_port = free_port()
        self.username, self.password = "q4d", "tr-test-pw"
        self.downloads = workdir / "downloads"
        self.log_path = workdir / "transmission.log"
        self.binary = _which("transmission-daemon")
        self._proc = None
        self._log = None
        (workdir / "config").mkdir(parents=True, exist_ok=True)
        self.downloads.mkdir(exist_ok=True)
        settings = {
            "rpc-bind-address": LOOPBACK,
            "rpc-port": self.port,
            "rpc-authentication-required": True,
            "rpc-username": self.username,
            "rpc-password": self.password,
            "rpc-whitelist-enabled": True,
            "rpc-whitelist": "127.0.0.1",
            "rpc-host-whitelist-enabled": False,
            "dht-enabled": False,
            "lpd-enabled": False,
            "pex-enabled": False,
            "utp-enabled": False,
            "port-forwarding-enabled": False,
            "peer-port": self.peer_port,
            "download-dir": str(self.downloads),
            "script-torrent-done-enabled": done_script is not None,
            "script-torrent-done-filename": str(done_script or ""),
        }
        (workdir / "config" / "settings.json").write_text(json.dumps(settings))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/transmission/rpc"

    def _argv(self) -> list[str]:
        return [self.binary, "-f", "-g", str(self.workdir / "config")]

    def start(self) -> None:
        self._spawn()


class RTorrent:
    """rtorrent in daemon mode, XML-RPC on an SCGI TCP port or Unix socket."""

    def __init__(self, workdir: Path, *, unix: bool = False) -> None:
        self.workdir = workdir
        self.binary = _which("rtorrent")
        self.socket = workdir / "rpc.sock"
        self.port = free_port()
        self.unix = unix
        (workdir / "session").mkdir(parents=True, exist_ok=True)
        self.downloads = workdir / "downloads"
        self.downloads.mkdir(exist_ok=True)
        scgi = (
            f"network.scgi.open_local = {self.socket}"
            if unix
            else f"network.scgi.open_port = 127.0.0.1:{self.port}"
        )
        peer = free_port()
        (workdir / "rtorrent.rc").write_text(
            "\n".join(
                [
                    f"session.path.set = {workdir / 'session'}",
                    f"directory.default.set = {self.downloads}",
                    scgi,
                    f"network.port_range.set = {peer}-{peer}",
                    "network.bind_address.set = 127.0.0.1",
                    "dht.mode.set = disable",
                    "protocol.pex.set = no",
                    "trackers.use_udp.set = no",
                    "system.daemon.set = true",
                    "",
                ]
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"scgi://{self.socket}" if self.unix else f"scgi://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.unix:  # left by an earlier run (a restart): ready() waits for a new one
            self.socket.unlink(missing_ok=True)
        log = (self.workdir / "rtorrent.log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-n", "-o", f"import={self.workdir / 'rtorrent.rc'}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def ready() -> bool:
            assert self._proc is not None and self._proc.poll() is None, "rtorrent exited"
            if self.unix:
                return self.socket.exists()
            return _port_open(self.port)

        wait_until(ready, 10, "rtorrent's SCGI endpoint", 0.05)

    def stop(self) -> None:
        _stop_process(self._proc)
        self._proc = None


# deluged 2.0.3 starts its libtorrent session with libtorrent's defaults (DHT, LSD,
# UPnP and NAT-PMP on) and applies its own core.conf only afterwards: by then the DHT
# has looked up its bootstrap nodes (dht.libtorrent.org) and UPnP has sent SSDP to
# 239.255.255.250. This starts deluged with those off in the session's first settings.
DELUGED_OFFLINE = """\
import runpy, sys
import libtorrent
OFFLINE = {"enable_dht": False, "enable_lsd": False, "enable_upnp": False,
           "enable_natpmp": False, "dht_bootstrap_nodes": ""}
class session(libtorrent.session):
    def __init__(self, settings=None, *args, **kwargs):
        super().__init__({**(settings or {}), **OFFLINE}, *args, **kwargs)
libtorrent.session = session
sys.argv[0] = sys.argv.pop(1)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class Deluge:
    """deluged plus deluge-web (JSON-RPC) on loopback; web password `deluge`; offline:
    no DHT (its bootstrap looks up dht.libtorrent.org, router.bittorrent.com and
    others), UPnP or NAT-PMP (SSDP multicast), LSD or PeX, from its first moment
    (DELUGED_OFFLINE) and in its own config (core.conf)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "config"
        self.config.mkdir(parents=True, exist_ok=True)
        offline = {"dht": False, "upnp": False, "natpmp": False, "lsd": False, "utpex": False,
                   "new_release_check": False}  # fmt: skip
        # Deluge's config format: a version object, then the values (merged over its
        # defaults).
        (self.config / "core.conf").write_text(
            json.dumps({"file": 1, "format": 1}) + json.dumps(offline)
        )
        self.downloads = workdir / "downloads"
        self.downloads.mkdir(exist_ok=True)
        self.daemon_port = free_port()
        self.web_port = free_port()
        self.password = "deluge"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._daemon: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}/json"

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._procs.append(proc)
        return proc

    def start(self) -> None:
        self.start_daemon()
        self.start_web()

    def start_daemon(self) -> None:
        deluged = _which("deluged")
        # Its own interpreter, from its #! line (Debian's: /usr/bin/python3).
        python = Path(deluged).read_text(errors="replace").splitlines()[0].removeprefix("#!")
        launcher = self.workdir / "deluged-offline.py"
        launcher.write_text(DELUGED_OFFLINE)
        self._daemon = self._spawn(
            [*python.split(), str(launcher), deluged, "-d", "-c", str(self.config),
             "-p", str(self.daemon_port), "-i", LOOPBACK, "-u", LOOPBACK, "-L", "warning"],
            "deluged",
        )  # fmt: skip
        auth = self.config / "auth"
        wait_until(
            lambda: auth.exists() and auth.read_text().strip(), 15, "deluged's auth file", 0.05
        )
        wait_until(lambda: _port_open(self.daemon_port), 15, "deluged", 0.05)
        secret = auth.read_text().split(":")[1]
        hosts = {"hosts": [["q4dtest", LOOPBACK, self.daemon_port, "localclient", secret]]}
        (self.config / "hostlist.conf").write_text(
            json.dumps({"file": 3, "format": 1}) + json.dumps(hosts)
        )

    def start_web(self) -> None:
        self._spawn(
            [_which("deluge-web"), "-d", "-c", str(self.config), "-p", str(self.web_port),
             "-i", LOOPBACK, "-L", "warning"],
            "deluge-web",
        )  # fmt: skip
        wait_until(lambda: _port_open(self.web_port), 15, "deluge-web", 0.05)

    def stop_daemon(self) -> None:
        """deluged only: deluge-web stays, without a daemon."""
        if self._daemon is not None:
            _stop_process(self._daemon)
            self._procs.remove(self._daemon)
            self._daemon = None

    def stop(self) -> None:
        for proc in reversed(self._procs):
            _stop_process(proc)
        self._procs.clear()
        self._daemon = None


def _port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (scripts/setup installs it)")


class TransmissionRpc:
    """The test's own RPC client, to set up torrents and read labels back."""

    def __init__(self, daemon: Transmission) -> None:
        self.daemon = daemon
        self.session = ""

    def __call__(self, method: str, **arguments: Any) -> dict[str, Any]:
        import base64

        token = base64.b64encode(f"{self.daemon.username}:{self.daemon.password}".encode()).decode()
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(2):
            request = urllib.request.Request(
                self.daemon.url,
                data=body,
                headers={
                    "Authorization": f"Basic {token}",
                    "X-Transmission-Session-Id": self.session,
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    data: dict[str, Any] = json.loads(answer.read())
                    assert data["result"] == "success", data
                    result: dict[str, Any] = data["arguments"]
                    return result
            except urllib.error.HTTPError as err:
                if err.code != 409:
                    raise
                self.session = err.headers["X-Transmission-Session-Id"]
        raise AssertionError("no session id")


class QbtApi:
    """The test's own WebUI API client (urllib), to add torrents and read tags back."""

    def __init__(self, url: str, username: str, password: str) -> None:
        import http.cookiejar

        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        answer = self._post(
            "auth/login", urlencode({"username": username, "password": password}).encode()
        )
        assert answer == b"Ok.", answer

    def _post(
        self, endpoint: str, body: bytes, content_type: str = "application/x-www-form-urlencoded"
    ) -> bytes:
        request = urllib.request.Request(
            f"{self.url}/api/v2/{endpoint}",
            data=body,
            headers={"Referer": self.url, "Content-Type": content_type},
        )
        with self.opener.open(request, timeout=10) as answer:
            data: bytes = answer.read()
            return data

    def add(self, torrent: bytes, save_path: Path, **fields: str) -> None:
        boundary = "q4dtestboundary7MA4YWxkTrZu0gW"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in {"savepath": str(save_path), **fields}.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="torrents"; filename="t.torrent"\r\n'
            "Content-Type: application/x-bittorrent\r\n\r\n".encode()
            + torrent
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        assert (
            self._post("torrents/add", body, f"multipart/form-data; boundary={boundary}") == b"Ok."
        )

    def info(self, info_hash: str) -> dict[str, Any]:
        with self.opener.open(
            f"{self.url}/api/v2/torrents/info?hashes={info_hash}", timeout=10
        ) as answer:
            found: list[dict[str, Any]] = json.loads(answer.read())
        return found[0] if found else {}

    def tags(self, info_hash: str) -> set[str]:
        return {t.strip() for t in self.info(info_hash).get("tags", "").split(",") if t.strip()}

    def set_preferences(self, **prefs: Any) -> None:
        self._post("app/setPreferences", urlencode({"json": json.dumps(prefs)}).encode())

    def preferences(self) -> dict[str, Any]:
        with self.opener.open(f"{self.url}/api/v2/app/preferences", timeout=10) as answer:
            prefs: dict[str, Any] = json.loads(answer.read())
        return prefs

    def add_peers(self, info_hash: str, *peers: str) -> None:
        """Point a torrent at peers (host:port): how an offline leecher finds the seeder."""
        fields = {"hashes": info_hash, "peers": "|".join(peers)}
        self._post("torrents/addPeers", urlencode(fields).encode())


class LabelDaemonProcess:
    """q4d-labeld as a subprocess, stopped with SIGTERM."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.parent / "labeld.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LabelDaemonProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(LABELD), "--config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: "listening on" in self.log.read_text(), 15, "labeld to subscribe", 0.05)
        return self

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        self.proc = None
        return code

    def kill(self) -> None:
        _stop_process(self.proc)
        self.proc = None


class DelugeWeb:
    """The test's own JSON-RPC session, to add the torrent and read its label."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = Http(10)
        assert self("auth.login", "deluge") is True
        hosts = self("web.get_hosts")
        self("web.connect", hosts[0][0])

    def __call__(self, method: str, *params: Any) -> Any:
        answer = self.http.post(
            self.url,
            json.dumps({"method": method, "params": list(params), "id": 1}).encode(),
            {"Content-Type": "application/json"},
        )
        data = json.loads(answer.body)
        assert data["error"] is None, data["error"]
        return data["result"]


def install_hook(home: Path, tmp: Path, box: Any, broker_port: int) -> None:
    """q4d-hook installed by install.sh into `home`, wired into the seedbox qBittorrent
    `box` (tests/helpers/qbittorrent.py) through its WebUI API."""
    password = tmp / "qbt.password"
    password.write_text(box.password + "\n")
    password.chmod(0o600)
    installed = subprocess.run(
        ["bash", str(SEEDBOX / "install.sh"),
         "--broker-host", "127.0.0.1", "--broker-port", str(broker_port),
         "--seedbox-id", SEEDBOX_ID, "--python", sys.executable, "--service", "none",
         "--client", "qbittorrent", "--client-url", box.url,
         "--client-user", box.username, "--client-password-file", str(password)],
        env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
