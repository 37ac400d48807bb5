"""A real seeding peer on 127.0.0.1, so tests can have a seedbox's torrent client
actually download a torrent, by magnet link or by .torrent.

The peer is a libtorrent session inside the test process (the venv's libtorrent
bindings): no daemon to configure, start, poll and kill, and nothing left running if the
test process dies. It listens on an ephemeral loopback port with DHT, LSD, UPnP and
NAT-PMP off and PeX off for each torrent, and announces nowhere (its torrents carry no
trackers). `seed()` writes a payload of random bytes, makes its .torrent (v1 or hybrid),
adds it with its data and returns once the seeder has checked it 100 %.

Leechers find it two ways, both on loopback:
* the magnet's peer hint `x.pe=127.0.0.1:<port>`: libtorrent reads it (qBittorrent,
  Deluge), Transmission 3 and rTorrent 0.9.8 ignore it;
* a minimal HTTP tracker on 127.0.0.1 (`tr=` in the magnet, `announce` in the .torrent)
  that answers an announce for a seeded torrent with the seeder's address, and has the
  seeder dial the announcer: Transmission drops 127.x addresses a tracker hands it as
  "martian" (it never dials them) but takes incoming connections from there. It
  records every announce, which tells why a download did not start.

    with Seeder(tmp_path / "seeder") as seeder:
        seeded = seeder.seed("Show.S01E01.mkv", [4 * MiB])
        await client.add(NewTorrent(magnet=seeded.magnet))  # or torrent_file=seeded.torrent
        ... poll until complete ...
        assert seeded.differences(Path(torrent.content_path)) == []
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, quote, urlsplit

import fastbencode

from tests.helpers.services import LOOPBACK
from tests.helpers.torrents import torrent_of

MiB = 2**20
PIECE_SIZE = 64 * 1024  # a few MiB make dozens of pieces: several in flight at once
START_TIMEOUT = 10.0
SEED_CHECK_TIMEOUT = 20.0
ANNOUNCE_INTERVAL = 5  # seconds: each re-announce is another chance to be dialled


@dataclass(frozen=True)
class Announce:
    info_hash: str  # hex: 40 digits (a v2 hash is announced cut to 20 bytes)
    client: str  # the announcer's address as the tracker saw it
    port: int  # its peer port, as it announced it
    event: str  # started, completed, stopped or ""
    user_agent: str


@dataclass(frozen=True)
class Seeded:
    """A torrent the seeder has in full, and what a leecher needs to fetch it."""

    name: str
    source: Path  # the seeder's copy: the file, or the torrent's folder
    files: dict[str, bytes]  # path inside the torrent ("" for a single file) -> contents
    torrent: bytes  # the .torrent (its announce: the seeder's tracker)
    info_hash: str  # v1, lowercase hex
    info_hash_v2: str | None  # SHA-256, lowercase hex, of a hybrid torrent; else None
    peer: str  # the seeder, "127.0.0.1:<port>"
    tracker: str  # the announce URL

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())

    @property
    def short_v2(self) -> str | None:
        """The v2 hash cut to 40 digits: how libtorrent 2.0 clients (qBittorrent 4.4+,
        Deluge on libtorrent 2.0) list a hybrid torrent, rather than by its v1 hash."""
        return self.info_hash_v2[:40] if self.info_hash_v2 else None

    @property
    def magnet(self) -> str:
        """Every hash, the peer hint and the tracker."""
        return self.magnet_uri()

    def magnet_uri(self, *, peer: bool = True, tracker: bool = True, v2: bool = True) -> str:
        """A magnet with a choice of parts: rTorrent 0.9.8 does not take one with a v2
        hash (`xt=urn:btmh:`), a test of the peer hint leaves the tracker out."""
        parts = [f"xt=urn:btih:{self.info_hash}"]
        if v2 and self.info_hash_v2 is not None:
            parts.append(f"xt=urn:btmh:1220{self.info_hash_v2}")
        parts.append(f"dn={quote(self.name, safe='')}")
        if tracker:
            parts.append(f"tr={quote(self.tracker, safe='')}")
        if peer:
            parts.append(f"x.pe={self.peer}")
        return "magnet:?" + "&".join(parts)

    def differences(self, content_path: Path) -> list[str]:
        """What a download at content_path (the file, or the torrent's folder) lacks or
        has wrong, byte for byte; [] when it is the payload. Files that are not the
        payload's (padding a client wrote out) are not looked at."""
        wrong: list[str] = []
        for rel, expected in self.files.items():
            path = content_path / rel if rel else content_path
            if not path.is_file():
                wrong.append(f"{path}: missing")
            elif (got := path.read_bytes()) != expected:
                wrong.append(f"{path}: {len(got)} bytes, {_first_difference(got, expected)}")
        return wrong


def _first_difference(got: bytes, expected: bytes) -> str:
    for offset, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            return f"first difference at byte {offset}"
    return f"{len(expected)} expected"


def make_payload(root: Path, name: str, sizes: Sequence[int], seed: int = 0) -> dict[str, bytes]:
    """Random bytes, the same for the same seed, at root/name: one size makes a single
    file, several a folder whose second and later files sit one level down (a nested
    path). Returns {path inside the torrent: bytes}."""
    rng = random.Random(seed)  # test data, not secrets
    if len(sizes) == 1:
        files = {"": rng.randbytes(sizes[0])}
    else:
        files = {
            (f"part{n:02d}.bin" if n == 0 else f"extras/part{n:02d}.bin"): rng.randbytes(size)
            for n, size in enumerate(sizes)
        }
    for rel, data in files.items():
        path = root / name / rel if rel else root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def make_torrent(payload: Path, *, hybrid: bool = False, tracker: str | None = None) -> bytes:
    """The .torrent of payload (a file or a folder): v1 only, or hybrid (v1 + v2; a
    folder's files then get v1 padding between them)."""
    return torrent_of(payload, "hybrid" if hybrid else "v1", piece_size=PIECE_SIZE, tracker=tracker)


class _Tracker(ThreadingHTTPServer):
    """Announces in, the seeder's address out (compact), and the announcer dialled."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Announces)
        # 20-byte info-hash -> (the seeder's torrent handle, the peers to hand out)
        self.swarms: dict[bytes, tuple[Any, list[tuple[str, int]]]] = {}
        self.announces: list[Announce] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}/announce"


class _Announces(BaseHTTPRequestHandler):
    server: _Tracker
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/announce":
            self._answer(404, b"")
            return
        # info_hash is 20 raw bytes, percent-encoded: latin-1 keeps them byte for byte.
        query = parse_qs(parts.query, encoding="latin-1")
        info_hash = query.get("info_hash", [""])[0].encode("latin-1")
        port = int(query.get("port", ["0"])[0] or 0)
        event = query.get("event", [""])[0]
        client = self.client_address[0]
        with self.server.lock:
            self.server.announces.append(
                Announce(info_hash.hex(), client, port, event, self.headers.get("User-Agent", ""))
            )
            swarm = self.server.swarms.get(info_hash)
        if swarm is None:
            self._answer(200, fastbencode.bencode({b"failure reason": b"unknown torrent"}))
            return
        handle, peers = swarm
        wants = event != "stopped" and query.get("left", ["1"])[0] != "0"
        if wants and port and client == LOOPBACK:
            # The seeder dials the leecher too (libtorrent queues this for its network
            # thread; a peer it is connected to already is not dialled again).
            handle.connect_peer((client, port))
        compact = b"".join(
            bytes(int(octet) for octet in host.split(".")) + p.to_bytes(2, "big")
            for host, p in peers
        )
        body = {b"interval": ANNOUNCE_INTERVAL, b"min interval": 1,
                b"complete": len(peers), b"incomplete": 0, b"peers": compact}  # fmt: skip
        self._answer(200, fastbencode.bencode(body))

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # kept in `announces`, not printed


class Seeder:
    """The seeding peer and its tracker; start() and stop(), or a context manager.
    What it seeds is written under workdir/seed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.port = 0  # the peer port, once started
        self._session: Any = None
        self._tracker: _Tracker | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def tracker_url(self) -> str:
        assert self._tracker is not None, "start() first"
        return self._tracker.url

    @property
    def announces(self) -> list[Announce]:
        assert self._tracker is not None, "start() first"
        with self._tracker.lock:
            return list(self._tracker.announces)

    def start(self) -> None:
        import libtorrent as lt

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._session = lt.session(
            {
                "listen_interfaces": f"{LOOPBACK}:0",  # the kernel picks the port
                "enable_dht": False,
                "dht_bootstrap_nodes": "",
                "enable_lsd": False,
                "enable_upnp": False,
                "enable_natpmp": False,
                # Every leecher comes from 127.0.0.1; by default a second connection
                # from one address is turned away.
                "allow_multiple_connections_per_ip": True,
                # It dials over TCP only: Transmission's fixture has uTP off, and a uTP
                # dial waits out a 3 s timeout before libtorrent tries TCP. Incoming
                # uTP stays on (libtorrent leechers try it first).
                "enable_outgoing_utp": False,
                # Transmission hangs up once it has a magnet's metadata and will not
                # dial 127.x itself: the seeder dials it again within a second, not a
                # minute.
                "min_reconnect_time": 1,
                "alert_mask": lt.alert_category.error,
            }
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not self._session.is_listening() or self._session.listen_port() == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the seeder is not listening after {START_TIMEOUT} s")
                time.sleep(0.02)
            self.port = self._session.listen_port()
            self._tracker = _Tracker()
            self._thread = threading.Thread(
                target=self._tracker.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._thread.start()
        except BaseException:
            self.stop()
            raise

    def limit_upload(self, rate: int) -> None:
        """Seed at most `rate` bytes/s (0: unlimited), so a download lasts long enough to
        be watched."""
        assert self._session is not None, "start() first"
        # loopback peers count as local, which libtorrent exempts from the limits
        self._session.apply_settings(
            {"upload_rate_limit": rate, "ignore_limits_on_local_network": False}
        )

    def stop(self) -> None:
        if self._tracker is not None:
            if self._thread is not None:
                self._tracker.shutdown()  # returns once serve_forever has
                self._thread.join(timeout=5)
                self._thread = None
            self._tracker.server_close()
            self._tracker = None
        # The session's destructor closes its sockets and joins its threads; with no
        # trackers and no DHT it has nobody to say goodbye to, so it does not linger.
        self._session = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def seed(
        self, name: str, sizes: Sequence[int] = (4 * MiB,), *, hybrid: bool = False, seed: int = 0
    ) -> Seeded:
        """Writes a payload (one size: a file; several: a folder), makes its .torrent
        and seeds it; returns once the seeder has checked it complete."""
        import libtorrent as lt

        assert self._session is not None and self._tracker is not None, "start() first"
        root = self.workdir / "seed"
        files = make_payload(root, name, sizes, seed)
        torrent = make_torrent(root / name, hybrid=hybrid, tracker=self._tracker.url)
        info = lt.torrent_info(torrent)
        hashes = info.info_hashes()
        v1 = bytes.fromhex(str(hashes.v1))
        v2 = bytes.fromhex(str(hashes.v2)) if hashes.has_v2() else None
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(root)
        # No trackers (leechers learn the seeder's address from the tracker or the
        # magnet, the seeder needs nobody's) and no PeX (it hands out pieces, not peers).
        params.trackers = []
        params.flags = (
            params.flags | lt.torrent_flags.override_trackers | lt.torrent_flags.disable_pex
        ) & ~lt.torrent_flags.paused
        handle = self._session.add_torrent(params)
        with self._tracker.lock:
            # A hybrid torrent is announced under both hashes, v2 cut to 20 bytes.
            for key in (v1, v2[:20] if v2 else None):
                if key is not None:
                    self._tracker.swarms[key] = (handle, [(LOOPBACK, self.port)])
        deadline = time.monotonic() + SEED_CHECK_TIMEOUT
        while not (status := handle.status()).is_seeding:
            if status.errc.value() != 0 or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the seeder did not check {name} complete: {status.state}, "
                    f"{status.progress:.0%}, {status.errc.message()}"
                )
            time.sleep(0.05)
        return Seeded(
            name=name,
            source=root / name,
            files=files,
            torrent=torrent,
            info_hash=v1.hex(),
            info_hash_v2=v2.hex() if v2 else None,
            peer=self.address,
            tracker=self._tracker.url,
        )
