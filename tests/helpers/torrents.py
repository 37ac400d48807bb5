"""Real .torrent files for tests, made with libtorrent: v1, v2 or hybrid, of a file or
a folder, trackers (if any) on a closed loopback port."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

import libtorrent as lt

Kind = Literal["v1", "v2", "hybrid"]
FLAGS = {"v1": lt.create_torrent.v1_only, "v2": lt.create_torrent.v2_only, "hybrid": 0}
CLOSED_TRACKER = "http://127.0.0.1:9/announce"


def random_file(path: Path, size: int, seed: int | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def torrent_of(
    payload: Path,
    kind: Kind = "v1",
    *,
    piece_size: int = 16384,
    tracker: str | None = CLOSED_TRACKER,
    trackers: tuple[str, ...] = (),
) -> bytes:
    """The .torrent of `payload` (a file or a folder), announcing to `tracker` and then
    `trackers`, one tier each."""
    if hasattr(lt, "list_files"):  # libtorrent 2.1, which deprecates file_storage
        made = lt.create_torrent(lt.list_files(str(payload)), piece_size, FLAGS[kind])
    else:  # 2.0, as Debian builds it for Python 3.14 (.venv-ha)
        storage = lt.file_storage()
        lt.add_files(storage, str(payload))
        made = lt.create_torrent(storage, piece_size, FLAGS[kind])
    for tier, url in enumerate(t for t in (tracker, *trackers) if t is not None):
        made.add_tracker(url, tier)
    lt.set_piece_hashes(made, str(payload.parent))
    return bytes(lt.bencode(made.generate()))
