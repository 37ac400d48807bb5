"""WAN benchmark: q4d's engines against the peer tools over a simulated 80 ms link.

The link (bench/wanlink.py): namespaces "seed" and "home" joined by a userspace delay
line, 40 ms each way and a 1 Gbit/s bottleneck by default (`--rate-mbit 0`: no cap; the
uncapped line moves ~300 MB/s with 8 streams, more than ssh can encrypt on 2 cores).
sshd (tests/helpers/services.py) runs in "seed" and serves a temp dir; every client
runs in "home" and writes into a fresh destination, verified afterwards (file list,
sizes and SHA-256 equal the source, else FAIL).

  link      RTT (TCP echo; no ping here) and raw TCP goodput with 1, 4 and 8 streams;
            the best multi-stream figure (steady state) is the link limit. Per scenario
            also "raw TCP, same bytes": the payload's size over 1, 4 and 8 TCP streams
            opened beforehand, timed from the request, so slow start counts as it does
            for any tool; the best is what the link itself gives a payload that size
  scenarios one large file; a directory of many 2 MiB files
  peers     sftp, rsync -a, lftp pget/mirror with lftp's defaults, lftp tuned
  q4d       each engine through bench/wan_engine.py (real config defaults + overrides),
            from a cold start like the peers; plus "q4d sftp warm": the bridge's steady
            state, where its SSH link and pooled connections are already open when a
            completion arrives (the handshakes, ~10 round trips each, are not timed)
  loopback  the bridge process's own CPU-seconds per GiB (lftp engine, real bridge,
            mosquitto, sshd on 127.0.0.1) and verify.bad_pieces speed vs plain sha1

Run (root; full size takes ~15 minutes):
  .venv/bin/python bench/wan.py
  .venv/bin/python bench/wan.py --file-mib 128 --dir-files 20     # quick
  .venv/bin/python bench/wan.py --tools "q4d sftp" --engine-option sftp.connections=8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiomqtt
from q4d_bridge.transfer.engines.lftp import lftp_quote
from q4d_bridge.transfer.verify import TorrentInfo, bad_pieces
from wan_engine import rsync_available
from wanlink import (
    HOME_ADDR,
    SEED_ADDR,
    LinkSpec,
    WanLink,
    run,
    run_bounded,
    stop_group,
    wait_for_line,
)

from tests.helpers.bridge_proc import BridgeProcess
from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import recording
from tests.helpers.services import Mosquitto, SshServer

PYTHON = sys.executable
PROBE = str(Path(__file__).with_name("netprobe.py"))
ENGINE_DRIVER = str(Path(__file__).with_name("wan_engine.py"))
MIB = 1024 * 1024
GIB = 1024 * MIB
PROBE_PORT = 5201
SLOWEST = 1e6  # bytes/s: any tool slower than this is cut off (timeout) and FAILs
TARGETS = {"vs_link": 0.9, "vs_peer": 1.0, "cpu_s_per_gib": 0.2, "verify_vs_sha1": 0.8}


class NamespacedSshServer(SshServer):
    """sshd inside a namespace. Readiness comes from sshd's own log line, because
    connecting to the namespace address from here (the root namespace) is forbidden."""

    def __init__(self, workdir: Path, ns: str, host: str) -> None:
        super().__init__(workdir, host=host)
        self.ns = ns

    def _argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super()._argv()]

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self._check_config()
        self._log = self.log_path.open("ab")  # closed in stop()
        self._proc = subprocess.Popen(
            self._argv(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        listening = f"Server listening on {self.host} port {self.port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if listening in self.log():
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd in {self.ns} did not start:\n{self.log()}")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    remote: Path  # the payload on the seedbox (a file or a directory)
    size: int

    @property
    def is_dir(self) -> bool:
        return self.remote.is_dir()


@dataclass(slots=True)
class Row:
    scenario: str
    tool: str
    kind: str  # "peer" or "q4d"
    mb_s: float | None
    seconds: float | None
    ok: bool
    note: str = ""
    cpu_busy: float = 0.0  # both cores, 0..1: near 1 means ssh crypto, not the link, set the pace
    lost_at_cap: int = 0  # packets the 1 Gbit/s bottleneck dropped (TCP probing it)


# --- data ----------------------------------------------------------------------------


def write_random(path: Path, size: int) -> None:
    """Incompressible bytes (SSH compression is off anyway, but stay honest)."""
    with path.open("wb") as handle:
        for _ in range(size // MIB):
            handle.write(os.urandom(MIB))
        handle.write(os.urandom(size % MIB))


def digests(root: Path) -> dict[str, tuple[int, str]]:
    """relative path -> (size, sha256) for a file or every file under a directory."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = {}
    for path in files:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        out[str(path.relative_to(root)) if path != root else ""] = (path.stat().st_size, digest)
    return out


def make_scenarios(seedbox: Path, args: argparse.Namespace) -> list[Scenario]:
    seedbox.mkdir(parents=True)
    big = seedbox / "movie.mkv"
    write_random(big, args.file_mib * MIB)
    pack = seedbox / "season"
    pack.mkdir()
    for n in range(args.dir_files):
        write_random(pack / f"episode-{n:04}.mkv", args.dir_file_mib * MIB)
    return [
        Scenario(f"file {args.file_mib} MiB", big, big.stat().st_size),
        Scenario(
            f"dir {args.dir_files} x {args.dir_file_mib} MiB",
            pack,
            args.dir_files * args.dir_file_mib * MIB,
        ),
    ]


# --- the link's own limits -----------------------------------------------------------


@contextlib.contextmanager
def listening(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A netprobe server (argv already wrapped for its namespace), ready to accept;
    stopped by its process group on the way out."""
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_line(server, "listening", 10)
        yield server
    finally:
        stop_group(server)


def probe_rtt(link: WanLink) -> dict[str, float]:
    with listening(
        link.seed_cmd([PYTHON, PROBE, "echo", "--bind", SEED_ADDR, "--port", str(PROBE_PORT)])
    ):
        result = run_bounded(
            link.home_cmd([
                PYTHON, PROBE, "rtt", "--to", SEED_ADDR, "--port", str(PROBE_PORT),
                "--count", "20",
            ]),
            60,
        )  # fmt: skip
    rtt: dict[str, float] = json.loads(result.stdout)
    return rtt


def probe_goodput(link: WanLink, streams: int, seconds: float) -> float:
    """Steady-state bytes/s seed -> home over `streams` TCP connections (first 2 s of
    slow start excluded)."""
    port = str(PROBE_PORT + streams)
    with listening(
        link.home_cmd([
            PYTHON, PROBE, "sink", "--bind", HOME_ADDR, "--port", port,
            "--streams", str(streams), "--seconds", str(seconds), "--warmup", "2",
        ])
    ) as sink:  # fmt: skip
        run_bounded(
            link.seed_cmd([
                PYTHON, PROBE, "source", "--to", HOME_ADDR, "--port", port,
                "--streams", str(streams), "--seconds", str(seconds),
            ]),
            seconds + 60,
        )  # fmt: skip
        out, _ = sink.communicate(timeout=60)
    result = json.loads(out)
    return float(result["bytes"] / result["seconds"])


def probe_payload(link: WanLink, streams: int, size: int) -> float:
    """bytes/s for `size` bytes over `streams` TCP connections opened and left idle
    beforehand, timed from the requests: what the link itself gives a payload that
    size, since asking still costs a round trip and every connection's window still
    grows from its initial size."""
    port = str(PROBE_PORT + 100 + streams)
    with listening(
        link.seed_cmd([
            PYTHON, PROBE, "serve", "--bind", SEED_ADDR, "--port", port,
            "--streams", str(streams),
        ])
    ):  # fmt: skip
        result = run_bounded(
            link.home_cmd([
                PYTHON, PROBE, "fetch", "--to", SEED_ADDR, "--port", port,
                "--streams", str(streams), "--bytes", str(size),
            ]),
            60 + size / SLOWEST,
        )  # fmt: skip
    measured = json.loads(result.stdout)
    if measured["bytes"] != size:
        raise RuntimeError(f"payload probe received {measured['bytes']} of {size} bytes")
    return float(size / measured["seconds"])


# --- peers ---------------------------------------------------------------------------


def lftp_script(sshd: SshServer, body: str, *, tuned: bool) -> str:
    """Like bridge/q4d_bridge/engines/lftp.py: ssh as lftp's connect program (run with
    sh -c, hence shlex), `user,` = empty password so lftp never prompts."""
    connect = shlex.join(["ssh", "-a", "-x", *sshd.ssh_options()])
    lines = ["set cmd:fail-exit yes", f"set sftp:connect-program {lftp_quote(connect)}"]
    if tuned:
        lines.append("set sftp:max-packets-in-flight 64")
    lines += [
        f"open -u {lftp_quote(sshd.user + ',')} -p {sshd.port} {lftp_quote('sftp://' + sshd.host)}",
        body,
    ]
    return "\n".join(lines) + "\n"


def peer_commands(
    sshd: SshServer, scenario: Scenario, dest: Path, scripts: Path
) -> dict[str, list[str]]:
    """Tool name -> argv (run in "home"); each writes scenario's payload under dest."""
    src, name = str(scenario.remote), scenario.remote.name
    target = dest / name
    user_host = f"{sshd.user}@{sshd.host}"
    batch = scripts / f"sftp-{name}.batch"
    batch.write_text(f"get {'-r ' if scenario.is_dir else ''}{src} {target}\n")
    rsh = shlex.join(["ssh", *sshd.ssh_options(), "-p", str(sshd.port)])
    commands = {
        "sftp" if not scenario.is_dir else "sftp -r": [
            "sftp", "-b", str(batch), "-P", str(sshd.port), *sshd.ssh_options(), user_host,
        ],
        "rsync -a": ["rsync", "-a", "-e", rsh, f"{user_host}:{src}", f"{dest}/"],
    }  # fmt: skip
    if scenario.is_dir:
        body = f"mirror --parallel=4 --use-pget-n=4 {lftp_quote(src)} {lftp_quote(str(target))}"
        label = "lftp mirror -P4 --use-pget-n=4"
    else:
        body = f"pget -n 8 {lftp_quote(src)} -o {lftp_quote(str(target))}"
        label = "lftp pget -n 8"
    for tuned in (False, True):
        tool = f"{label}{', 64 packets in flight' if tuned else ''}"
        script = scripts / f"lftp-{name}-{int(tuned)}.lftp"
        script.write_text(lftp_script(sshd, body, tuned=tuned))
        commands[tool] = ["lftp", "--norc", "-f", str(script)]
    return commands


# --- measuring one tool --------------------------------------------------------------


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def measure(
    scenario: Scenario,
    tool: str,
    kind: str,
    argv: list[str],
    dest: Path,
    expected: dict[str, tuple[int, str]],
    link: WanLink,
    timing: Callable[[subprocess.CompletedProcess[str], float], float] | None = None,
) -> Row:
    """Run argv (bounded), time it, verify dest/<payload name> against the source."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    losses = link.losses()
    print(f"  {scenario.name:<22} {tool:<52}", end="", flush=True)
    busy0, total0 = cpu_ticks()
    started = time.monotonic()
    row = Row(scenario.name, tool, kind, None, None, ok=False)
    try:
        result = run_bounded(argv, 120 + scenario.size / SLOWEST)
    except TimeoutError as err:
        row.note = str(err)
    else:
        elapsed = time.monotonic() - started
        busy1, total1 = cpu_ticks()
        row.cpu_busy = (busy1 - busy0) / max(1, total1 - total0)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
            row.note = f"exit {result.returncode}: {tail[0]}"
        else:
            row.seconds = timing(result, elapsed) if timing else elapsed
            row.mb_s = scenario.size / row.seconds / 1e6
            landed = dest / scenario.remote.name
            row.ok = landed.exists() and digests(landed) == expected
            row.note = "" if row.ok else "content differs from the source"
    shutil.rmtree(dest, ignore_errors=True)  # the hashing above outlasts a stats refresh
    overflow, dropped = (now - before for now, before in zip(link.losses(), losses, strict=True))
    row.lost_at_cap = overflow
    if dropped:
        row.ok = False
        row.note += f" delay line dropped {dropped} packets"
    print(
        f"{row.mb_s or 0:8.1f} MB/s  cpu {row.cpu_busy:4.0%} {'' if row.ok else 'FAIL ' + row.note}",
        flush=True,
    )
    return row


def engine_seconds(result: subprocess.CompletedProcess[str], _elapsed: float) -> float:
    """The driver's own timing: the transfer, without the interpreter's start-up."""
    return float(json.loads(result.stdout.strip().splitlines()[-1])["seconds"])


# --- loopback ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of this process alone (its children, lftp and ssh, not counted)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bridge_cpu(work: Path, payload: Path) -> dict[str, float]:
    """One completion event through the real bridge (lftp engine) on loopback."""
    with Mosquitto(work / "mosquitto") as broker, SshServer(work / "sshd") as sshd:
        config = bridge_config(
            work / "data", work / "library", key=sshd.client_key,
            known_hosts=sshd.known_hosts, broker_port=broker.port, ssh_port=sshd.port,
            user=sshd.user, remote_root=str(payload.parent), bridge_id="wan",
        )  # fmt: skip
        config["seedboxes"][0]["engine"] = "lftp"
        config["log_level"] = "WARNING"
        async with recording(broker.port, "q4d/bridge/wan/event", "q4d/bridge/wan/status") as rec:
            with BridgeProcess(work / "bridge", config) as bridge:
                assert bridge.proc is not None
                await rec.wait_for(
                    lambda: any(m.payload and m.json()["state"] == "online"
                                for m in rec.on("q4d/bridge/wan/status")),
                    30, "bridge online",
                )  # fmt: skip
                before = cpu_seconds(bridge.proc.pid)
                started = time.monotonic()
                event = {"v": 1, "event_id": "wan-cpu", "path": str(payload), "hash": "ab" * 20}
                async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                    await client.publish(
                        "q4d/seedbox/sb1/completed", json.dumps(event).encode(), qos=1
                    )
                finished = await rec.wait_for(
                    lambda: rec.events("completed") or rec.events("failed"),
                    120 + payload.stat().st_size / SLOWEST, "item finished",
                )  # fmt: skip
                elapsed = time.monotonic() - started
                used = cpu_seconds(bridge.proc.pid) - before
                if finished[0]["event"] != "completed":
                    raise RuntimeError(
                        f"bridge transfer failed: {finished[0]}\n{bridge.log()[-3000:]}"
                    )
    size = payload.stat().st_size
    return {
        "cpu_seconds": used,
        "cpu_s_per_gib": used / (size / GIB),
        "mb_s": size / elapsed / 1e6,
    }


def verify_speed(payload: Path, work: Path) -> dict[str, float]:
    """verify.bad_pieces vs a bare hashlib.sha1 pass over the same (cached) file."""
    torrent_path = work / "payload.torrent"
    run(["mktorrent", "-l", "21", "-o", str(torrent_path), str(payload)], timeout=300)
    torrent = TorrentInfo.from_bytes(torrent_path.read_bytes())

    def plain() -> None:
        digest = hashlib.sha1(usedforsecurity=False)
        with payload.open("rb", buffering=0) as handle:
            while block := handle.read(MIB):
                digest.update(block)

    def q4d() -> None:
        if bad_pieces(payload, torrent):
            raise RuntimeError("verify found bad pieces in an intact file")

    def best(fn: Callable[[], None]) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    plain()  # page cache warm for both
    sha1_s, verify_s = best(plain), best(q4d)
    size = payload.stat().st_size
    return {
        "sha1_mb_s": size / sha1_s / 1e6,
        "verify_mb_s": size / verify_s / 1e6,
        "ratio": sha1_s / verify_s,
    }


# --- main ----------------------------------------------------------------------------


def run_wan(
    args: argparse.Namespace, work: Path, scenarios: list[Scenario]
) -> tuple[dict[str, Any], list[Row]]:
    spec = LinkSpec(
        args.delay_ms, args.rate_mbit, args.tbf_mbit, args.mtu,
        loss_pct=args.loss_pct, jitter_ms=args.jitter_ms,
    )  # fmt: skip
    engines = ["lftp", "sftp", *(["rsync"] if rsync_available() else [])]
    rows: list[Row] = []
    with WanLink(spec, work / "link") as link:
        with NamespacedSshServer(work / "sshd", link.seed, SEED_ADDR) as sshd:
            rtt = probe_rtt(link)
            print(f"link: RTT {rtt['median_ms']:.1f} ms (min {rtt['min_ms']:.1f}), "
                  f"loss {spec.loss_pct:g} %, jitter {spec.jitter_ms:g} ms", flush=True)  # fmt: skip
            goodput = {}
            for streams in args.streams:
                goodput[streams] = probe_goodput(link, streams, args.probe_seconds)
                print(f"link: {streams} TCP streams {goodput[streams] / 1e6:.1f} MB/s", flush=True)
            payload = {}
            for scenario in scenarios:
                payload[scenario.name] = {
                    streams: probe_payload(link, streams, scenario.size) for streams in args.streams
                }
                print(f"link: {scenario.name} as raw TCP over open streams: " + ", ".join(
                    f"{streams} {rate / 1e6:.1f} MB/s"
                    for streams, rate in payload[scenario.name].items()
                ), flush=True)  # fmt: skip
            for scenario in scenarios:
                expected = digests(scenario.remote)
                dest = work / "home" / "dest"
                commands = peer_commands(sshd, scenario, dest, work)
                for tool, argv in commands.items():
                    if args.tools and not any(t in tool for t in args.tools):
                        continue
                    rows.append(
                        measure(scenario, tool, "peer", link.home_cmd(argv), dest, expected, link)
                    )
                for engine, warm in [*((e, False) for e in engines), ("sftp", True)]:
                    tool = f"q4d {engine}" + (" warm" if warm else "")
                    if args.tools and not any(t in tool for t in args.tools):
                        continue
                    argv = [
                        PYTHON, ENGINE_DRIVER, "--engine", engine, "--host", SEED_ADDR,
                        "--port", str(sshd.port), "--user", sshd.user,
                        "--key", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts),
                        "--remote", str(scenario.remote), "--dest", str(dest),
                        "--work", str(work / "engine"),
                        *(f"--option={o}" for o in args.engine_option),
                        *(["--warm"] if warm else []),
                    ]  # fmt: skip
                    rows.append(
                        measure(scenario, tool, "q4d", link.home_cmd(argv), dest,
                                expected, link, engine_seconds)
                    )  # fmt: skip
        forwarder_cpu = link.cpu_seconds()
    info = {
        "delay_ms_each_way": args.delay_ms,
        "rate_mbit": args.rate_mbit,
        "tbf_mbit": args.tbf_mbit,
        "mtu": args.mtu,
        "rtt_ms": rtt,
        "goodput_mb_s": {str(k): v / 1e6 for k, v in goodput.items()},
        "payload_mb_s": {
            name: {str(k): v / 1e6 for k, v in rates.items()} for name, rates in payload.items()
        },
        "delay_line": link.stats(),  # final counters: the forwarder has stopped
        "delay_line_cpu_seconds": forwarder_cpu,
    }
    return info, rows


def report(
    link: dict[str, Any], rows: list[Row], loopback: dict[str, Any], scenarios: list[Scenario]
) -> dict[str, Any]:
    limit = max(link["goodput_mb_s"].values())
    print()
    print(f"WAN: RTT {link['rtt_ms']['median_ms']:.1f} ms, link goodput "
          + ", ".join(f"{k} streams {v:.1f} MB/s" for k, v in link["goodput_mb_s"].items()))  # fmt: skip
    print(f"{'scenario':<22} {'tool':<52} {'MB/s':>8} {'/link':>6} {'cpu':>5}")
    for row in rows:
        speed = f"{row.mb_s:8.1f} {row.mb_s / limit:6.2f}" if row.mb_s else f"{'-':>8} {'-':>6}"
        status = "" if row.ok else "FAIL " + row.note
        print(f"{row.scenario:<22} {row.tool:<52} {speed} {row.cpu_busy:5.0%} {status}")
    print(f"/link: share of the link limit ({limit:.1f} MB/s); cpu: both cores' busy time")
    summary = {}
    print("\nsummary (best q4d engine)")
    for scenario in scenarios:
        ok = [r for r in rows if r.scenario == scenario.name and r.ok and r.mb_s]
        engines = [r for r in ok if r.kind == "q4d"]
        peers = [r for r in ok if r.kind == "peer"]
        if not engines:
            continue
        best = max(engines, key=lambda r: r.mb_s or 0)
        entry: dict[str, Any] = {
            "best_engine": best.tool,
            "mb_s": best.mb_s,
            "vs_link": (best.mb_s or 0) / limit,
        }
        line = (f"  {scenario.name:<22} {best.tool:<10} {best.mb_s:6.1f} MB/s  "
                f"vs link {entry['vs_link']:.2f} {verdict(entry['vs_link'] >= TARGETS['vs_link'])}")  # fmt: skip
        raw = max(link["payload_mb_s"].get(scenario.name, {}).values(), default=None)
        if raw:
            entry |= {"raw_tcp_mb_s": raw, "vs_raw_tcp": (best.mb_s or 0) / raw}
            line += f"  vs raw TCP, same bytes ({raw:.1f}, {raw / limit:.2f} x link) {entry['vs_raw_tcp']:.2f}"
        if peers:
            peer = max(peers, key=lambda r: r.mb_s or 0)
            entry |= {
                "best_peer": peer.tool,
                "peer_mb_s": peer.mb_s,
                "vs_peer": (best.mb_s or 0) / (peer.mb_s or 1),
            }
            line += (f"  vs best peer ({peer.tool}, {peer.mb_s:.1f}) {entry['vs_peer']:.2f} "
                     f"{verdict(entry['vs_peer'] >= TARGETS['vs_peer'])}")  # fmt: skip
        summary[scenario.name] = entry
        print(line)
    if loopback:
        cpu, ver = loopback["bridge_cpu"], loopback["verify"]
        print(f"  bridge CPU (loopback, lftp, {cpu['mb_s']:.0f} MB/s)  {cpu['cpu_s_per_gib']:.3f} CPU-s/GiB "
              f"(target <= {TARGETS['cpu_s_per_gib']}) {verdict(cpu['cpu_s_per_gib'] <= TARGETS['cpu_s_per_gib'])}")  # fmt: skip
        print(f"  verify {ver['verify_mb_s']:.0f} MB/s vs sha1 {ver['sha1_mb_s']:.0f} MB/s  "
              f"ratio {ver['ratio']:.2f} (target >= {TARGETS['verify_vs_sha1']}) "
              f"{verdict(ver['ratio'] >= TARGETS['verify_vs_sha1'])}")  # fmt: skip
    return summary


def interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-mib", type=int, default=1024)
    parser.add_argument("--dir-files", type=int, default=200)
    parser.add_argument("--dir-file-mib", type=int, default=2)
    parser.add_argument("--delay-ms", type=float, default=40.0, help="each way")
    parser.add_argument(
        "--rate-mbit", type=float, default=1000.0, help="delay-line rate cap (0: none)"
    )
    parser.add_argument("--tbf-mbit", type=float, default=0.0, help="tc tbf rate cap")
    parser.add_argument("--mtu", type=int, default=16384)
    parser.add_argument("--loss-pct", type=float, default=0.0, help="random loss per packet")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="extra delay, uniform")
    parser.add_argument(
        "--streams", type=lambda s: [int(n) for n in s.split(",")], default=[1, 4, 8]
    )
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--tools", type=lambda s: s.split(","), default=[],
                        help="comma list: only tools whose name contains one of these (e.g. q4d,rsync)")  # fmt: skip
    parser.add_argument("--engine-option", action="append", default=[],
                        help="section.key=value for the q4d engines, e.g. sftp.connections=8")  # fmt: skip
    parser.add_argument("--skip-loopback", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("wan.py needs root (network namespaces, TUN devices)")
    # SIGTERM unwinds like Ctrl-C, so every finally block tears its part down.
    signal.signal(signal.SIGTERM, interrupt)

    with tempfile.TemporaryDirectory(prefix="q4d-wan-") as tmp:
        work = Path(tmp)
        scenarios = make_scenarios(work / "seedbox", args)
        link, rows = run_wan(args, work, scenarios)
        loopback: dict[str, Any] = {}
        if not args.skip_loopback:
            big = scenarios[0].remote
            loopback["bridge_cpu"] = asyncio.run(bridge_cpu(work / "loopback", big))
            loopback["verify"] = verify_speed(big, work)
        summary = report(link, rows, loopback, scenarios)
    results = {
        "args": vars(args),
        "link": link,
        "rows": [dataclasses.asdict(row) for row in rows],
        "loopback": loopback,
        "summary": summary,
        "targets": TARGETS,
    }
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    cap = f"{args.rate_mbit:g}mbit" if args.rate_mbit else "uncapped"
    (out / f"wan-{cap}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
