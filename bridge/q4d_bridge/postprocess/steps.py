"""The steps this bridge can run, built from its configuration, and what they share:
new files a step makes get the landed payload's modes and owner."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..clients.base import TorrentClient
from ..config.model import Config
from ..transfer.errors import TransferError
from ..transfer.landing import Modes, process_umask
from ..transfer.ownership import modes_for, resolve
from ..transfer.remote import SeedboxSession
from ..transfer.torrents import TorrentSource
from ..transfer.verify import Range
from .arr_import import ArrImport
from .base import Closing, Landed, Step, StepError
from .cleanup import Cleanup
from .extract import Extract
from .handoff import Handoff
from .plan import Ownership


def post_steps(
    config: Config,
    *,
    torrents: Mapping[str, TorrentSource],
    sessions: Mapping[str, SeedboxSession],
    clients: Mapping[str, TorrentClient],
) -> dict[str, Step]:
    """Every step, given the seedboxes' .torrent sources, SSH sessions and clients."""
    transfers = config.transfers
    base = Modes(transfers.file_mode, transfers.dir_mode).without(process_umask())

    async def torrent_for(landed: Landed) -> bytes | None:
        source = torrents.get(landed.seedbox)
        return None if source is None else await source.metainfo(landed.hash)

    async def repair(landed: Landed, ranges: Sequence[Range]) -> int:
        return await sessions[landed.seedbox].fetch_ranges(landed.remote_path, landed.path, ranges)

    return {
        "extract": Extract(fix=lambda path, ownership: give(path, ownership, base)),
        "handoff": Handoff(
            config.home_clients,
            torrent_for=torrent_for,
            repair=repair,
            seedbox_client=clients.get,
        ),
        "arr_import": ArrImport(config.arr),
        "cleanup": Cleanup(clients.get),
    }


def give(path: Path, ownership: Ownership, base: Modes) -> None:
    """What landing gives every file and folder of a payload (transfer/ownership.py),
    for one a step made after it landed."""
    modes = modes_for(base, ownership)
    try:
        ids = resolve(ownership)
        path.chmod(modes.dir if path.is_dir() else modes.file)
        if ids:
            os.chown(path, ids.uid, ids.gid, follow_symlinks=False)
    except TransferError as err:
        raise StepError(err.message) from None
    except PermissionError as err:
        raise StepError(f"cannot give {path} its owner or modes: {err.strerror}") from None


async def close_steps(steps: Mapping[str, Step]) -> None:
    """Steps holding connections (an HTTP session) let them go."""
    for step in steps.values():
        if isinstance(step, Closing):
            await step.close()
