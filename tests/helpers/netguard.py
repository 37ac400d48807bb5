"""A network guard for tests: commands run in a network namespace where every name
lookup and every packet bound beyond loopback is recorded, and none leaves the machine.

:class:`NetGuard` (root only) sets up, and in ``stop()`` removes again, even after a
failure half-way:

* the namespace ``q4dguard<pid>x<n>``, loopback up;
* a TUN device in it (this kernel has no ``dummy`` driver, and a TUN hands the recorder
  whole IP packets: no ARP/ND stage hides the destination) with 10.253.<k>.1/32 and
  fdd4:71b0:9e5e:<k>::1/128, carrying the namespace's IPv4 and IPv6 default routes.
  Both addresses are blackholed in the root namespace first (a command that runs there
  by mistake fails locally). The kernel's own IPv6 chatter on it (link-local address,
  DAD, router solicitations) is switched off: an idle namespace sends nothing. (A
  process that joins a multicast group makes the kernel send IGMP/MLD reports out of
  it, which are recorded like any other packet.);
* ``/etc/netns/<ns>/resolv.conf`` with ``nameserver 127.0.0.1``: ``ip netns exec``
  bind-mounts it over /etc/resolv.conf;
* a recorder (this file's ``record`` command, started with ``ip netns exec``) that
  records every DNS query to port 53 of any local address (UDP and TCP, IPv4 and IPv6)
  and answers it REFUSED at once, so a lookup fails fast instead of stalling its caller
  for the resolver's timeout; and records every packet the kernel routes out of the
  TUN device, i.e. anything sent to an address that is not the namespace's own. Each
  record names the process that owned the socket, when it can still be found.

``argv()`` wraps a command in ``ip netns exec`` (everything meant for the namespace runs
that way); ``listening()`` lists the TCP ports listening in it; ``violations()`` lists
what the recorder saw after the guard's own start-up canary (a lookup and a packet sent
from inside, which the recorder must see, every time a guard starts: a guard that would
see nothing fails instead). ``python tests/helpers/netguard.py run -- CMD...`` runs one
command in a guard and prints what it saw (exit 3 if anything).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from q4d_bridge.transfer.engines.process import running

IP = "/usr/sbin/ip" if Path("/usr/sbin/ip").exists() else "/sbin/ip"
NETNS_ETC = Path("/etc/netns")
TUN_NAME = "q4dguard0"
CANARY_NAME = "q4d-guard-canary.invalid"
CANARY_ADDRESS = ("198.51.100.7", 9)  # TEST-NET-2, routed into the TUN and no further
COMMAND_TIMEOUT = 15.0
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
RECORDER_LIFETIME = 3 * 3600  # the recorder ends on its own even if nobody stops it
# The kernel's IPv6 defaults for new devices in the namespace: no link-local address,
# no DAD, no router solicitations (the TUN must carry only what a process sends).
IPV6_QUIET = {
    "accept_ra": "0",
    "router_solicitations": "0",
    "dad_transmits": "0",
    "addr_gen_mode": "1",  # IN6_ADDR_GEN_MODE_NONE
}

_counter = itertools.count(1)


class GuardError(Exception):
    """The guard could not be set up (or torn down)."""


def unavailable() -> str | None:
    """Why a guard cannot run here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "the network guard needs root (network namespaces, TUN, routes)"
    if not Path(IP).exists():
        return "iproute2's ip is not installed"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [IP, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if check and done.returncode != 0:
        raise GuardError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


class NetGuard:
    """A guarded network namespace (see the module docstring)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.namespace = f"q4dguard{os.getpid()}x{next(_counter)}"
        self.record_path = self.workdir / "netguard-records.jsonl"
        self.recorder_log = self.workdir / "netguard-recorder.log"
        self.address4 = ""
        self.address6 = ""
        self._blackholes: list[tuple[str, ...]] = []
        self._namespace_added = False
        self._etc: Path | None = None
        self._etc_root_made = False
        self._recorder: subprocess.Popen[bytes] | None = None
        self._baseline = 0
        self._syncs = 0
        self.leftovers: list[str] = []  # processes stop() found still in the namespace

    # --- life cycle ------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.stop()
            return
        try:  # the failure that is under way matters more than a teardown hitch
            self.stop()
        except GuardError as err:
            exc.add_note(f"(and the network guard's teardown failed: {err})")

    def start(self) -> None:
        reason = unavailable()
        if reason is not None:
            raise GuardError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._blackhole_addresses()
            _ip("netns", "add", self.namespace)
            self._namespace_added = True
            self._write_resolv_conf()
            self._in_ns_run(["sysctl", "-q", "-w"]
                            + [f"net.ipv6.conf.default.{k}={v}" for k, v in IPV6_QUIET.items()])  # fmt: skip
            self._ip_ns("link", "set", "lo", "up")
            self._start_recorder()
            self._ip_ns("link", "set", TUN_NAME, "up")
            self._ip_ns("address", "add", f"{self.address4}/32", "dev", TUN_NAME)
            self._ip_ns("address", "add", f"{self.address6}/128", "dev", TUN_NAME, "nodad")
            self._ip_ns("route", "add", "default", "dev", TUN_NAME, "src", self.address4)
            self._ip_ns("-6", "route", "add", "default", "dev", TUN_NAME, "src", self.address6)
            self._canary()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Remove everything start() made, whatever state it got to; raises GuardError
        afterwards if a step failed."""
        errors: list[str] = []
        if self._namespace_added:
            try:
                self._end_namespace_processes()
            except Exception as err:  # keep tearing down
                errors.append(f"ending processes: {err}")
            with contextlib.suppress(Exception):
                self.sync()  # what they sent last is on record before the recorder ends
        self._stop_recorder()
        if self._namespace_added:
            done = _ip("netns", "delete", self.namespace, check=False)
            if done.returncode != 0:
                errors.append(f"ip netns delete {self.namespace}: {done.stderr.strip()}")
            self._namespace_added = False
        if self._etc is not None:
            shutil.rmtree(self._etc, ignore_errors=True)
            if self._etc_root_made:
                with contextlib.suppress(OSError):
                    NETNS_ETC.rmdir()  # only when no other guard still uses it
            self._etc = None
        for blackhole in reversed(self._blackholes):
            done = _ip(*blackhole[:-3], "delete", *blackhole[-2:], check=False)
            if done.returncode != 0:
                errors.append(f"removing {' '.join(blackhole)}: {done.stderr.strip()}")
        self._blackholes.clear()
        if errors:
            raise GuardError("; ".join(errors))

    def _blackhole_addresses(self) -> None:
        """Pick a free 10.253.<k>.1 / fdd4:71b0:9e5e:<k>::1 and blackhole both in the root
        namespace (an existing blackhole route means another guard holds that k)."""
        for k in range(1, 250):
            four = ("route", "add", "blackhole", f"10.253.{k}.1/32")
            six = ("-6", "route", "add", "blackhole", f"fdd4:71b0:9e5e:{k}::/64")
            if _ip(*four, check=False).returncode != 0:
                continue
            self._blackholes.append(four)
            if _ip(*six, check=False).returncode != 0:
                continue
            self._blackholes.append(six)
            self.address4, self.address6 = f"10.253.{k}.1", f"fdd4:71b0:9e5e:{k}::1"
            return
        raise GuardError("no free 10.253.<k>.1 address for the guard (k = 1..249 all in use)")

    def _write_resolv_conf(self) -> None:
        if not NETNS_ETC.exists():
            NETNS_ETC.mkdir(mode=0o755)
            self._etc_root_made = True
        self._etc = NETNS_ETC / self.namespace
        self._etc.mkdir(mode=0o755)
        (self._etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1\n")
        (self._etc / "resolv.conf").chmod(0o644)

    def _ip_ns(self, *args: str) -> None:
        _ip("-n", self.namespace, *args)

    def _in_ns_run(self, argv: list[str]) -> None:
        done = subprocess.run(
            self.argv(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise GuardError(f"{' '.join(argv)} in {self.namespace}: {done.stderr.strip()}")

    def _start_recorder(self) -> None:
        self.record_path.write_text("")
        with self.recorder_log.open("ab") as log:
            self._recorder = subprocess.Popen(
                self.argv(
                    [sys.executable, "-I", str(Path(__file__).resolve()), "record",
                     "--out", str(self.record_path), "--tun", TUN_NAME,
                     "--lifetime", str(RECORDER_LIFETIME)]
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not any(r.get("kind") == "ready" for r in self._read_records()):
            if self._recorder.poll() is not None or time.monotonic() > deadline:
                raise GuardError(
                    f"the guard's recorder did not start: {self.recorder_log.read_text()}"
                )
            time.sleep(0.05)

    def _canary(self) -> None:
        """A lookup and a packet through the same path commands take: the recorder must
        see both, or the guard is blind and says so."""
        probe = (
            "import socket\n"
            "try:\n"
            f"    socket.getaddrinfo({CANARY_NAME!r}, 80)\n"
            "except OSError:\n"
            "    pass\n"
            "with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
            f"    s.sendto(b'q4d-guard-canary', {CANARY_ADDRESS!r})\n"
        )
        self._in_ns_run([sys.executable, "-c", probe])
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            records = self._read_records()
            dns = any(r.get("kind") == "dns" and r.get("name") == CANARY_NAME for r in records)
            packet = any(
                r.get("kind") == "packet" and r.get("dst") == "{}:{}".format(*CANARY_ADDRESS)
                for r in records
            )
            if dns and packet:
                self.sync()
                self._baseline = len(self._read_records())
                return
            if time.monotonic() > deadline:
                raise GuardError(
                    f"the guard's canary was not recorded (lookup seen: {dns}, packet seen: "
                    f"{packet}): the guard would see nothing; records: {records}"
                )
            time.sleep(0.05)

    def _namespace_inode(self) -> int | None:
        try:
            return Path(f"/run/netns/{self.namespace}").stat().st_ino
        except OSError:
            return None

    def pids(self) -> list[int]:
        """Processes in the namespace, but for the recorder."""
        inode = self._namespace_inode()
        if inode is None:
            return []
        recorder = self._recorder.pid if self._recorder is not None else None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in (recorder, os.getpid()):
                continue
            with contextlib.suppress(OSError):
                if str((entry / "ns" / "net").readlink()) == f"net:[{inode}]":
                    found.append(int(entry.name))
        return found

    def _end_namespace_processes(self) -> None:
        """Whatever a test left running in the namespace: SIGTERM, then SIGKILL, by PID
        (only processes inside the namespace this guard made)."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                self.leftovers.append(f"{pid} ({comm})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if running(pid)]
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _stop_recorder(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None or recorder.poll() is not None:
            return
        recorder.send_signal(signal.SIGTERM)
        try:
            recorder.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(timeout=STOP_TIMEOUT)

    # --- running things inside -------------------------------------------------------

    def argv(self, argv: list[str]) -> list[str]:
        """argv run inside the namespace (with its resolv.conf)."""
        return [IP, "netns", "exec", self.namespace, *argv]

    def listening(self) -> set[int]:
        """TCP ports something listens on inside the namespace (``ss``, run there)."""
        done = subprocess.run(
            self.argv(["ss", "-H", "-l", "-t", "-n"]),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=True,
        )
        return {int(line.split()[3].rsplit(":", 1)[1]) for line in done.stdout.splitlines()}

    # --- what it saw ---------------------------------------------------------------

    def _read_records(self) -> list[dict[str, Any]]:
        try:
            lines = self.record_path.read_text().splitlines()
        except OSError:
            return []
        records = []
        for line in lines:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until the recorder has read everything sent so far (SIGUSR1: it drains
        the TUN device and its DNS sockets, then writes a "synced" record)."""
        recorder = self._recorder
        if recorder is None or recorder.poll() is not None:
            return
        self._syncs += 1
        recorder.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not any(
            r.get("kind") == "synced" and r.get("count", 0) >= self._syncs
            for r in self._read_records()
        ):
            if recorder.poll() is not None or time.monotonic() > deadline:
                raise GuardError(f"the guard's recorder did not sync: {self.recorder_log}")
            time.sleep(0.02)

    def records(self) -> list[dict[str, Any]]:
        """What the recorder saw since its canary: lookups and packets (after a sync()
        while it runs)."""
        self.sync()
        return [
            r for r in self._read_records()[self._baseline :] if r.get("kind") in {"dns", "packet"}
        ]

    def violations(self) -> list[str]:
        return [describe(r) for r in self.records()]

    def assert_clean(self) -> None:
        """No lookup and no packet beyond loopback since the guard started."""
        found = self.violations()
        assert not found, (
            f"{len(found)} name lookup(s) or packet(s) beyond loopback in guarded namespace "
            f"{self.namespace}:\n  " + "\n  ".join(found[:50])
        )


def describe(record: dict[str, Any]) -> str:
    owner = f" from {record['owner']}" if record.get("owner") else ""
    if record.get("kind") == "dns":
        return (f"name lookup {record.get('name')!r} ({record.get('type')}, DNS over "
                f"{record.get('transport')} from {record.get('client')}){owner}")  # fmt: skip
    info = f" {record['info']}" if record.get("info") else ""
    return (f"packet {record.get('proto')} {record.get('src')} -> {record.get('dst')}"
            f"{info}{owner}")  # fmt: skip


# --- the recorder (runs inside the namespace) -------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
          33: "SRV", 64: "SVCB", 65: "HTTPS", 255: "ANY"}  # fmt: skip
PROTOCOLS = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
MAX_OWNER_LOOKUPS = 50  # /proc scans are for diagnosis: bounded when something floods


def parse_question(message: bytes) -> tuple[str, str, int] | None:
    """(name, type, end of the question) of a DNS query, or None."""
    if len(message) < 12 or int.from_bytes(message[4:6], "big") < 1:
        return None
    labels, pos = [], 12
    for _ in range(128):
        if pos >= len(message):
            return None
        length = message[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            return None
        labels.append(message[pos : pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(message):
        return None
    qtype = int.from_bytes(message[pos : pos + 2], "big")
    return ".".join(labels), QTYPES.get(qtype, str(qtype)), pos + 4


def refused(message: bytes) -> bytes:
    """A REFUSED answer to a DNS query (its question echoed when it parses)."""
    question = parse_question(message)
    end = question[2] if question else 12
    flags = bytes([0x80 | (message[2] & 0x79), 0x05])  # QR, the opcode and RD kept; REFUSED
    counts = struct.pack("!HHHH", 1 if question else 0, 0, 0, 0)
    return message[:2] + flags + counts + message[12:end]


def _socket_owner(proto: str, port: int) -> str | None:
    """The process holding the local socket proto/port in this namespace."""
    inodes = set()
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    inodes.discard("socket:[0]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if str(fd.readlink()) in inodes:
                        comm = (entry / "comm").read_text().strip()
                        cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
                        command = " ".join(cmdline.replace("\0", " ").split())[:160]
                        return f"pid {entry.name} ({comm}: {command})"
    return None


def describe_packet(packet: bytes) -> dict[str, Any]:
    record: dict[str, Any] = {"kind": "packet", "length": len(packet)}
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        header = (packet[0] & 0x0F) * 4
        number = packet[9]
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
        payload = packet[header:]
    elif version == 6 and len(packet) >= 40:
        number = packet[6]
        src = f"[{socket.inet_ntop(socket.AF_INET6, packet[8:24])}]"
        dst = f"[{socket.inet_ntop(socket.AF_INET6, packet[24:40])}]"
        payload = packet[40:]
        for _ in range(8):  # hop-by-hop, routing and destination options headers
            if number not in (0, 43, 60) or len(payload) < 8:
                break
            number, payload = payload[0], payload[(payload[1] + 1) * 8 :]
    else:
        record.update(proto=f"ip version {version}", src="?", dst="?")
        return record
    proto = PROTOCOLS.get(number, str(number))
    record.update(family=version, proto=proto, src=src, dst=dst)
    if proto in ("tcp", "udp") and len(payload) >= 8:
        sport, dport = struct.unpack("!HH", payload[:4])
        record.update(src=f"{src}:{sport}", dst=f"{dst}:{dport}", sport=sport)
        if proto == "tcp" and len(payload) >= 14:
            flags = payload[13]
            names = [
                n for bit, n in ((2, "SYN"), (16, "ACK"), (1, "FIN"), (4, "RST")) if flags & bit
            ]
            record["info"] = "/".join(names)
        if proto == "udp" and dport == 53:
            question = parse_question(payload[8:])
            if question:
                record["info"] = f"DNS {question[1]} {question[0]}"
    elif proto in ("icmp", "icmpv6") and payload:
        record["info"] = f"type {payload[0]}"
    return record


class Recorder:
    def __init__(self, out: Path, tun: str, lifetime: float) -> None:
        self.out = out.open("a")
        self.deadline = time.monotonic() + lifetime
        self.stopping = False
        self.sync_requests = 0  # SIGUSR1 from the guard: read everything, say "synced"
        self.synced = 0
        self.owner_lookups = 0
        self.tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(self.tun, TUNSETIFF, struct.pack("16sH", tun.encode(), IFF_TUN | IFF_NO_PI))
        self.udp: list[socket.socket] = []
        self.listeners: list[socket.socket] = []
        self.streams: dict[socket.socket, tuple[bytes, float, str]] = {}
        for family, any_address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = socket.socket(family, kind)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((any_address, 53))
                sock.setblocking(False)
                if kind == socket.SOCK_STREAM:
                    sock.listen(16)
                    self.listeners.append(sock)
                else:
                    self.udp.append(sock)

    def write(self, record: dict[str, Any]) -> None:
        record["t"] = round(time.time(), 3)
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def owner(self, proto: str, port: int) -> str | None:
        if self.owner_lookups >= MAX_OWNER_LOOKUPS:
            return None
        self.owner_lookups += 1
        return _socket_owner(proto, port)

    def query(self, message: bytes, transport: str, client: tuple[Any, ...]) -> bytes:
        question = parse_question(message)
        self.write({
            "kind": "dns", "transport": transport, "client": f"{client[0]}:{client[1]}",
            "name": question[0] if question else None, "type": question[1] if question else None,
            "owner": self.owner(transport, client[1]),
        })  # fmt: skip
        return refused(message) if len(message) >= 12 else b""

    def run(self) -> None:
        self.write({"kind": "ready", "pid": os.getpid()})
        while not self.stopping and time.monotonic() < self.deadline:
            watched: list[Any] = [self.tun, *self.udp, *self.listeners, *self.streams]
            readable, _, _ = select.select(watched, [], [], 0.2)
            for ready in readable:
                if ready == self.tun:
                    self.read_tun()
                elif ready in self.udp:
                    with contextlib.suppress(OSError):
                        message, client = ready.recvfrom(65535)
                        answer = self.query(message, "udp", client)
                        if answer:
                            ready.sendto(answer, client)
                elif ready in self.listeners:
                    with contextlib.suppress(OSError):
                        conn, client = ready.accept()
                        conn.setblocking(False)
                        if len(self.streams) < 64:
                            self.streams[conn] = (
                                b"",
                                time.monotonic() + 10,
                                f"{client[0]}:{client[1]}",
                            )
                        else:
                            conn.close()
                else:
                    self.read_stream(ready)
            for conn, (_, deadline, _) in list(self.streams.items()):
                if time.monotonic() > deadline:
                    self.streams.pop(conn)
                    conn.close()
            if self.sync_requests > self.synced:
                self.synced = self.sync_requests
                self.drain()
                self.write({"kind": "synced", "count": self.synced})
        self.drain()
        self.write({"kind": "stopped"})

    def drain(self) -> None:
        """Read what is queued on the TUN device and the UDP sockets now."""
        self.read_tun()
        for sock in self.udp:
            for _ in range(256):
                try:
                    message, client = sock.recvfrom(65535)
                except OSError:
                    break
                answer = self.query(message, "udp", client)
                if answer:
                    with contextlib.suppress(OSError):
                        sock.sendto(answer, client)

    def read_tun(self) -> None:
        for _ in range(256):  # drain what is queued, boundedly
            try:
                packet = os.read(self.tun, 65535)
            except BlockingIOError:
                return
            record = describe_packet(packet)
            sport = record.pop("sport", None)
            if sport is not None and record.get("proto") in ("tcp", "udp"):
                record["owner"] = self.owner(record["proto"], sport)
            self.write(record)

    def read_stream(self, conn: socket.socket) -> None:
        buffered, deadline, client = self.streams[conn]
        try:
            data = conn.recv(65535)
        except OSError:
            data = b""
        if not data:
            self.streams.pop(conn)
            conn.close()
            return
        buffered += data
        while len(buffered) >= 2 and len(buffered) >= 2 + int.from_bytes(buffered[:2], "big"):
            size = int.from_bytes(buffered[:2], "big")
            message, buffered = buffered[2 : 2 + size], buffered[2 + size :]
            host, port = client.rsplit(":", 1)
            answer = self.query(message, "tcp", (host, int(port)))
            with contextlib.suppress(OSError):
                conn.sendall(len(answer).to_bytes(2, "big") + answer)
        self.streams[conn] = (buffered, deadline, client)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="(inside the namespace) the recorder")
    record.add_argument("--out", type=Path, required=True)
    record.add_argument("--tun", required=True)
    record.add_argument("--lifetime", type=float, default=RECORDER_LIFETIME)
    run = commands.add_parser("run", help="run a command in a guarded namespace, report")
    run.add_argument("--workdir", type=Path, default=None)
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "record":
        recorder = Recorder(args.out, args.tun, args.lifetime)

        def stop(_signum: int, _frame: object) -> None:
            recorder.stopping = True

        def sync(_signum: int, _frame: object) -> None:
            recorder.sync_requests += 1

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, sync)
        recorder.run()
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    with tempfile.TemporaryDirectory(prefix="q4d-netguard-") as tmp:
        guard = NetGuard(args.workdir or Path(tmp))
        with guard:
            code = subprocess.call(guard.argv(cmd))
            found = guard.violations()
        print(f"netguard: {cmd[0]} exited {code}; {len(found)} lookup(s)/packet(s) beyond loopback",
              file=sys.stderr)  # fmt: skip
        for line in found:
            print(f"netguard:   {line}", file=sys.stderr)
        if guard.leftovers:
            print(f"netguard: ended leftover processes {guard.leftovers}", file=sys.stderr)
    return code or (3 if found else 0)


if __name__ == "__main__":
    sys.exit(main())
