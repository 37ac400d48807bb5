"""WAN benchmark: q4d's engines against the peer tools over a simulated long link.

The link (bench/wanlink.py): namespaces "seed" and "home" joined by a userspace delay
line, 40 ms each way and a 1 Gbit/s bottleneck by default (`--rate-mbit 0`: no cap; the
uncapped line moves ~300 MB/s with 8 streams, more than ssh can encrypt on 2 cores).
sshd (tests/helpers/services.py) runs in "seed" and serves a temp dir; every client
runs in "home" and writes into a fresh destination, verified afterwards (file list,
sizes and SHA-256 equal the source, else FAIL).

  link      RTT (TCP echo; no ping here) and raw TCP goodput with 1, 4 and 8 streams
            (--streams); the best multi-stream figure (steady state) is the link limit.
            Per scenario also "raw TCP, same bytes": the payload's size over the same
            stream counts opened beforehand, timed from the request, so slow start
            counts as it does for any tool; the best is what the link itself gives a
            payload that size
  scenarios --profile (bench/wan_profiles.py): default, one large file and a directory
            of many 2 MiB files; lossy, the same at 160 ms RTT with 0.1 % loss at two
            rate caps; small-files, 2,000 files of 4-128 KiB in nested folders
  peers     sftp, rsync -a, lftp pget/mirror with lftp's defaults, lftp tuned
  q4d       each engine through bench/wan_engine.py (real config defaults + overrides),
            from a cold start like the peers; plus "q4d sftp warm": the bridge's steady
            state, where its SSH link and pooled connections are already open when a
            completion arrives (the handshakes, ~10 round trips each, are not timed);
            what an engine chose for the link (its last_adaptation) is printed under it
  loopback  the bridge process's own CPU-seconds per GiB (lftp engine, real bridge,
            mosquitto, sshd on 127.0.0.1) and verify.bad_pieces speed vs plain sha1

Run (root; PYTHONPATH=bridge:. to measure this checkout's bridge):
  .venv/bin/python bench/wan.py                        # ~15 minutes
  .venv/bin/python bench/wan.py --file-mib 128 --dir-files 20     # quick
  .venv/bin/python bench/wan.py --tools "q4d sftp" --engine-option sftp.connections=8
  .venv/bin/python bench/wan.py --profile lossy        # both caps, one after the other
  .venv/bin/python bench/wan.py --profile small-files
Results: bench/results/<profile prefix>-<cap>.json (wan-1000mbit.json,
wan-lossy-200mbit.json, wan-small-files-1000mbit.json, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from q4d_bridge.transfer.engines.lftp import lftp_quote
from wan_engine import rsync_available
from wan_loopback import bridge_cpu, verify_speed
from wan_profiles import PROFILES, SLOWEST, Profile, Scenario, digests
from wan_report import Row, loopback_lines, summarize, table
from wanlink import (
    HOME_ADDR,
    SEED_ADDR,
    LinkSpec,
    WanLink,
    run_bounded,
    stop_group,
    wait_for_line,
)

from tests.helpers.services import SshServer

PYTHON = sys.executable
PROBE = str(Path(__file__).with_name("netprobe.py"))
ENGINE_DRIVER = str(Path(__file__).with_name("wan_engine.py"))
PROBE_PORT = 5201
SLOWEST_FILES = 2.0  # files/s: the same cut-off's allowance for per-file round trips


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
    sshd: SshServer, scenario: Scenario, dest: Path, scripts: Path, *, untuned_lftp: bool
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
    for tuned in (False, True) if untuned_lftp else (True,):
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
    *,
    driver: bool = False,
) -> Row:
    """Run argv (bounded), time it, verify dest/<payload name> against the source.
    driver: argv is bench/wan_engine.py, whose JSON line has its own timing (the
    transfer, without the interpreter's start-up) and the engine's adaptation."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    losses = link.losses()
    print(f"  {scenario.name:<22} {tool:<52}", end="", flush=True)
    busy0, total0 = cpu_ticks()
    started = time.monotonic()
    row = Row(scenario.name, tool, kind, None, None, ok=False)
    try:
        result = run_bounded(argv, 120 + scenario.size / SLOWEST + scenario.files / SLOWEST_FILES)
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
            row.seconds = elapsed
            if driver:
                report = json.loads(result.stdout.strip().splitlines()[-1])
                row.seconds, row.adaptation = float(report["seconds"]), report.get("adaptation")
                row.phases = report.get("phases_began_s")
            row.mb_s = scenario.size / row.seconds / 1e6
            if scenario.files > 1:
                row.files_s = scenario.files / row.seconds
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


# --- main ----------------------------------------------------------------------------


def run_wan(
    args: argparse.Namespace, profile: Profile, work: Path, scenarios: list[Scenario]
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
                commands = peer_commands(
                    sshd, scenario, dest, work, untuned_lftp=profile.untuned_lftp
                )
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
                                expected, link, driver=True)
                    )  # fmt: skip
        forwarder_cpu = link.cpu_seconds()
    info = {
        "delay_ms_each_way": args.delay_ms,
        "rate_mbit": args.rate_mbit,
        "tbf_mbit": args.tbf_mbit,
        "mtu": args.mtu,
        "loss_pct": args.loss_pct,
        "jitter_ms": args.jitter_ms,
        "rtt_ms": rtt,
        "goodput_mb_s": {str(k): v / 1e6 for k, v in goodput.items()},
        "payload_mb_s": {
            name: {str(k): v / 1e6 for k, v in rates.items()} for name, rates in payload.items()
        },
        "delay_line": link.stats(),  # final counters: the forwarder has stopped
        "delay_line_cpu_seconds": forwarder_cpu,
    }
    return info, rows


def interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_args() -> tuple[argparse.Namespace, Profile]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default",
                        help="scenario set, link and targets (bench/wan_profiles.py)")  # fmt: skip
    parser.add_argument("--file-mib", type=int, default=1024)
    parser.add_argument("--dir-files", type=int, default=200)
    parser.add_argument("--dir-file-mib", type=int, default=2)
    parser.add_argument("--small-files", type=int, default=2000)
    parser.add_argument("--small-min-kib", type=int, default=4)
    parser.add_argument("--small-max-kib", type=int, default=128)
    parser.add_argument("--delay-ms", type=float, default=40.0, help="each way")
    parser.add_argument("--rate-mbit", type=lambda s: [float(n) for n in s.split(",")],
                        default=[1000.0], help="delay-line rate cap (0: none); a comma list runs each")  # fmt: skip
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
    # The profile's values become defaults, so options given on the command line win.
    profile = PROFILES[parser.parse_known_args()[0].profile]
    parser.set_defaults(**profile.defaults)
    return parser.parse_args(), profile


def main() -> None:
    args, profile = parse_args()
    if os.geteuid() != 0:
        raise SystemExit("wan.py needs root (network namespaces, TUN devices)")
    # SIGTERM unwinds like Ctrl-C, so every finally block tears its part down.
    signal.signal(signal.SIGTERM, interrupt)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="q4d-wan-") as tmp:
        work = Path(tmp)
        scenarios = profile.make(work / "seedbox", args)
        loopback: dict[str, Any] = {}
        for rate in args.rate_mbit:
            cap = f"{rate:g}mbit" if rate else "uncapped"
            if len(args.rate_mbit) > 1:
                print(f"\n== {profile.name}: {cap} ==", flush=True)
            run_args = argparse.Namespace(**vars(args) | {"rate_mbit": rate})
            link, rows = run_wan(run_args, profile, work / cap, scenarios)
            if not args.skip_loopback and not loopback:
                big = scenarios[0].remote
                loopback["bridge_cpu"] = asyncio.run(bridge_cpu(work / "loopback", big))
                loopback["verify"] = verify_speed(big, work)
            table(link, rows, profile)
            summary = summarize(link, rows, scenarios, profile)
            if loopback:
                loopback_lines(loopback, profile.targets)
            results = {
                "args": vars(run_args),
                "profile": profile.name,
                "link": link,
                "rows": [dataclasses.asdict(row) for row in rows],
                "loopback": loopback,
                "summary": summary,
                "targets": profile.targets,
            }
            (out / f"{profile.results}-{cap}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
