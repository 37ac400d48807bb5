"""bench/wan.py's profiles: the link, the payloads and the targets of each scenario set.

  default      80 ms RTT (40 each way), 1 Gbit/s cap, MTU 16384: one 1 GiB file, 200 x
               2 MiB; q4d's best >= 0.9 x the link's multi-stream goodput and >= 1.0 x
               the best peer (the issue-19 "keep" table)
  lossy        160 ms RTT (80 each way), 0.1 % random loss each way, MTU 1500, run at a
               200 Mbit/s and a 1 Gbit/s cap: one 256 MiB file, 50 x 2 MiB; q4d's best
               >= 0.9 x the link's multi-stream goodput (best of 1/4/8/16 streams: under
               loss more connections win) and >= 1.5 x the best peer (lftp tuned among them)
  small-files  80 ms RTT, 1 Gbit/s cap: 2,000 files of 4-128 KiB in three folder levels
               (~130 MiB, sizes from a seeded RNG); q4d's best >= 0.8 x raw TCP moving the
               same bytes, files/s per row

Every value a profile sets is an argparse default, so the command line still wins
(`--profile lossy --rate-mbit 200 --file-mib 64`).

How long (measured here, 2 cores): lossy ~10 min per cap at full size (19 min for
both); small-files ~10 min with --small-files 1000, about twice that at 2,000, most of
it OpenSSH `sftp -r` (~3 files/s: several round trips per file, one file at a time).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
SLOWEST = 1e6  # bytes/s: any tool slower than this is cut off (timeout) and FAILs


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    remote: Path  # the payload on the seedbox (a file or a directory)
    size: int
    files: int = 1

    @property
    def is_dir(self) -> bool:
        return self.remote.is_dir()


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    defaults: dict[str, Any]  # argparse defaults; an explicit option overrides them
    targets: dict[str, float]  # summary key -> bound; keys absent here print no verdict
    make: Callable[[Path, argparse.Namespace], list[Scenario]]
    results: str  # results/<results>-<cap>.json
    untuned_lftp: bool = True  # also run lftp with its default packets in flight
    files_per_s: bool = False  # print files/s per row


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


def file_and_dir(seedbox: Path, args: argparse.Namespace) -> list[Scenario]:
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
            args.dir_files,
        ),
    ]


def small_file_layout(count: int, min_kib: int, max_kib: int, seed: int) -> list[tuple[str, int]]:
    """(relative path, size) for `count` files three folders deep, like a music
    collection (artist/album/disc/track): 5 x 5 x 4 leaf folders, files dealt out
    round-robin, sizes uniform in [min_kib, max_kib] KiB from a seeded RNG, so every
    run (and every machine) moves the same tree."""
    rng = random.Random(seed)
    leaves = [
        f"artist-{a}/album-{b}/disc-{c}" for a in range(5) for b in range(5) for c in range(4)
    ]
    return [
        (f"{leaves[n % len(leaves)]}/track-{n:05}.flac", rng.randint(min_kib * KIB, max_kib * KIB))
        for n in range(count)
    ]


def small_files(seedbox: Path, args: argparse.Namespace) -> list[Scenario]:
    root = seedbox / "collection"
    layout = small_file_layout(args.small_files, args.small_min_kib, args.small_max_kib, 19)
    for rel, size in layout:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    total = sum(size for _, size in layout)
    name = f"{len(layout)} files {args.small_min_kib}-{args.small_max_kib} KiB"
    return [Scenario(name, root, total, len(layout))]


PROFILES = {
    "default": Profile(
        "default",
        {},
        {"vs_link": 0.9, "vs_peer": 1.0, "cpu_s_per_gib": 0.2, "verify_vs_sha1": 0.8},
        file_and_dir,
        "wan",
    ),
    "lossy": Profile(
        "lossy",
        {
            "delay_ms": 80.0,
            "loss_pct": 0.1,
            "mtu": 1500,
            "rate_mbit": [200.0, 1000.0],
            "file_mib": 256,
            "dir_files": 50,
            "streams": [1, 4, 8, 16],
            "probe_seconds": 15.0,
            "skip_loopback": True,
        },
        {"vs_link": 0.9, "vs_peer": 1.5},
        file_and_dir,
        "wan-lossy",
    ),
    "small-files": Profile(
        "small-files",
        {"skip_loopback": True},
        {"vs_raw_tcp": 0.8},
        small_files,
        "wan-small-files",
        untuned_lftp=False,
        files_per_s=True,
    ),
}
