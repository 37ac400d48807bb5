"""The steps this bridge can run, built from its configuration, and what they share:
new files a step makes get the landed payload's modes and owner."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..config.model import Config
from ..transfer.errors import TransferError
from ..transfer.landing import Modes, process_umask
from ..transfer.ownership import modes_for, resolve
from .arr_import import ArrImport
from .base import Closing, Step, StepError
from .extract import Extract
from .plan import Ownership


def post_steps(config: Config) -> dict[str, Step]:
    transfers = config.transfers
    base = Modes(transfers.file_mode, transfers.dir_mode).without(process_umask())
    return {
        "extract": Extract(fix=lambda path, ownership: give(path, ownership, base)),
        "arr_import": ArrImport(config.arr),
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
