"""Piece-hash verification against .torrent files made by the real mktorrent."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import fastbencode
import pytest
from q4d_bridge.transfer.verify import Range, TorrentError, TorrentInfo, bad_pieces, piece_ranges

from tests.bridge.test_e2e import make_file

PIECE = 32 * 1024  # mktorrent -l 15


def mktorrent(payload: Path, out: Path) -> TorrentInfo:
    subprocess.run(
        ["mktorrent", "-l", "15", "-a", "http://127.0.0.1:9/announce", "-o", str(out), str(payload)],
        check=True, capture_output=True,
    )  # fmt: skip
    data = out.read_bytes()
    torrent = TorrentInfo.from_bytes(data)
    # the info-hash is the SHA-1 of the info dictionary exactly as mktorrent wrote it
    start = data.index(b"4:info") + len(b"4:info")
    assert torrent.info_hash == hashlib.sha1(data[start:-1]).hexdigest()
    return torrent


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_single_file(tmp_path: Path) -> None:
    payload = tmp_path / "movie.mkv"
    make_file(payload, 10 * PIECE + 123, seed=1)
    torrent = mktorrent(payload, tmp_path / "m.torrent")
    assert (torrent.name, torrent.is_dir, len(torrent.pieces)) == ("movie.mkv", False, 11)
    assert bad_pieces(payload, torrent) == []
    flip(payload, 3 * PIECE + 5)
    flip(payload, 10 * PIECE + 100)  # the short last piece
    assert bad_pieces(payload, torrent) == [3, 10]
    assert piece_ranges(torrent, [3, 10]) == [
        Range("", 3 * PIECE, PIECE),
        Range("", 10 * PIECE, 123),
    ]


def test_directory_pieces_span_files(tmp_path: Path) -> None:
    season = tmp_path / "Show.S01"
    sizes = {"a.mkv": PIECE + 100, "b.mkv": 50, "sub/c.srt": 3 * PIECE - 150}
    for n, (rel, size) in enumerate(sizes.items()):
        make_file(season / rel, size, seed=n)
    torrent = mktorrent(season, tmp_path / "s.torrent")
    assert torrent.is_dir and torrent.payload_size == sum(sizes.values())
    assert bad_pieces(season, torrent) == []
    flip(season / "b.mkv", 10)  # b lies inside piece 1, with the end of a and start of c
    assert bad_pieces(season, torrent) == [1]
    assert piece_ranges(torrent, [1]) == [
        Range("a.mkv", PIECE, 100),
        Range("b.mkv", 0, 50),
        Range("sub/c.srt", 0, PIECE - 150),
    ]
    (season / "sub" / "c.srt").unlink()  # a missing file fails every piece it touches
    assert bad_pieces(season, torrent) == [1, 2, 3]
    assert piece_ranges(torrent, [2, 3])[0] == Range("sub/c.srt", PIECE - 150, 2 * PIECE)


def test_padding_files_are_zeros_not_on_disk(tmp_path: Path) -> None:
    a, b = b"A" * (PIECE - 10), b"B" * 1000
    stream = a + bytes(10) + b  # a, a 10-byte BEP 47 pad file, then b on a piece boundary
    pieces = b"".join(
        hashlib.sha1(stream[i : i + PIECE]).digest() for i in range(0, len(stream), PIECE)
    )
    info = {
        b"name": b"padded",
        b"piece length": PIECE,
        b"pieces": pieces,
        b"files": [
            {b"length": len(a), b"path": [b"a.bin"]},
            {b"length": 10, b"path": [b".pad", b"10"], b"attr": b"p"},
            {b"length": len(b), b"path": [b"b.bin"]},
        ],
    }
    torrent = TorrentInfo.from_bytes(fastbencode.bencode({b"info": info}))
    root = tmp_path / "padded"
    root.mkdir()
    (root / "a.bin").write_bytes(a)
    (root / "b.bin").write_bytes(b)
    assert bad_pieces(root, torrent) == []
    assert not (root / ".pad").exists()
    assert piece_ranges(torrent, [0]) == [Range("a.bin", 0, len(a))]  # never the pad file


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"garbage", "not a bencoded"),
        (fastbencode.bencode({b"announce": b"x"}), "no info"),
        (fastbencode.bencode({b"info": {b"name": b"x", b"length": 1, b"pieces": b"x" * 20}}), "piece length"),
        (fastbencode.bencode({b"info": {b"name": b"x", b"length": 1, b"piece length": 1, b"pieces": b"x" * 19}}), "pieces"),
        (fastbencode.bencode({b"info": {b"name": b"x", b"piece length": 4, b"pieces": b"x" * 20,
                                        b"files": [{b"length": 1, b"path": [b".."]}]}}), "unsafe path"),
        (fastbencode.bencode({b"info": {b"name": b"x", b"length": 9, b"piece length": 4, b"pieces": b"x" * 20}}), "1 piece hashes for 3"),
    ],
)  # fmt: skip
def test_bad_torrents_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(TorrentError, match=message):
        TorrentInfo.from_bytes(data)
