"""Real RAR 4.x archives for tests, written here because Debian ships no RAR creator:
the stored method (-m0), optionally split into volumes (MHD_VOLUME, LHD_SPLIT_BEFORE/
AFTER, each part's packed CRC) named the new way (x.part1.rar) or the old (x.rar, x.r00).
Layout after the RAR technote (RAR 2.x-4.x "technote.txt")."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MARKER = b"Rar!\x1a\x07\x00"
MAIN_HEAD, FILE_HEAD, ENDARC_HEAD = 0x73, 0x74, 0x7B
MHD_VOLUME, MHD_NEWNUMBERING, MHD_FIRSTVOLUME = 0x0001, 0x0010, 0x0100
LHD_SPLIT_BEFORE, LHD_SPLIT_AFTER, LHD_PASSWORD = 0x01, 0x02, 0x04
LHD_DIRECTORY, LHD_LONG_BLOCK = 0xE0, 0x8000
EARC_NEXT_VOLUME, EARC_VOLNUMBER = 0x0001, 0x0008
HOST_UNIX, METHOD_STORE, UNPACK_VERSION = 3, 0x30, 20
DOS_TIME = (2024 - 1980) << 25 | 1 << 21 | 1 << 16  # 2024-01-01 00:00


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # with "/" between folders; stored with RAR's "\\"
    data: bytes = b""
    directory: bool = False
    encrypted: bool = False  # only the flag: an extractor must ask for a password


def _block(kind: int, flags: int, body: bytes) -> bytes:
    """A header: its CRC is the low 16 bits of the CRC32 from HEAD_TYPE on."""
    rest = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest


def _file_header(member: Member, part: bytes, crc: int, flags: int) -> bytes:
    name = member.name.replace("/", "\\").encode()
    mode = 0o40755 if member.directory else 0o100644
    flags |= LHD_LONG_BLOCK | (LHD_DIRECTORY if member.directory else 0)
    flags |= LHD_PASSWORD if member.encrypted else 0
    body = struct.pack(
        "<IIBIIBBHI", len(part), len(member.data), HOST_UNIX, crc, DOS_TIME,
        UNPACK_VERSION, METHOD_STORE, len(name), mode,
    )  # fmt: skip
    return _block(FILE_HEAD, flags, body + name)


def volume_name(base: Path, index: int, count: int, *, new_naming: bool) -> Path:
    """The index-th volume (from 0) of `count`: x.part01.rar (digits as the count
    needs) or x.rar, x.r00, x.r01."""
    if new_naming:
        return base.with_name(f"{base.name}.part{index + 1:0{len(str(count))}d}.rar")
    return base.with_name(f"{base.name}.rar" if index == 0 else f"{base.name}.r{index - 1:02d}")


def write_rar(
    base: Path, members: list[Member], *, volume_size: int | None = None, new_naming: bool = True
) -> list[Path]:
    """Write `base`.rar (or its volumes, each holding at most `volume_size` bytes of
    file data) and return the volumes in order."""
    volumes: list[list[bytes]] = [[]]
    room = volume_size
    for member in members:
        data, offset = member.data, 0
        while True:
            if room == 0:
                volumes.append([])
                room = volume_size
            size = len(data) - offset if room is None else min(room, len(data) - offset)
            part = data[offset : offset + size]
            last = offset + size == len(data)
            flags = (LHD_SPLIT_BEFORE if offset else 0) | (0 if last else LHD_SPLIT_AFTER)
            # Each part but the last carries its packed data's CRC; the last the file's.
            crc = zlib.crc32(data if last else part)
            volumes[-1].append(_file_header(member, part, crc, flags) + part)
            offset += size
            room = None if room is None else room - size
            if last:
                break
    multi = volume_size is not None and len(volumes) > 1
    paths = []
    for index, blocks in enumerate(volumes):
        flags = 0
        if multi:
            flags = MHD_VOLUME | (MHD_NEWNUMBERING if new_naming else 0)
            flags |= MHD_FIRSTVOLUME if index == 0 else 0
        more = index < len(volumes) - 1
        end = _block(
            ENDARC_HEAD,
            (EARC_NEXT_VOLUME if more else 0) | EARC_VOLNUMBER,
            struct.pack("<H", index),
        )
        path = volume_name(base, index, len(volumes), new_naming=new_naming and multi)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(MARKER + _block(MAIN_HEAD, flags, bytes(6)) + b"".join(blocks) + end)
        paths.append(path)
    return paths
