"""What a new torrent is before any client has it: its info-hashes (v1, v2 or both),
name, size and trackers, read from a magnet link or a .torrent file with libtorrent's
own parser, the one qBittorrent and Deluge load torrents with. Pure functions: an add
can be retried without adding twice, and duplicates matched across v1 and v2."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl

from .base import NewTorrent

if TYPE_CHECKING:
    import libtorrent as lt

MAX_TORRENT_FILE = 8 * 1024 * 1024
_MIB = 1024 * 1024
# The `xt` topics libtorrent reads: a v1 hash in 40 hex digits or 32 base32 letters, and
# a v2 one as a SHA-256 multihash (0x12, 32 bytes). libtorrent reads bad base32 as some
# other hash rather than refusing it, so each topic is checked here first.
_XT_KEY = re.compile(r"xt(?:\.\d*)?", re.IGNORECASE)  # libtorrent drops a .<digits> suffix
_BTIH = re.compile(r"urn:btih:(?:[0-9a-fA-F]{40}|[A-Za-z2-7]{32})")
_BTMH = re.compile(r"urn:btmh:1220[0-9a-fA-F]{64}")
_LT_CODE = re.compile(r"\s*\[[\w ]+:-?\d+\]$")  # "… [libtorrent:4]": libtorrent's error code


class MetainfoError(ValueError):
    """A magnet link or .torrent file that cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Metainfo:
    v1: str | None  # 40 lowercase hex digits
    v2: str | None  # 64 lowercase hex digits
    name: str | None  # the magnet's dn, or the info dictionary's name
    size: int | None  # total bytes, pad files left out; None for a magnet
    trackers: tuple[str, ...]  # announce URLs, in the order given
    files: int | None  # pad files left out; None for a magnet
    kind: Literal["magnet", "torrent"]

    def __post_init__(self) -> None:
        if self.v1 is None and self.v2 is None:
            raise ValueError("a Metainfo needs a v1 or a v2 info-hash")

    @property
    def client_hash(self) -> str:
        """What torrent clients list it under: the v1 hash, else the v2 one cut to 40."""
        if self.v1 is not None:
            return self.v1
        assert self.v2 is not None  # __post_init__
        return self.v2[:40]

    @property
    def hashes(self) -> frozenset[str]:
        """Every spelling a client may list it under, to match duplicates with."""
        found = {self.v1, self.v2, self.v2[:40] if self.v2 else None}
        return frozenset(h for h in found if h is not None)


def parse_new_torrent(torrent: NewTorrent) -> Metainfo:
    if torrent.magnet is not None and torrent.torrent_file is None:
        return parse_magnet(torrent.magnet)
    if torrent.torrent_file is not None and torrent.magnet is None:
        return parse_torrent_file(torrent.torrent_file)
    raise MetainfoError("a new torrent is a magnet link or a .torrent file, exactly one")


def parse_magnet(uri: str) -> Metainfo:
    # Exactly this prefix, as libtorrent wants: clients take other strings (a URL, a
    # path) as something to fetch or read.
    if not uri.startswith("magnet:?"):
        raise MetainfoError(f"not a magnet link (magnet:?…): {_clip(uri)}")
    v1: set[str] = set()
    v2: set[str] = set()
    for key, topic in parse_qsl(uri[len("magnet:?") :], keep_blank_values=True):
        if not _XT_KEY.fullmatch(key):
            continue
        if topic.startswith("urn:btih:"):
            if not _BTIH.fullmatch(topic):
                raise MetainfoError(
                    "magnet link's urn:btih is neither 40 hex digits nor 32 base32 "
                    f"letters: {_clip(topic)}"
                )
            v1.add(_btih_hex(topic[len("urn:btih:") :]))
        elif topic.startswith("urn:btmh:"):
            if not _BTMH.fullmatch(topic):
                raise MetainfoError(
                    "magnet link's urn:btmh is not a SHA-256 multihash (1220 and 64 hex "
                    f"digits): {_clip(topic)}"
                )
            v2.add(topic[len("urn:btmh:1220") :].lower())
    if not v1 and not v2:
        raise MetainfoError("magnet link has no xt=urn:btih or urn:btmh topic")
    if len(v1) > 1 or len(v2) > 1:
        raise MetainfoError("magnet link names two torrents (two different xt hashes)")
    if "0" * 40 in v1 or "0" * 64 in v2:
        raise MetainfoError("magnet link's info-hash is all zeros")
    import libtorrent as lt  # noqa: PLC0415 - on first use: 8 MiB the bridge may never need

    try:
        params = lt.parse_magnet_uri(uri)
    except (RuntimeError, UnicodeError) as err:
        raise MetainfoError(f"magnet link not understood: {_reason(err)}") from None
    return Metainfo(
        *_hashes(params.info_hashes),
        name=_text(lambda: params.name, "magnet link's dn (display name)") or None,
        size=None,
        trackers=_unique(_text(lambda: params.trackers, "magnet link's tracker (tr) URL")),
        files=None,
        kind="magnet",
    )


def parse_torrent_file(data: bytes) -> Metainfo:
    # Before libtorrent sees it: the bytes could be anything, from anywhere.
    if len(data) > MAX_TORRENT_FILE:
        raise MetainfoError(
            f".torrent file is {len(data) / _MIB:.1f} MiB, more than the "
            f"{MAX_TORRENT_FILE // _MIB} MiB a .torrent may be"
        )
    import libtorrent as lt  # noqa: PLC0415 - on first use: 8 MiB the bridge may never need

    try:
        # The stubs type the limits as add_torrent_params' fields; libtorrent takes limits.
        limits = {"max_buffer_size": MAX_TORRENT_FILE}
        params = lt.load_torrent_buffer(data, limits)  # type: ignore[call-overload]
    except RuntimeError as err:
        raise MetainfoError(f"not a .torrent file: {_reason(err)}") from None
    info = params.ti
    assert info is not None  # a loaded .torrent has its info dictionary
    # layout() from libtorrent 2.1 on, which deprecates files(); 2.0 has files() only.
    layout = info.layout() if hasattr(info, "layout") else info.files()
    # libtorrent lists the padding that aligns files to pieces (v2, hybrid) as files.
    real = [
        i for i in range(layout.num_files())
        if not layout.file_flags(i) & lt.file_storage.flag_pad_file
    ]  # fmt: skip
    return Metainfo(
        *_hashes(params.info_hashes),
        name=info.name() or None,
        size=sum(layout.file_size(i) for i in real),
        trackers=_unique(_text(lambda: params.trackers, ".torrent file's tracker URL")),
        files=len(real),
        kind="torrent",
    )


def _hashes(hashes: lt.info_hash_t) -> tuple[str | None, str | None]:
    return (
        str(hashes.v1) if hashes.has_v1() else None,
        str(hashes.v2) if hashes.has_v2() else None,
    )


def _text[T](read: Callable[[], T], what: str) -> T:
    """A string libtorrent hands over as it was given (percent-decoded for a magnet),
    which Python reads as UTF-8."""
    try:
        return read()
    except UnicodeDecodeError:
        raise MetainfoError(f"{what} is not UTF-8") from None


def _btih_hex(digest: str) -> str:
    return digest.lower() if len(digest) == 40 else base64.b32decode(digest.upper()).hex()


def _unique(urls: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(urls))


def _reason(err: Exception) -> str:
    return _LT_CODE.sub("", str(err)) or type(err).__name__


def _clip(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
