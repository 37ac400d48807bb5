"""CPU-seconds per GiB at home: q4d's engines against OpenSSH sftp, rsync -e ssh and
lftp pget -n 8, one file over a real sshd on 127.0.0.1 (issue 19, target 1).

Each tool runs under a reaper: a child process that makes itself a child subreaper
(prctl PR_SET_CHILD_SUBREAPER), starts the tool, and reaps every descendant, those
orphaned on the way included (lftp does not wait for its ssh children), before it reads
RUSAGE_CHILDREN. So each figure is the CPU time (user + system) of the tool's whole
process tree at home: ssh and its crypto included, the seedbox's sshd not.

q4d's engines run as the bridge builds them (bench/wan_engine.py: config, engine,
SeedboxSession, run_transfer with its size check and atomic publish) in a fresh Python
process. Every tool's start (for q4d: the interpreter, imports and SSH logins; for the
peers: their SSH login) is measured with a 1-byte payload, and the ratio compares the
marginal cost, total minus start: a running bridge starts once, not per payload. Both
figures are printed. Every run's output is checked byte for byte
(SHA-256) against the source; a mismatch is a FAIL.

Run: .venv/bin/python bench/cpu.py [--size-mib 1024] [--runs 2]
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wan import Scenario, peer_commands

from tests.helpers.services import SshServer

GIB = 2**30
PR_SET_CHILD_SUBREAPER = 36
RESULTS = Path(__file__).with_name("results")


def reap(argv: list[str]) -> None:
    """The reaper itself (`bench/cpu.py --reap -- argv…`): prints one JSON line."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    started = time.monotonic()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    out, _ = child.communicate(timeout=900)
    while True:  # the orphans the tool left behind, reparented to us
        try:
            os.wait()
        except ChildProcessError:
            break
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "rc": child.returncode,
        "cpu": used.ru_utime + used.ru_stime,
        "wall": time.monotonic() - started,
        "stdout": out.decode(errors="replace")[-2000:],
    }))  # fmt: skip


@dataclass
class Figure:
    tool: str
    cpu: float
    wall: float
    ok: bool


def reaped(argv: list[str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, __file__, "--reap", "--", *argv],
        capture_output=True, text=True, timeout=1000, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"reaper failed: {result.stderr[-2000:]}")
    data: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return data


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def q4d_argv(engine: str, sshd: SshServer, remote: Path, dest: Path, work: Path) -> list[str]:
    return [
        sys.executable, str(Path(__file__).with_name("wan_engine.py")), "--engine", engine,
        "--host", sshd.host, "--port", str(sshd.port), "--user", sshd.user,
        "--key", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts),
        "--remote", str(remote), "--dest", str(dest), "--work", str(work),
    ]  # fmt: skip


def measure(tool: str, argv: list[str], target: Path, expected: str, dest: Path) -> Figure:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    data = reaped(argv)
    ok = data["rc"] == 0 and target.is_file() and sha256(target) == expected
    cpu, wall = float(data["cpu"]), float(data["wall"])  # type: ignore[arg-type]
    print(
        f"  {tool:<34} cpu {cpu:6.2f} s  wall {wall:6.2f} s  {'OK' if ok else 'FAIL'}", flush=True
    )
    return Figure(tool, cpu, wall, ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=2, help="best of N per tool")
    parser.add_argument("--engines", default="sftp,lftp,rsync")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="q4d-cpu-"))
    try:
        with SshServer(work / "sshd") as sshd:
            seed = work / "seedbox"
            seed.mkdir()
            source = seed / "payload.bin"
            with source.open("wb") as out:
                for _ in range(args.size_mib):
                    out.write(os.urandom(1 << 20))
            tiny = seed / "tiny.bin"
            tiny.write_bytes(b"x")
            expected, gib = sha256(source), source.stat().st_size / GIB
            dest, scripts = work / "home", work / "scripts"
            scripts.mkdir()
            print(f"{args.size_mib} MiB over sshd on 127.0.0.1, best of {args.runs}; "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip

            def commands(payload: Path) -> dict[str, list[str]]:
                scenario = Scenario(payload.name, payload, payload.stat().st_size)
                tools = peer_commands(sshd, scenario, dest, scripts, untuned_lftp=True)
                tools = {k: v for k, v in tools.items() if "packets in flight" not in k}
                for engine in args.engines.split(","):
                    tools[f"q4d {engine}"] = q4d_argv(engine, sshd, payload, dest, work / "data")
                return tools

            best: dict[str, Figure] = {}
            for _ in range(args.runs):
                for tool, argv in commands(source).items():
                    fig = measure(tool, argv, dest / source.name, expected, dest)
                    if fig.ok and (tool not in best or fig.cpu < best[tool].cpu):
                        best[tool] = fig
            startup: dict[str, float] = {}
            for tool, argv in commands(tiny).items():
                fig = measure(f"{tool} (1 byte)", argv, dest / tiny.name, sha256(tiny), dest)
                startup[tool] = fig.cpu
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def net(tool: str) -> float:
        return (best[tool].cpu - startup.get(tool, 0.0)) / gib

    peer_best = min((net(t) for t in best if not t.startswith("q4d")), default=0.0)
    print(f"\nCPU-seconds per GiB at home (load {os.getloadavg()[0]:.2f} at the end)")
    print(f"{'tool':<34} {'CPU-s/GiB':>10} {'marginal':>14} {'MB/s':>8} {'vs frugal peer':>15}")
    report = []
    for tool, fig in best.items():
        per_gib = fig.cpu / gib
        marginal = net(tool)
        ratio = marginal / peer_best if peer_best else float("nan")
        verdict = ("PASS" if ratio <= 1.0 else "MISS") if tool == "q4d sftp" else ""
        print(f"{tool:<34} {per_gib:10.2f} {marginal:14.2f} {gib * GIB / fig.wall / 1e6:8.1f} "
              f"{ratio:14.2f}x {verdict}")  # fmt: skip
        report.append({"tool": tool, "cpu_s_per_gib": per_gib, "marginal_cpu_s_per_gib": marginal,
                       "mb_s": gib * GIB / fig.wall / 1e6, "ratio": ratio})  # fmt: skip
    print("target: q4d sftp (the default engine) <= 1.0 x the most frugal peer")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cpu.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0 if len(best) == len(startup) else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--reap" and sys.argv[2] == "--":
        reap(sys.argv[3:])
    else:
        sys.exit(main())
