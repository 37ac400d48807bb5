"""A payload as it is on the seedbox: its path resolved and held to the seedbox's roots,
its tree listed with every symlink and special file set aside.

The symlink policy, the same for every engine: the payload path resolves (SFTP
REALPATH, which follows every link) to a place strictly inside a resolved root, and is
not itself a link; inside a payload, links are never followed and never fetched, only
reported in `skipped`. A torrent can carry symlinks, and a link to `/etc` must not
bring the seedbox's `/etc` home.
"""

from __future__ import annotations

import asyncio
import posixpath
import stat
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import asyncssh

from .errors import ErrorCode, TransferError


@dataclass(frozen=True, slots=True)
class RemoteFile:
    rel: str  # path relative to the payload root ("" for a single-file payload)
    size: int


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """What the seedbox holds at a payload path: one file, or a tree of files."""

    is_dir: bool
    entries: tuple[RemoteFile, ...]
    dirs: tuple[str, ...] = ()  # every directory below the root, so empty ones are kept
    # The payload's resolved path on the seedbox, checked against the roots: engines
    # fetch from here, so a link swapped into a parent directory later changes nothing.
    path: str = ""
    # Symlinks and special files inside the payload: never followed, never fetched.
    skipped: tuple[str, ...] = ()
    # Files the rule's exclude patterns leave on the seedbox (excludes.py): not in
    # `entries`, never fetched; the piece check still needs their place and size.
    excluded: tuple[RemoteFile, ...] = ()
    excluded_dirs: tuple[str, ...] = ()  # folders excluded, with all they hold

    @property
    def size(self) -> int:
        return sum(f.size for f in self.entries)

    @property
    def files(self) -> int:
        return len(self.entries)


MAX_TREE_FILES = 100_000
READDIR_CONCURRENCY = 64
# READDIR requests sent at once, doubling per round: OpenSSH answers 100 names each.
READDIR_AHEAD = 4
READDIR_AHEAD_MAX = 64
_BACKGROUND: set[asyncio.Future[None]] = set()  # held until done: the loop keeps weak refs


def unsafe(message: str) -> TransferError:
    return TransferError(ErrorCode.UNSAFE_PATH, message)


def inside(path: str, root: str) -> bool:
    """Strictly below root: a root itself is a whole download folder, never a payload."""
    return path.startswith(root.rstrip("/") + "/")


async def inspect(sftp: asyncssh.SFTPClient, path: str, roots: Sequence[str]) -> RemoteEntry:
    """The payload at path, resolved and checked (raises `unsafe_path`), then listed.
    The resolutions and the lstat go out together: one round trip before the listing."""
    resolving_roots = asyncio.gather(*(_root(sftp, r) for r in roots))
    try:
        real, attrs = await asyncio.gather(_realpath(sftp, path), sftp.lstat(path))
    finally:
        real_roots = await resolving_roots
    if attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK or stat.S_ISLNK(attrs.permissions or 0):
        raise unsafe(f"{path} is a symlink (to {real}); q4d never follows a payload link")
    if roots and not any(inside(real, r) for r in real_roots if r is not None):
        link = await _first_link(sftp, path, roots)
        via = f" through the symlink {link}" if link else ""
        raise unsafe(f"{path} resolves to {real}{via}, outside the seedbox roots")
    if attrs.type != asyncssh.FILEXFER_TYPE_DIRECTORY and not stat.S_ISDIR(attrs.permissions or 0):
        if attrs.type != asyncssh.FILEXFER_TYPE_REGULAR and not stat.S_ISREG(
            attrs.permissions or 0
        ):
            raise unsafe(f"{path} is not a regular file or a directory")
        return RemoteEntry(False, (RemoteFile("", attrs.size or 0),), path=real)
    return await _list_tree(sftp, real)


async def _realpath(sftp: asyncssh.SFTPClient, path: str) -> str:
    real = await sftp.realpath(path)
    return real if isinstance(real, str) else str(real)


async def _root(sftp: asyncssh.SFTPClient, root: str) -> str | None:
    """A root's resolved path; None when it does not resolve (nothing is inside it)."""
    try:
        return await _realpath(sftp, root)
    except (OSError, asyncssh.Error):
        return None


async def _first_link(sftp: asyncssh.SFTPClient, path: str, roots: Sequence[str]) -> str | None:
    """The first component of path below its root that is a symlink, to name it in
    the refusal (a root may itself sit behind a link: that one is allowed)."""
    root = max((r.rstrip("/") for r in roots if inside(path, r)), key=len, default="")
    parts = path[len(root) :].strip("/").split("/")
    prefixes = [root + "/" + "/".join(parts[: n + 1]) for n in range(len(parts))]
    found = await asyncio.gather(*(sftp.lstat(p) for p in prefixes), return_exceptions=True)
    for prefix, attrs in zip(prefixes, found, strict=True):
        if isinstance(attrs, asyncssh.SFTPAttrs) and attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK:
            return prefix
    return None


async def _list_tree(sftp: asyncssh.SFTPClient, path: str) -> RemoteEntry:
    """A directory payload's files and folders. A folder is listed as soon as its
    parent's listing names it, many at once: round trips, not bytes, make this slow on
    a long link. READDIR reports each entry's own attributes (lstat), so a link is
    seen as a link and set aside."""
    limit = asyncio.Semaphore(READDIR_CONCURRENCY)

    async def listing(rel: str) -> tuple[str, Sequence[asyncssh.SFTPName]]:
        async with limit:
            return rel, await _list_dir(sftp, posixpath.join(path, rel) if rel else path)

    files: list[RemoteFile] = []
    dirs: list[str] = []
    skipped: list[str] = []
    pending = {asyncio.ensure_future(listing(""))}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for listed in done:
                current, entries = listed.result()
                for entry in entries:
                    name = entry.filename
                    if isinstance(name, bytes):
                        name = name.decode("utf-8", "surrogateescape")
                    if name in (".", ".."):
                        continue
                    rel = posixpath.join(current, name) if current else name
                    if entry.attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY:
                        dirs.append(rel)
                        pending.add(asyncio.ensure_future(listing(rel)))
                    elif entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR:
                        files.append(RemoteFile(rel, entry.attrs.size or 0))
                    else:
                        skipped.append(rel)
            if len(files) > MAX_TREE_FILES:
                raise TransferError(ErrorCode.TRANSFER, f"more than {MAX_TREE_FILES} files")
    finally:
        for listing_left in pending:
            listing_left.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return RemoteEntry(
        is_dir=True,
        entries=tuple(sorted(files, key=lambda f: f.rel)),
        dirs=tuple(sorted(dirs)),
        path=path,
        skipped=tuple(sorted(skipped)),
    )


async def _list_dir(sftp: asyncssh.SFTPClient, path: str) -> list[asyncssh.SFTPName]:
    """A directory's entries with READDIR requests pipelined. asyncssh's readdir waits
    a round trip per 100 names and one more for the close; the server answers
    pipelined READDIRs in order (past the end, each with EOF), and the close is left to
    run behind the caller's next request."""
    # The request layer of asyncssh's client: its public readdir cannot pipeline.
    handler = sftp._handler
    handle = await handler.opendir(sftp.encode(path))
    names: list[asyncssh.SFTPName] = []
    ahead = READDIR_AHEAD
    try:
        at_end = False
        while not at_end:
            replies = await asyncio.gather(
                *(handler.readdir(handle) for _ in range(ahead)), return_exceptions=True
            )
            for reply in replies:
                if isinstance(reply, asyncssh.SFTPEOFError):
                    at_end = True
                elif isinstance(reply, BaseException):
                    raise reply
                else:
                    entries, end = reply
                    names.extend(entries)
                    at_end = at_end or end
            ahead = min(READDIR_AHEAD_MAX, ahead * 2)
    finally:
        close_behind(handler.close(handle))
    return names


def unchanged(before: RemoteEntry, after: RemoteEntry) -> None:
    """The payload seen again once the engine finished: raise `unsafe_path` if it now
    resolves elsewhere, or a file or folder that was fetched became a link (swapped in
    while the engine ran); `transfer_failed` (retried) if one changed otherwise."""
    if after.path != before.path or after.is_dir != before.is_dir:
        raise unsafe(f"the payload changed during transfer: it now resolves to {after.path}")
    now = {(f.rel, f.size) for f in after.entries} | {(d, -1) for d in after.dirs}
    gone = sorted(
        rel
        for rel, size in {(f.rel, f.size) for f in before.entries} | {(d, -1) for d in before.dirs}
        if (rel, size) not in now
    )
    if not gone:
        return
    links = set(after.skipped)
    swapped = [rel for rel in gone if any(part in links for part in _ancestry(rel))]
    if swapped:
        raise unsafe(f"became a symlink during transfer: {', '.join(swapped[:5])}")
    raise TransferError(
        ErrorCode.TRANSFER, f"changed on the seedbox during transfer: {', '.join(gone[:5])}"
    )


def _ancestry(rel: str) -> list[str]:
    """rel and every folder above it inside the payload: a/b/c -> a, a/b, a/b/c."""
    parts = rel.split("/")
    return ["/".join(parts[: n + 1]) for n in range(len(parts))]


def close_behind(closing: Awaitable[None]) -> None:
    """Close a remote handle without waiting for the reply (a round trip): the server
    acts on requests in order, and a failed close of a read or directory handle
    changes nothing, so its outcome is dropped."""
    task = asyncio.ensure_future(closing)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    task.add_done_callback(lambda done: None if done.cancelled() else done.exception())
