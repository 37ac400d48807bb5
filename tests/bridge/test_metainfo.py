"""Magnet links and .torrent files read with libtorrent: real v1, v2 and hybrid torrents
made by libtorrent itself, hashes checked against its own and against the info
dictionary's digest, and every kind of bad input refused with a MetainfoError."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
from pathlib import Path

import fastbencode
import libtorrent as lt
import pytest
from q4d_bridge.clients.base import NewTorrent
from q4d_bridge.clients.metainfo import (
    MAX_TORRENT_FILE,
    Metainfo,
    MetainfoError,
    parse_magnet,
    parse_new_torrent,
    parse_torrent_file,
)
from q4d_bridge.dispatch import sources

from tests.helpers.torrents import FLAGS, Kind, torrent_of

TRACKERS = ("http://127.0.0.1:9/announce", "udp://127.0.0.1:9/announce")
V1 = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
V2 = "ab" * 32
B32 = base64.b32encode(bytes.fromhex(V1)).decode()


def build_torrent(root: Path, kind: Kind, *, single: bool = False) -> bytes:
    """A .torrent of a folder of two files (or of one file), piece-unaligned sizes so v2
    and hybrid torrents get pad files; trackers on a closed loopback port."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(kind)
    files = {"Show/e01.mkv": 70_000, "Show/sub/e01.srt": 1_234}
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rng.randbytes(size))
    source = root / ("Show/e01.mkv" if single else "Show")
    return torrent_of(source, kind, tracker=None, trackers=TRACKERS)


def info_digest(data: bytes, algorithm: str) -> str:
    info = fastbencode.bencode(fastbencode.bdecode(data)[b"info"])
    return hashlib.new(algorithm, info).hexdigest()


# --- .torrent files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "single", "name", "size", "files"),
    [
        ("v1", False, "Show", 71_234, 2),
        ("v2", False, "Show", 71_234, 2),
        ("hybrid", False, "Show", 71_234, 2),  # libtorrent lists pad files: left out
        ("v1", True, "e01.mkv", 70_000, 1),
        ("hybrid", True, "e01.mkv", 70_000, 1),
    ],
)
def test_torrent_files(
    tmp_path: Path, kind: Kind, single: bool, name: str, size: int, files: int
) -> None:
    data = build_torrent(tmp_path, kind, single=single)
    meta = parse_torrent_file(data)
    theirs = lt.torrent_info(data).info_hashes()
    v1 = str(theirs.v1) if kind != "v2" else None
    v2 = str(theirs.v2) if kind != "v1" else None
    assert meta == Metainfo(v1, v2, name, size, TRACKERS, files, "torrent")
    # v1: the SHA-1 of the bencoded info dictionary; v2: its SHA-256.
    assert v1 is None or v1 == info_digest(data, "sha1")
    assert v2 is None or v2 == info_digest(data, "sha256")
    assert meta.client_hash == (v1 or str(v2)[:40])
    assert meta.hashes == {h for h in (v1, v2, v2 and v2[:40]) if h}
    assert parse_new_torrent(NewTorrent(torrent_file=data)) == meta


def good_torrent() -> bytes:
    info = {b"name": b"x", b"piece length": 16384, b"length": 1, b"pieces": bytes(20)}
    return bytes(fastbencode.bencode({b"info": info}))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a .torrent file: unexpected end of file in bencoded string"),
        (b"garbage", "not a .torrent file: expected value (list, dict, int or string)"),
        (b"<!DOCTYPE html><html>login</html>", "not a .torrent file: expected value"),
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "not a .torrent file: expected value"),
        (good_torrent()[:-1], "not a .torrent file: unexpected end of file"),
        (good_torrent()[:40], "not a .torrent file: unexpected end of file"),
        (good_torrent()[:30], "not a .torrent file: expected colon in bencoded string"),
        (b"i42e", "not a .torrent file: torrent file is not a dictionary"),
        (b"l4:spame", "not a .torrent file: torrent file is not a dictionary"),
        (b"4:spam", "not a .torrent file: torrent file is not a dictionary"),
        (b"d8:announce20:http://127.0.0.1:9/ae", "missing or invalid 'info' section"),
        (b"d4:infoi1ee", "not a .torrent file: missing or invalid 'info' section"),
        (b"d4:infod6:lengthi1e4:name1:xee", "invalid or missing 'piece length'"),
        (good_torrent().replace(b"4:name1:x", b"4:name0:"), "missing name"),
        (
            b"d8:announce18:http://127.0.0.1/\xff" + good_torrent()[1:],
            ".torrent file's tracker URL is not UTF-8",
        ),
    ],
)
def test_not_torrent_files(data: bytes, message: str) -> None:
    with pytest.raises(MetainfoError) as err:
        parse_torrent_file(data)
    assert message in str(err.value)
    assert "[libtorrent:" not in str(err.value) and "[bdecode:" not in str(err.value)


def test_size_is_checked_before_libtorrent_reads_it(tmp_path: Path) -> None:
    real = build_torrent(tmp_path, "v1")
    # libtorrent reads a .torrent followed by anything: only the size check refuses these.
    at_limit = real + b"\0" * (MAX_TORRENT_FILE - len(real))
    assert parse_torrent_file(at_limit) == parse_torrent_file(real)
    with pytest.raises(MetainfoError) as err:
        parse_torrent_file(real + b"\0" * (10 * 1024 * 1024 - len(real)))
    assert str(err.value) == ".torrent file is 10.0 MiB, more than the 8 MiB a .torrent may be"
    with pytest.raises(MetainfoError, match=r"^\.torrent file is 8\.0 MiB, more than"):
        parse_torrent_file(at_limit + b"\0")


def test_fuzzed_torrent_files_raise_only_metainfo_errors(tmp_path: Path) -> None:
    """Random bytes, truncations and byte flips of real torrents: read, or refused."""
    real = [build_torrent(tmp_path / kind, kind) for kind in FLAGS]
    rng = random.Random(4)
    read = 0
    for _ in range(3000):
        data = bytearray(rng.choice(real))
        match rng.randrange(3):
            case 0:
                data = bytearray(rng.randbytes(rng.randrange(200)))
            case 1:
                del data[rng.randrange(len(data)) :]
            case _:
                for _ in range(rng.randrange(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            parse_torrent_file(bytes(data))
            read += 1
        except MetainfoError:
            pass
    assert read  # some flips land in data libtorrent does not check (creation date, ...)


# --- magnet links -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "v1", "v2", "name", "trackers"),
    [
        (f"magnet:?xt=urn:btih:{V1}", V1, None, None, ()),
        (f"magnet:?xt=urn:btih:{V1.upper()}&dn=Film", V1, None, "Film", ()),
        (f"magnet:?xt=urn:btih:{B32}", V1, None, None, ()),
        (f"magnet:?xt=urn:btih:{B32.lower()}", V1, None, None, ()),
        (f"magnet:?xt=urn:btmh:1220{V2}", None, V2, None, ()),
        (f"magnet:?xt=urn:btmh:1220{V2.upper()}", None, V2, None, ()),
        (f"magnet:?xt=urn:btih:{V1}&xt=urn:btmh:1220{V2}&dn=Both", V1, V2, "Both", ()),
        (f"magnet:?xt.1=urn:btih:{V1}&XT.2=urn:btmh:1220{V2}", V1, V2, None, ()),
        (f"magnet:?xt.=urn:btih:{V1}&xt.a=urn:btih:{'d' * 40}", V1, None, None, ()),  # not xt
        (f"magnet:?xt=urn:btih:{V1}&xt=urn:btih:{V1.upper()}", V1, None, None, ()),  # same
        (f"magnet:?xt=urn%3Abtih%3A{V1}", V1, None, None, ()),
        (f"magnet:?xt=urn:btih:{V1}&xt=urn:sha1:{'a' * 32}", V1, None, None, ()),  # not ours
        (f"magnet:?xt=urn:btih:{V1}&dn=Fran%C3%A7ais+%E2%9C%93", V1, None, "Français ✓", ()),
        (f"magnet:?xt=urn:btih:{V1}&dn=日本語 ファイル", V1, None, "日本語 ファイル", ()),
        (
            f"magnet:?xt=urn:btih:{V1}&tr={TRACKERS[0]}&tr={TRACKERS[1]}&tr={TRACKERS[0]}",
            V1, None, None, TRACKERS,
        ),
        (f"magnet:?xt=urn:btih:{V1}&tr=http%3A%2F%2F127.0.0.1%3A9%2Fa", V1, None, None,
         ("http://127.0.0.1:9/a",)),
    ],
)  # fmt: skip
def test_magnets(
    uri: str, v1: str | None, v2: str | None, name: str | None, trackers: tuple[str, ...]
) -> None:
    meta = parse_magnet(uri)
    assert meta == Metainfo(v1, v2, name, None, trackers, None, "magnet")
    assert meta.client_hash == (v1 or V2[:40])
    assert meta.hashes == {h for h in (v1, v2, v2 and v2[:40]) if h}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://127.0.0.1:9/x.torrent", "not a magnet link (magnet:?…): 'http://127.0.0.1:9/"),
        ("/home/me/x.torrent", "not a magnet link (magnet:?…): '/home/me/x.torrent'"),
        (f"MAGNET:?xt=urn:btih:{V1}", "not a magnet link"),
        (f" magnet:?xt=urn:btih:{V1}", "not a magnet link"),
        (f"magnet:xt=urn:btih:{V1}", "not a magnet link"),
        ("", "not a magnet link (magnet:?…): ''"),
        ("magnet:?", "magnet link has no xt=urn:btih or urn:btmh topic"),
        ("magnet:?dn=Film&tr=http://127.0.0.1:9/a", "has no xt=urn:btih or urn:btmh topic"),
        (f"magnet:?xt=urn:sha1:{'a' * 32}", "has no xt=urn:btih or urn:btmh topic"),
        (f"magnet:?xt=urn:BTIH:{V1}", "has no xt=urn:btih or urn:btmh topic"),
        (f"magnet:?xt=urn:btih:{V1[:-1]}", "urn:btih is neither 40 hex digits nor 32 base32"),
        (f"magnet:?xt=urn:btih:{V1}0", "urn:btih is neither 40 hex digits nor 32 base32"),
        (f"magnet:?xt=urn:btih:{'z' * 40}", "urn:btih is neither 40 hex digits nor 32 base32"),
        (f"magnet:?xt=urn:btih:{B32[:-1]}", "urn:btih is neither 40 hex digits nor 32 base32"),
        (f"magnet:?xt=urn:btih:{'1' * 32}", "urn:btih is neither 40 hex digits nor 32 base32"),
        ("magnet:?xt=urn:btih:", "urn:btih is neither 40 hex digits nor 32 base32"),
        (f"magnet:?xt=urn:btmh:{V2}", "urn:btmh is not a SHA-256 multihash (1220 and 64 hex"),
        (f"magnet:?xt=urn:btmh:1220{V2[:-1]}", "urn:btmh is not a SHA-256 multihash"),
        (f"magnet:?xt=urn:btmh:1114{V1}", "urn:btmh is not a SHA-256 multihash"),
        (f"magnet:?xt=urn:btih:{V1}&xt=urn:btih:{'d' * 40}", "names two torrents"),
        (f"magnet:?xt=urn:btmh:1220{V2}&xt=urn:btmh:1220{'c' * 64}", "names two torrents"),
        (f"magnet:?xt=urn:btih:{'0' * 40}", "magnet link's info-hash is all zeros"),
        (f"magnet:?xt=urn:btih:{'A' * 32}", "magnet link's info-hash is all zeros"),
        (f"magnet:?xt=urn:btih:{V1}&dn=%FF%FE", "magnet link's dn (display name) is not UTF-8"),
        (
            f"magnet:?xt=urn:btih:{V1}&tr=http://127.0.0.1/%FF",
            "magnet link's tracker (tr) URL is not UTF-8",
        ),
        (f"magnet:?xt=urn:btih:{V1}&dn=\ud800", "magnet link not understood: 'utf-8' codec"),
    ],
)
def test_bad_magnets(uri: str, message: str) -> None:
    with pytest.raises(MetainfoError) as err:
        parse_magnet(uri)
    assert message in str(err.value)


def test_fuzzed_magnets_raise_only_metainfo_errors() -> None:
    """Magnets strung together from pieces of real and broken ones: read, or refused."""
    rng = random.Random(9)
    pieces = ["&xt=", "&xt.1=", "&dn=", "&tr=http://127.0.0.1:9/", "&tr=", "urn:btih:",
              "urn:btmh:1220", V1, B32, V2, "&", "=", "%", "%FF", "%C3%A9", "%00", "+", " ", "é",
              "\ud800", "\x00"]  # fmt: skip
    read = 0
    for _ in range(5000):
        head = rng.choice(["", f"xt=urn:btih:{V1}&", f"xt=urn:btmh:1220{V2}&"])
        uri = f"magnet:?{head}" + "".join(rng.choice(pieces) for _ in range(rng.randrange(12)))
        with contextlib.suppress(MetainfoError):
            parse_magnet(uri)
            read += 1
    assert read


# --- new torrents and the dataclass -----------------------------------------------------


@pytest.mark.parametrize(
    "torrent", [NewTorrent(), NewTorrent(magnet=f"magnet:?xt=urn:btih:{V1}", torrent_file=b"")]
)
def test_a_new_torrent_is_one_thing(torrent: NewTorrent) -> None:
    with pytest.raises(MetainfoError, match=r"a magnet link or a \.torrent file, exactly one"):
        parse_new_torrent(torrent)


def test_metainfo_needs_a_hash() -> None:
    with pytest.raises(ValueError, match="needs a v1 or a v2 info-hash"):
        Metainfo(None, None, "x", None, (), None, "magnet")


async def test_a_url_that_is_not_http_is_refused_without_its_path() -> None:
    with pytest.raises(MetainfoError) as refused:
        await sources.from_url("ftp://tracker.example.org/dl/PASSKEY123/x.torrent", within=5)
    assert str(refused.value) == "not an http(s) URL of a .torrent (scheme 'ftp')"
