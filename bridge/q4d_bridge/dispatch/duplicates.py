"""Is a new torrent one q4d already has? The same info-hash (v1, v2, or a v2 cut to the
40 digits clients list it under) or the same release name, normalised, on any seedbox
client, among the requests or in the queue's history. Pure."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from ..clients.metainfo import Metainfo

VIDEO_SUFFIX = re.compile(r"\.(mkv|mp4|avi|m4v|ts|iso|torrent)$", re.IGNORECASE)


@functools.lru_cache(maxsize=65536)  # every decision compares against the same names
def normalise_name(name: str) -> str:
    """`Movie.Title.2024.2160p`, `movie title 2024 2160p` and `Movie_Title-2024-2160p.mkv`
    are one release: compatibility-folded, case-folded, a file suffix dropped, every run
    of punctuation or spaces one space."""
    folded = unicodedata.normalize("NFKC", name).strip()
    folded = VIDEO_SUFFIX.sub("", folded).casefold()
    return " ".join(re.findall(r"\w+", folded))


@dataclass(frozen=True, slots=True)
class Known:
    """Something q4d knows of, where it is and in what state."""

    hashes: tuple[str, ...]
    name: str | None
    location: str  # e.g. "seedbox1's qbittorrent", "the queue (item 483d7eec632f7436)"
    status: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    known: Known
    by: str  # "hash" or "name"

    @property
    def message(self) -> str:
        what = self.known.name or self.known.hashes[0]
        return f"already known by {self.by}: {what!r} in {self.known.location}, {self.known.status}"


def find_duplicate(meta: Metainfo, known: Iterable[Known]) -> Duplicate | None:
    """The first of `known` with one of the torrent's hashes, else the first with its
    normalised name (hash matches win: two releases may share a name, never a hash)."""
    name = normalise_name(meta.name) if meta.name else None
    hashes = meta.hashes
    by_name: Duplicate | None = None
    for entry in known:
        if any(h.lower() in hashes for h in entry.hashes):
            return Duplicate(entry, "hash")
        if (
            by_name is None
            and name
            and entry.name is not None
            and normalise_name(entry.name) == name
        ):
            by_name = Duplicate(entry, "name")
    return by_name
