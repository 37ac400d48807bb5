"""The info-hash a torrent client will list a new torrent under, worked out before it
is added: from a magnet's `xt` (hex or base32 v1, or a v2 multihash) or a .torrent's
info dictionary. Pure functions: an add can then be retried without adding twice."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import re
from urllib.parse import parse_qs, urlsplit

import fastbencode

from .base import NewTorrent


def new_torrent_hash(torrent: NewTorrent) -> str | None:
    """The hash qBittorrent will list the torrent under (the v1 info-hash, or for a
    v2-only torrent the v2 one cut to 40 digits), or None if it cannot be told here."""
    if torrent.magnet is not None:
        return magnet_hash(torrent.magnet)
    if torrent.torrent_file is not None:
        return torrent_file_hash(torrent.torrent_file)
    return None


def magnet_hash(magnet: str) -> str | None:
    try:
        parts = urlsplit(magnet.strip())
    except ValueError:
        return None
    if parts.scheme.lower() != "magnet":
        return None
    topics = [t.strip() for t in parse_qs(parts.query).get("xt", [])]
    for topic in topics:
        if topic.lower().startswith("urn:btih:"):
            value = topic[len("urn:btih:") :]
            if re.fullmatch(r"[0-9a-fA-F]{40}", value):
                return value.lower()
            if re.fullmatch(r"[A-Za-z2-7]{32}", value):
                with contextlib.suppress(binascii.Error):
                    return base64.b32decode(value.upper()).hex()
    for topic in topics:  # v2 only: a SHA-256 multihash (0x12, 32 bytes)
        if topic.lower().startswith("urn:btmh:1220"):
            value = topic[len("urn:btmh:1220") :]
            if re.fullmatch(r"[0-9a-fA-F]{64}", value):
                return value[:40].lower()
    return None


def torrent_file_hash(data: bytes) -> str | None:
    try:
        meta = fastbencode.bdecode(data)
    except Exception:  # the decoder raises several types on bad input
        return None
    info = meta.get(b"info") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        return None
    encoded = fastbencode.bencode(info)
    if info.get(b"meta version") == 2 and b"pieces" not in info:  # v2 only
        return hashlib.sha256(encoded).hexdigest()[:40]
    return hashlib.sha1(encoded, usedforsecurity=False).hexdigest()
