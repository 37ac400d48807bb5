"""What an add names — a magnet link, the bytes of a .torrent, or the URL of one — read
and validated into the torrent to add. An indexer's download URL (Prowlarr, Jackett)
often redirects to a magnet link, so redirects are followed by hand."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from ..clients.metainfo import (
    MAX_TORRENT_FILE,
    Metainfo,
    MetainfoError,
    parse_magnet,
    parse_torrent_file,
)

MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class Source:
    meta: Metainfo
    magnet: str | None = None
    torrent_file: bytes | None = None


def from_magnet(magnet: str) -> Source:
    return Source(parse_magnet(magnet), magnet=magnet.strip())


def from_torrent_file(data: bytes) -> Source:
    return Source(parse_torrent_file(data), torrent_file=data)


def from_base64(text: str) -> Source:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MetainfoError(f"torrent is not valid base64: {err}") from err
    return from_torrent_file(data)


async def from_url(url: str, *, within: float) -> Source:
    """Fetch a .torrent (or the magnet link the URL redirects to)."""
    client_timeout = aiohttp.ClientTimeout(total=within)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        for _ in range(MAX_REDIRECTS + 1):
            if url.startswith("magnet:"):
                return from_magnet(url)
            if urlsplit(url).scheme not in ("http", "https"):
                # Only the scheme: a tracker's URL may carry a passkey.
                scheme = urlsplit(url).scheme or "none"
                raise MetainfoError(f"not an http(s) URL of a .torrent (scheme {scheme!r})")
            try:
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = urljoin(url, response.headers.get("Location", ""))
                        continue
                    if response.status != 200:
                        raise MetainfoError(f"fetching the .torrent: HTTP {response.status}")
                    data = await response.content.read(MAX_TORRENT_FILE + 1)
            except (aiohttp.ClientError, TimeoutError) as err:
                raise MetainfoError(
                    f"fetching the .torrent failed: {err or type(err).__name__}"
                ) from err
            return from_torrent_file(data)
    raise MetainfoError(f"fetching the .torrent: more than {MAX_REDIRECTS} redirects")
