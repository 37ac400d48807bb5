"""Which files of a payload its rule leaves on the seedbox (`exclude:` patterns, fixed on
the item at intake). Decided once, on the inspected listing, so every engine, the size
check and the piece check agree on the same set of files.

`*.nfo` matches a file name at any depth; `Sample/` a folder of that name at any depth,
with everything in it; a pattern with an inner `/` (`Extras/*.mkv`, `Extras/Sample/`)
matches the path from the payload root, one path segment per pattern segment (`*` never
crosses a `/`). Matching is case-sensitive (fnmatchcase), on the names as listed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from .errors import ErrorCode, TransferError
from .payload import RemoteEntry


@dataclass(frozen=True, slots=True)
class _Pattern:
    parts: tuple[str, ...]
    folder: bool  # `Sample/`: matches folders (and so all they hold), never files
    anchored: bool  # an inner `/`: matched from the payload root

    def matches(self, parts: list[str]) -> bool:
        """Whether these path segments (a file's, or a folder's) match."""
        if not self.anchored:
            return fnmatchcase(parts[-1], self.parts[0])
        return len(parts) == len(self.parts) and all(
            fnmatchcase(part, pattern) for part, pattern in zip(parts, self.parts, strict=True)
        )


class Excludes:
    def __init__(self, patterns: Iterable[str]) -> None:
        compiled = []
        for pattern in patterns:
            parts = tuple(part for part in pattern.split("/") if part)
            if parts:
                compiled.append(_Pattern(parts, pattern.endswith("/"), len(parts) > 1))
        self._folders = [p for p in compiled if p.folder]
        self._files = [p for p in compiled if not p.folder]

    def __bool__(self) -> bool:
        return bool(self._folders or self._files)

    def folder(self, rel: str) -> bool:
        """Whether the folder at rel (inside the payload) or one above it is excluded."""
        parts = rel.split("/")
        return any(
            pattern.matches(parts[:depth])
            for depth in range(1, len(parts) + 1)
            for pattern in self._folders
        )

    def file(self, rel: str) -> bool:
        """Whether the file at rel (inside the payload) is excluded, by its own path or
        by a folder it is in."""
        parts = rel.split("/")
        if len(parts) > 1 and self.folder("/".join(parts[:-1])):
            return True
        return any(pattern.matches(parts) for pattern in self._files)


def without_excluded(entry: RemoteEntry, patterns: Iterable[str], name: str) -> RemoteEntry:
    """The inspected payload without what the patterns exclude: those files move to
    `excluded` (never fetched, kept for the piece check), excluded folders to
    `excluded_dirs`.
    `name` is the payload's own name, matched for a single-file payload. A payload
    left with no file to fetch is refused (`nothing_to_fetch`)."""
    excludes = Excludes(patterns)
    if not excludes:
        return entry
    if not entry.is_dir:
        if excludes.file(name):
            raise TransferError(
                ErrorCode.NOTHING_TO_FETCH,
                f"{name} matches the rule's exclude patterns: nothing to fetch",
            )
        return entry
    kept = tuple(f for f in entry.entries if not excludes.file(f.rel))
    if entry.entries and not kept:
        raise TransferError(
            ErrorCode.NOTHING_TO_FETCH,
            f"every file of {name} matches the rule's exclude patterns: nothing to fetch",
        )
    return replace(
        entry,
        entries=kept,
        dirs=tuple(d for d in entry.dirs if not excludes.folder(d)),
        excluded=tuple(f for f in entry.entries if excludes.file(f.rel)),
        excluded_dirs=tuple(d for d in entry.dirs if excludes.folder(d)),
    )


def payload_name(remote_path: str) -> str:
    return posixpath.basename(remote_path.rstrip("/"))


def outermost(entry: RemoteEntry) -> tuple[list[str], list[str]]:
    """The excluded folders not inside another excluded folder, and the excluded files
    not inside an excluded folder: what a tool's exclude list must name."""
    folders = set(entry.excluded_dirs)

    def under_excluded(rel: str) -> bool:
        parts = rel.split("/")
        return any("/".join(parts[:n]) in folders for n in range(1, len(parts)))

    return (
        [d for d in entry.excluded_dirs if not under_excluded(d)],
        [f.rel for f in entry.excluded if not under_excluded(f.rel)],
    )
