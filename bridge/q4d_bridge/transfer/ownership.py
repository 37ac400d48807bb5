"""Who owns a landed payload, and its modes, as its rule or destination says (`owner`,
`group`, `file_mode`, `dir_mode`): applied in staging, before the atomic rename, so the
library never shows a file with the bridge's owner first and the configured one later.

Names resolve through this machine's user and group database (pwd/grp): a media
container's PUID/PGID can be given as numbers, which are used as they are.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from ..postprocess.plan import Ownership
from ..rules import ensure_inside
from .errors import ErrorCode, TransferError
from .landing import Modes, apply_modes, put_in_place

PROBE = ".q4d-chown-probe"


@dataclass(frozen=True, slots=True)
class Ids:
    """Numeric owner and group; -1 leaves that one as it is (os.chown's convention)."""

    uid: int = -1
    gid: int = -1

    def __bool__(self) -> bool:
        return self.uid != -1 or self.gid != -1


def resolve(ownership: Ownership) -> Ids:
    """The configured owner and group as ids; an unknown name raises `ownership`."""
    uid = gid = -1
    if isinstance(ownership.owner, int):
        uid = ownership.owner
    elif ownership.owner is not None:
        try:
            uid = pwd.getpwnam(ownership.owner).pw_uid
        except KeyError:
            raise TransferError(
                ErrorCode.OWNERSHIP,
                f"owner {ownership.owner!r} is not a user on the bridge's machine; "
                "give a numeric uid (a media container's PUID) or create the user",
            ) from None
    if isinstance(ownership.group, int):
        gid = ownership.group
    elif ownership.group is not None:
        try:
            gid = grp.getgrnam(ownership.group).gr_gid
        except KeyError:
            raise TransferError(
                ErrorCode.OWNERSHIP,
                f"group {ownership.group!r} is not a group on the bridge's machine; "
                "give a numeric gid (a media container's PGID) or create the group",
            ) from None
    return Ids(uid, gid)


def modes_for(base: Modes, ownership: Ownership) -> Modes:
    """The plan's modes where it sets them, as given (a configured 0664 stays 0664
    whatever the bridge's umask); the transfers' modes otherwise."""
    return Modes(
        base.file if ownership.file_mode is None else ownership.file_mode,
        base.dir if ownership.dir_mode is None else ownership.dir_mode,
    )


def probe(stage: Path, ids: Ids) -> None:
    """Fail before fetching anything when the bridge may not give away what it lands:
    one empty file in the staging folder takes the owner and group, then goes."""
    if not ids:
        return
    path = stage / PROBE
    path.touch(mode=0o600)
    try:
        _chown(path, ids)
    finally:
        path.unlink(missing_ok=True)


def land(target: Path, final_path: Path, root: Path, modes: Modes, ids: Ids) -> None:
    """Land a verified payload from staging: its modes and owner, in staging, then the
    atomic rename. A refused chown (or a crash, even kill -9, at any point) leaves it
    whole in staging, ready for a retry, or whole in place: never half-moved."""
    apply_modes(target, modes)
    chown_tree(target, ids)
    ensure_inside(root, final_path)
    put_in_place(target, final_path, target.parent, modes, lambda folder: chown_tree(folder, ids))


def chown_tree(target: Path, ids: Ids) -> None:
    """Give the landed payload (a file, or a folder and all in it) its owner and group.
    Engines create no links and the modes step removed any found, so nothing here is a
    link; a link's target is never changed all the same (follow_symlinks=False)."""
    if not ids:
        return
    _chown(target, ids)
    if target.is_dir() and not target.is_symlink():
        for dirpath, dirs, files in os.walk(target):
            for name in (*dirs, *files):
                _chown(Path(dirpath, name), ids)


def _chown(path: Path, ids: Ids) -> None:
    try:
        os.chown(path, ids.uid, ids.gid, follow_symlinks=False)
    except PermissionError as err:  # EPERM (or EACCES): other errors are local_error's
        raise refused(path, ids) from err


def refused(path: Path, ids: Ids) -> TransferError:
    """What to do when the kernel refuses the chown (EPERM): only root (CAP_CHOWN) may
    give a file to another user; a group, its owner may give only to a group it is in."""
    euid = os.geteuid()
    wanted = ", ".join(
        f"{kind} {number}" for kind, number in (("uid", ids.uid), ("gid", ids.gid)) if number != -1
    )
    if ids.uid not in (-1, euid):
        fix = "run the bridge as root, or drop owner: from the destination or rule"
    else:
        fix = (
            f"run the bridge as root or as a member of group {_group_name(ids.gid)}, "
            "or drop group: from the destination or rule"
        )
    return TransferError(
        ErrorCode.OWNERSHIP,
        f"cannot give {path} to {wanted}: the bridge (uid {euid}) lacks the right; {fix}",
    )


def _group_name(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} ({gid})"
    except KeyError:
        return str(gid)
