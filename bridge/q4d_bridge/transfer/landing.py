"""Landing a verified payload in the library: its private staging folder, the modes it
gets (never the seedbox's), and the atomic rename into place, so Sonarr/Radarr/Plex never
see a partial or unverified file."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..rules import UnsafePathError

_LOGGER = logging.getLogger(__name__)
STAGING_DIR = ".q4d-partial"
STAGING_RETRIES = 5


def staging_dir(root: Path, item_id: str) -> Path:
    """Inside the destination root, so the final rename never crosses filesystems."""
    return root / STAGING_DIR / item_id


@dataclass(frozen=True, slots=True)
class Modes:
    """The permissions a landed payload gets, whatever it had on the seedbox."""

    file: int = 0o644
    dir: int = 0o755

    def without(self, umask: int) -> Modes:
        return Modes(self.file & ~umask, self.dir & ~umask)


def process_umask() -> int:
    """The process umask, read without changing it (os.umask can only swap it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)  # not on Linux: swap and restore, at start-up only
    os.umask(current)
    return current


def apply_modes(target: Path, modes: Modes) -> None:
    """Give everything that landed the configured modes (the seedbox's are never
    copied). Engines create no links; one found here is removed, never followed."""
    if target.is_symlink():
        raise UnsafePathError(f"{target} is a symlink; engines never create one")
    if not target.is_dir():
        target.chmod(modes.file)
        return
    target.chmod(modes.dir)
    for dirpath, dirs, files in os.walk(target):
        for name, mode in [*((d, modes.dir) for d in dirs), *((f, modes.file) for f in files)]:
            path = Path(dirpath, name)
            if path.is_symlink():
                _LOGGER.warning("removing a symlink from a landed payload: %s", path)
                path.unlink()
            else:
                path.chmod(mode)


def make_private(stage: Path) -> None:
    """The staging folder is the bridge's alone: partial payloads are nobody's to read."""
    for _ in range(STAGING_RETRIES):
        try:
            stage.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            stage.parent.chmod(0o700)
            stage.mkdir(mode=0o700, exist_ok=True)
            return
        except FileNotFoundError:
            continue  # another item's tidy_staging removed the empty parent just now
    stage.mkdir(mode=0o700, exist_ok=True)  # raises what keeps failing


def put_in_place(
    target: Path,
    final_path: Path,
    stage: Path,
    modes: Modes,
    own: Callable[[Path], None] = lambda _folder: None,
) -> None:
    """Atomically put the verified payload at its final path, replacing an older copy.
    Folders made on the way (a rule's subdir) get the landed folders' mode, and `own`
    gives them the landed payload's owner."""
    missing = [p for p in [final_path.parent, *final_path.parent.parents] if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        folder.chmod(modes.dir)
        own(folder)
    if not (final_path.exists() or final_path.is_symlink()):
        target.rename(final_path)
    elif not exchange(target, final_path):
        # No exchange on this filesystem: the older copy steps aside first, so the
        # path is empty for the moment between the two renames.
        old = stage / ".replaced"
        remove(old)
        final_path.rename(old)
        target.rename(final_path)
    discard(stage)  # with the older copy, if it was exchanged into staging


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE), so a library copy
    being replaced is never missing, not even after a crash. False where the kernel or
    filesystem cannot (some network filesystems); other errors raise."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is None:  # a C library older than glibc 2.28
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def discard_staging(root: Path, item_id: str) -> None:
    discard(staging_dir(root, item_id))


def discard(stage: Path) -> None:
    """Remove an item's staging folder, and the destination's staging parent with it
    once no other item stages there."""
    remove(stage)
    tidy_staging(stage.parent)


def tidy_staging(parent: Path) -> None:
    """Remove `.q4d-partial` if it is empty. Race-safe: rmdir removes only an empty
    folder, and another item staging now keeps it (ENOTEMPTY) or makes it again."""
    try:
        parent.rmdir()
    except OSError as err:
        # POSIX lets a non-empty folder's rmdir fail with EEXIST as well as ENOTEMPTY.
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            _LOGGER.warning("cannot remove the empty staging folder %s: %s", parent, err)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
