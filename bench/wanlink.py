"""A simulated WAN between two network namespaces, for benchmarks (this kernel has no netem).

Layout: namespaces "seed" and "home" (names carry this process's PID, so runs never
collide on names), each with a TUN device; bench/delayline.c (compiled with gcc at
start) opens both TUNs and moves every packet from one to the other after D ms,
optionally serialising at a rate cap, and `tc tbf` can cap the rate on top.

Why no veth pair: a veth is a second, undelayed path between the same namespaces, and
nothing here needs one (processes are started with `ip netns exec`, results come back
on stdout and through the shared filesystem, so there is no network control plane).
Any traffic that took it would silently skip the delay; the TUN pair is the only link,
so every byte the benchmark measures crossed the delay line.

Why C, and why a 16 KiB MTU (measured here, 40 ms each way, no cap): the forwarder's
cost is per packet, and it shares 2 cores with ssh crypto at both ends. At MTU 1500 a
Python loop held 4 TCP streams to 87 MB/s where this C loop reached 134 MB/s (using
0.53 of a core, mostly the kernel's work of injecting packets). At MTU 16384 both keep
up (~150 MB/s with 4 streams, ~300 MB/s with 8), the C loop at 0.2 of a core for
150 MB/s and ~20% below Python at 300 MB/s. TCP goodput over a long fat pipe is set by
window / RTT, which the MTU does not change (1 stream: 38 MB/s at either MTU).

Network safety: the test subnet is blackholed in the root namespace before anything
else, so a command that ran outside a namespace by mistake fails locally. Every
command for a namespace is `ip netns exec NS argv`; every process is bounded by a
timeout and stopped by PID (or its own process group); teardown runs in `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

SUBNET = "10.213.77.0/24"
SEED_ADDR = "10.213.77.1"
HOME_ADDR = "10.213.77.2"
TUN_NAME = "q4dwan0"
SOURCE = Path(__file__).with_name("delayline.c")
STOP_TIMEOUT = 5.0


def ns_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def run(argv: list[str], timeout: float = 30.0) -> str:
    """Run a short command; its stdout, or an error naming the command and its stderr."""
    result = subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM then SIGKILL to the process group of a child started with
    start_new_session=True (so tools' own children, e.g. ssh under lftp, go too)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers that outlived their leader


def run_bounded(
    argv: list[str], timeout: float, *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool in its own process group; on timeout the whole group is killed."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, err = proc.communicate()
        raise TimeoutError(f"{' '.join(argv[:6])}... ran over {timeout:.0f} s") from None
    finally:
        stop_group(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@dataclass(frozen=True, slots=True)
class LinkSpec:
    delay_ms: float = 40.0  # each way
    rate_mbit: float = 0.0  # delay-line serialisation cap; 0 = none
    tbf_mbit: float = 0.0  # tc tbf cap on both TUNs' egress; 0 = none
    mtu: int = 16384
    loss_pct: float = 0.0  # random loss per packet, each direction
    jitter_ms: float = 0.0  # up to this much more delay, uniform (order kept)
    seed: int = 1  # the loss and jitter sequence: the same for the same seed


class WanLink:
    """Context manager: blackhole route, two namespaces, the delay line, addresses."""

    def __init__(self, spec: LinkSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        self.seed = f"q4dseed{os.getpid()}"
        self.home = f"q4dhome{os.getpid()}"
        self.stats_path = workdir / "delayline.json"
        self._forwarder: subprocess.Popen[str] | None = None
        self._namespaces: list[str] = []
        self._route = False

    def __enter__(self) -> Self:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = self.workdir / "delayline"
        run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(SOURCE)], timeout=120)
        # First: a mistake that sends to the subnet from the root namespace dies here.
        run(["ip", "route", "add", "blackhole", SUBNET])
        self._route = True
        for ns in (self.seed, self.home):
            run(["ip", "netns", "add", ns])
            self._namespaces.append(ns)
            run(ns_argv(ns, ["ip", "link", "set", "lo", "up"]))
        self._forwarder = subprocess.Popen(
            [
                str(binary), self.seed, self.home, TUN_NAME,
                str(round(self.spec.delay_ms * 1000)),
                str(round(self.spec.rate_mbit * 1e6 / 8)),
                str(self.spec.mtu), str(self.stats_path),
                str(round(self.spec.loss_pct * 1e4)),  # parts per million
                str(round(self.spec.jitter_ms * 1000)), str(self.spec.seed),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us; we stop it in order
        )  # fmt: skip
        assert self._forwarder.stdout is not None
        ready, _, _ = select.select([self._forwarder.stdout], [], [], 10)
        if not ready or self._forwarder.stdout.readline().strip() != "ready":
            raise RuntimeError("delay line did not start")
        for ns, local, peer in (
            (self.seed, SEED_ADDR, HOME_ADDR),
            (self.home, HOME_ADDR, SEED_ADDR),
        ):
            run(
                ns_argv(
                    ns, ["ip", "addr", "add", f"{local}/32", "peer", f"{peer}/32", "dev", TUN_NAME]
                )
            )
            run(ns_argv(ns, ["ip", "link", "set", TUN_NAME, "mtu", str(self.spec.mtu), "up"]))
            if self.spec.tbf_mbit:
                burst = max(self.spec.mtu * 4, round(self.spec.tbf_mbit * 1e6 / 8 / 250))
                run(ns_argv(ns, [
                    "tc", "qdisc", "add", "dev", TUN_NAME, "root", "tbf",
                    "rate", f"{self.spec.tbf_mbit}mbit", "burst", str(burst), "latency", "100ms",
                ]))  # fmt: skip

    def seed_cmd(self, argv: list[str]) -> list[str]:
        return ns_argv(self.seed, argv)

    def home_cmd(self, argv: list[str]) -> list[str]:
        return ns_argv(self.home, argv)

    def stats(self) -> dict[str, Any]:
        """The delay line's counters (rewritten every 0.5 s; final after close())."""
        try:
            data: dict[str, Any] = json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {"directions": []}
        return data

    def losses(self) -> tuple[int, int]:
        """(packets lost at the rate cap's full buffer, packets the forwarder failed to
        pass on). The first is a bottleneck doing its job; the second must stay 0."""
        directions = self.stats()["directions"]
        return (
            sum(d["overflow"] for d in directions),
            sum(d["dropped"] + d["write_errors"] for d in directions),
        )

    def cpu_seconds(self) -> float:
        """CPU time of the forwarder so far (user + system, packet injection included)."""
        if self._forwarder is None:
            return 0.0
        fields = Path(f"/proc/{self._forwarder.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        try:
            if self._forwarder is not None:
                stop_group(self._forwarder)
                if self._forwarder.stdout is not None:
                    self._forwarder.stdout.close()
                self._forwarder = None
        finally:
            for ns in reversed(self._namespaces):
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    run(["ip", "netns", "del", ns])
            self._namespaces.clear()
            if self._route:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    run(["ip", "route", "del", "blackhole", SUBNET])
                self._route = False


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float) -> None:
    """Wait (bounded) for a child to print a line containing text on stdout."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if text in line:
            return
    raise RuntimeError(f"{proc.args!r} did not print {text!r} within {timeout:.0f} s")
