"""Verified in the library as fast as the bytes arrive (issue 19, target 4): piece hashes
checked while the SFTP engine writes, against the read-back check after the last byte.

Everything runs in this process as the bridge runs it: q4d_bridge.transfer.pipeline's
run_transfer with a real SeedboxSession and SftpEngine against an OpenSSH sshd on
127.0.0.1 (tests/helpers/services.py), config from q4d_bridge.config with its defaults,
connections opened before the clock starts (the bridge's steady state). The .torrent is
made here from the bytes written (v1, single file) and handed to run_transfer as the
seedbox's torrent source would.

Three modes, each a real user setting, in the same run:
  alone      transfers.verify false: the transfer, size check and landing only
  streaming  transfers.verify + stream_verify true (the default): pieces hashed as
             they arrive in a worker thread; only pieces not seen whole are read back
  read-back  stream_verify false: the whole payload hashed from disk after the last
             byte (what every engine did before, and lftp/rsync still do)

Row 1: a --size-1 file (default 1 GiB, 1 MiB pieces) at the bridge's own bandwidth
limit (--cap, default 1 Gbit/s = 125,000,000 B/s), --reps runs per mode interleaved,
medians. "completion -> verified at final path" is the whole attempt (the seedbox's
completion handed to run_transfer, to the verified payload renamed into place); target
<= 1.03 x the same attempt without verification. The tail after the last byte is
printed too.

Row 2: a --size-2 file (default 5 GiB, 4 MiB pieces) on loopback, unlimited. Bytes read
are counted two ways, from the transfer's start to the landed file:
  - read_bytes of /proc/self/io: bytes this process (the bridge) caused to be read
    from storage (sshd reading the seedbox's copy is another process). It misses
    reads served by the page cache, and a payload just written is in the cache (this
    machine has more RAM than 5 GiB), so after the last byte the staged file is
    written out and dropped from the cache (fdatasync + POSIX_FADV_DONTNEED, in every
    mode, outside nothing: the row is about bytes, not time): a read-back then shows
    up here as storage reads, as it would on a small NAS.
  - verifier bytes: every byte the read-back check hashes passes through
    q4d_bridge.transfer.verify._stream (file reads, zeros for padding); it is wrapped
    and counted. The streaming hasher opens no file: it hashes the engine's buffers.
Target: no second read, i.e. verifier bytes 0 and read_bytes ~0 (PASS if read_bytes is
under 1 % of the payload) for streaming.

Every run checks the landed file's SHA-256 against the source's and FAILs otherwise.

Run: .venv/bin/python bench/verify_stream.py [--size-1 1GiB] [--size-2 5GiB] [--reps 3]
     [--work /var/tmp/q4d-verify-stream]  (needs size-1 + size-2 twice on disk, free)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bridge"))

import fastbencode
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import Config, SeedboxConfig
from q4d_bridge.transfer import verify
from q4d_bridge.transfer.bandwidth import Bandwidth
from q4d_bridge.transfer.engines.base import Engine, ProgressCallback, TransferRequest
from q4d_bridge.transfer.engines.sftp import SftpEngine
from q4d_bridge.transfer.landing import remove, staging_dir
from q4d_bridge.transfer.pipeline import Job, run_transfer
from q4d_bridge.transfer.remote import SeedboxSession
from q4d_bridge.transfer.verify import TorrentInfo
from wan_engine import Unheard

from tests.helpers.configs import bridge_config
from tests.helpers.services import SshServer

RESULTS = Path(__file__).resolve().parent / "results" / "verify_stream.json"
MODES = ("alone", "streaming", "read-back")
TARGET_RATIO = 1.03
BLOCK = 16 * 1024 * 1024
UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def size(text: str) -> int:
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def make_payload(path: Path, length: int, piece: int) -> tuple[bytes, str]:
    """A random file with its .torrent (v1) and SHA-256, made in one pass and kept for
    the next run."""
    meta = path.with_suffix(".torrent")
    digest_file = path.with_suffix(".sha256")
    if path.exists() and path.stat().st_size == length and meta.exists() and digest_file.exists():
        return meta.read_bytes(), digest_file.read_text()
    path.parent.mkdir(parents=True, exist_ok=True)
    whole = hashlib.sha256()
    pieces = bytearray()
    with path.open("wb") as out:
        left = length
        while left:
            data = os.urandom(min(piece, left))
            out.write(data)
            whole.update(data)
            pieces += hashlib.sha1(data, usedforsecurity=False).digest()
            left -= len(data)
    info = {b"length": length, b"name": path.name.encode(), b"piece length": piece,
            b"pieces": bytes(pieces)}  # fmt: skip
    meta.write_bytes(fastbencode.bencode({b"info": info}))
    digest_file.write_text(whole.hexdigest())
    return meta.read_bytes(), whole.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def cpu_seconds() -> float:
    """User + system CPU of this process, every thread (the hasher's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def storage_reads() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no read_bytes in /proc/self/io")


class Counted:
    """Bytes the read-back check hashed (verify._stream wrapped)."""

    def __init__(self) -> None:
        self.bytes = 0
        original = verify._stream

        def counting(*args: Any) -> Iterator[bytes]:
            for block in original(*args):
                self.bytes += len(block)
                yield block

        verify._stream = counting


class Timed:
    """The real engine, timed; with evict, the staged file is then written out and
    dropped from the page cache."""

    def __init__(self, inner: Engine, *, evict: bool) -> None:
        self.inner, self.name, self.evict = inner, inner.name, evict
        self.started = self.ended = 0.0

    def warm(self, seedbox: SeedboxConfig) -> None:
        self.inner.warm(seedbox)

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        self.started = time.monotonic()
        await self.inner.fetch(request, on_progress)
        self.ended = time.monotonic()
        if self.evict:
            await asyncio.to_thread(drop_cached, request.target)


def drop_cached(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def config_for(work: Path, sshd: SshServer, mode: str, cap: int) -> Config:
    raw = bridge_config(
        work / "data", work / "library", key=sshd.client_key, known_hosts=sshd.known_hosts,
        ssh_port=sshd.port, user=sshd.user,
    )  # fmt: skip
    raw["transfers"].update(
        min_free_space=0, bandwidth_limit=cap, verify=mode != "alone",
        stream_verify=mode == "streaming",
    )  # fmt: skip
    return parse_config(raw)


async def attempt(
    work: Path, sshd: SshServer, source: Path, meta: bytes, digest: str, mode: str,
    *, cap: int, evict: bool, counted: Counted,
) -> dict[str, Any]:  # fmt: skip
    config = config_for(work, sshd, mode, cap)
    seedbox = config.seedboxes["sb1"]
    transfers = config.transfers
    session = SeedboxSession(seedbox)
    inner = SftpEngine(transfers.sftp, Bandwidth(transfers.bandwidth_limit))
    engine = Timed(inner, evict=evict)
    library = work / "library" / "other"
    final = library / source.name
    info = TorrentInfo.from_bytes(meta)

    async def lookup() -> TorrentInfo:
        return info

    try:
        await session.inspect_payload(str(source.parent), ())
        inner.warm(seedbox)
        await inner.wait_warm(seedbox)
        job = Job(f"bench-{mode}", seedbox, str(source), library, final,
                  stream_verify=transfers.stream_verify)  # fmt: skip
        counted.bytes = 0
        reads_before = storage_reads()
        cpu_before = cpu_seconds()
        started = time.monotonic()
        landed = await run_transfer(
            job, session=session, engine=engine, reporter=Unheard(),
            torrent=lookup if transfers.verify else None,
        )  # fmt: skip
        finished = time.monotonic()
        cpu = cpu_seconds() - cpu_before
        reads = storage_reads() - reads_before
    finally:
        await session.close()
        await inner.close()
    ok = await asyncio.to_thread(sha256_of, final) == digest
    remove(final)
    remove(staging_dir(library, job.item_id))
    return {
        "mode": mode, "bytes": landed.size, "verified": landed.verified, "sha256_ok": ok,
        "total_s": finished - started, "fetch_s": engine.ended - engine.started,
        "tail_s": finished - engine.ended, "storage_read_bytes": reads,
        "verifier_bytes": counted.bytes, "cpu_s": cpu, "load1": os.getloadavg()[0],
    }  # fmt: skip


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


async def row_time(args: argparse.Namespace, sshd: SshServer, counted: Counted) -> dict[str, Any]:
    source = args.work / "seedbox" / "one.bin"
    meta, digest = make_payload(source, args.size_1, 1024**2)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.reps):
        for mode in MODES:
            run = await attempt(args.work, sshd, source, meta, digest, mode, cap=args.cap,
                                evict=False, counted=counted)  # fmt: skip
            runs[mode].append(run)
            print(f"   {mode:<10} {run['total_s']:7.2f} s  (last byte at {run['fetch_s']:.2f} s, "
                  f"tail {run['tail_s'] * 1000:.0f} ms, CPU {run['cpu_s']:.2f} s, verifier read {run['verifier_bytes']:,} B,"
                  f" sha256 {'ok' if run['sha256_ok'] else 'FAIL'}, load {run['load1']:.2f})")  # fmt: skip
    median = {m: {k: statistics.median(r[k] for r in runs[m]) for k in ("total_s", "fetch_s",
              "tail_s", "cpu_s", "verifier_bytes")} for m in MODES}  # fmt: skip
    alone = median["alone"]["total_s"]
    ratios = {m: median[m]["total_s"] / alone for m in MODES}
    return {"size": args.size_1, "cap_bytes_per_s": args.cap, "runs": runs, "median": median,
            "ratio": ratios, "pass": ratios["streaming"] <= TARGET_RATIO,
            "all_sha256_ok": all(r["sha256_ok"] for rs in runs.values() for r in rs)}  # fmt: skip


async def row_bytes(args: argparse.Namespace, sshd: SshServer, counted: Counted) -> dict[str, Any]:
    source = args.work / "seedbox" / "five.bin"
    meta, digest = make_payload(source, args.size_2, 4 * 1024**2)
    runs = {}
    for mode in ("streaming", "read-back"):
        run = await attempt(args.work, sshd, source, meta, digest, mode, cap=0, evict=True,
                            counted=counted)  # fmt: skip
        runs[mode] = run
        print(f"   {mode:<10} {run['total_s']:7.2f} s  storage read_bytes "
              f"{run['storage_read_bytes']:,} B, verifier read {run['verifier_bytes']:,} B, "
              f"sha256 {'ok' if run['sha256_ok'] else 'FAIL'}, load {run['load1']:.2f}")  # fmt: skip
    stream = runs["streaming"]
    passed = stream["verifier_bytes"] == 0 and stream["storage_read_bytes"] < args.size_2 // 100
    return {"size": args.size_2, "runs": runs, "pass": passed,
            "all_sha256_ok": all(r["sha256_ok"] for r in runs.values())}  # fmt: skip


def cells(fmt: str, values: Any) -> str:
    return "".join(f"{fmt.format(v):>15}" for v in values)


def gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-1", type=size, default=size("1GiB"))
    parser.add_argument("--size-2", type=size, default=size("5GiB"))
    parser.add_argument("--cap", type=int, default=125_000_000, help="bytes/s for row 1")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/q4d-verify-stream"))
    parser.add_argument("--skip-bytes", action="store_true", help="row 1 only")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    counted = Counted()
    load_before = os.getloadavg()
    with SshServer(args.work / "sshd") as sshd:
        print(f"row 1: {gib(args.size_1)} file, bandwidth limit {args.cap * 8 / 1e9:.2f} Gbit/s "
              f"(the bridge's own), {args.reps} runs per mode")  # fmt: skip
        timed = await row_time(args, sshd, counted)
        counted_row = None
        if not args.skip_bytes:
            print(f"row 2: {gib(args.size_2)} file on loopback, unlimited, page cache dropped "
                  "after the last byte")  # fmt: skip
            counted_row = await row_bytes(args, sshd, counted)
    load_after = os.getloadavg()
    ok = timed["all_sha256_ok"] and (counted_row is None or counted_row["all_sha256_ok"])
    med, ratio = timed["median"], timed["ratio"]
    print()
    print(f"{'':44}" + cells("{}", MODES))
    print(f"{'completion -> verified at final path (s)':44}"
          + cells("{:.2f}", [med[m]["total_s"] for m in MODES]))  # fmt: skip
    print(f"{'  of which after the last byte (ms)':44}"
          + cells("{:.0f}", [med[m]["tail_s"] * 1000 for m in MODES]))  # fmt: skip
    print(f"{'  CPU of the bridge process (s)':44}"
          + cells("{:.2f}", [med[m]["cpu_s"] for m in MODES]))  # fmt: skip
    print(f"{'  ratio to the transfer alone':44}" + cells("{:.3f}", [ratio[m] for m in MODES])
          + f"   target <= {TARGET_RATIO}: {verdict(timed['pass'])}")  # fmt: skip
    if counted_row is not None:
        runs = counted_row["runs"]
        two = ("streaming", "read-back")
        print(f"{gib(args.size_2) + ' payload, bytes read after writing it':44}{'':15}"
              + cells("{}", two))  # fmt: skip
        print(f"{'  storage read_bytes (/proc/self/io)':44}{'':15}"
              + cells("{:,}", [runs[m]["storage_read_bytes"] for m in two]))  # fmt: skip
        print(f"{'  bytes the verifier hashed from files':44}{'':15}"
              + cells("{:,}", [runs[m]["verifier_bytes"] for m in two])
              + f"   target 0 (no second read): {verdict(counted_row['pass'])}")  # fmt: skip
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
          f"{os.cpu_count()} cores (other benchmarks may share this machine)")  # fmt: skip
    print("bytes verified (SHA-256 of every landed file):", "ok" if ok else "FAIL")
    result = {"time": timed, "bytes": counted_row, "cpus": os.cpu_count(),
              "loadavg_before": load_before, "loadavg_after": load_after, "sha256_ok": ok}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS}")
    if not ok:
        raise SystemExit("FAIL: a landed file does not match its source")


if __name__ == "__main__":
    asyncio.run(main())
