"""Completion events: each torrent client's calling convention to one v1 JSON payload.

Arguments arrive as argv items (never through a shell), so a name with quotes,
newlines, `$()` or backticks is just text here and travels byte-exact.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

HASH_V1 = re.compile(r"[0-9a-f]{40}")
NO_HASH = ("", "-", "NotUsed")
TRANSMISSION_RESERVED = re.compile(r'[<>:"\\|?*\x00-\x1f]')
# A bounded walk: the hook must not stall the torrent client on a huge directory tree.
SIZE_MAX_ENTRIES = 10000
SIZE_MAX_SECONDS = 0.5


class HookUsageError(ValueError):
    """The torrent client called the hook with arguments it cannot make an event of."""


@dataclass(frozen=True)
class Completion:
    """One finished torrent as the client described it."""

    client: str
    path: str
    name: str
    hash: str | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()
    tracker: str | None = None
    size: int | None = None
    warnings: tuple[str, ...] = ()


def _hash(value: str, warnings: list[str]) -> str | None:
    value = value.strip()
    if value in NO_HASH:
        return None
    lowered = value.lower()
    if not HASH_V1.fullmatch(lowered):
        # The bridge would reject the whole event (bad_hash); without a hash it still
        # transfers the payload, only no label can be applied.
        warnings.append(f"ignoring hash {value!r}: not a 40-hex v1 info-hash")
        return None
    return lowered


def _tags(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip())


def _size(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def tracker_host(value: str) -> str | None:
    """Only the host of an announce URL: the URL itself often carries a passkey."""
    value = value.strip()
    if not value:
        return None
    if "://" in value:
        host = urlsplit(value).hostname
        return host or None
    # Transmission 4 passes host:port.
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _complete(
    client: str,
    info_hash: str,
    name: str,
    path: str,
    warnings: list[str],
    **extra: Any,
) -> Completion:
    if not path.startswith("/"):
        raise HookUsageError(f"{client}: content path must be absolute, got {path!r}")
    return Completion(
        client=client,
        path=path,
        name=name or posixpath.basename(path.rstrip("/")),
        hash=_hash(info_hash, warnings),
        warnings=tuple(warnings),
        **extra,
    )


def _arg(args: Sequence[str], index: int) -> str:
    return args[index] if len(args) > index else ""


def from_qbittorrent(args: Sequence[str]) -> Completion:
    """`"%I" "%N" "%F" "%L" "%G" "%Z" "%T"`: v1 hash, name, content path, category,
    tags, total size, current tracker (the last four may be left off)."""
    if not 3 <= len(args) <= 7:
        raise HookUsageError(
            'qbittorrent: expected "%I" "%N" "%F" ["%L" ["%G" ["%Z" ["%T"]]]], '
            f"got {len(args)} argument(s)"
        )
    warnings: list[str] = []
    return _complete(
        "qbittorrent",
        args[0],
        args[1],
        args[2],
        warnings,
        category=_arg(args, 3) or None,
        tags=_tags(_arg(args, 4)),
        size=_size(_arg(args, 5)),
        tracker=tracker_host(_arg(args, 6)),
    )


def from_rtorrent(args: Sequence[str]) -> Completion:
    """`$d.hash=,$d.name=,$d.base_path=[,$d.custom1=[,$d.size_bytes=]]`."""
    if not 3 <= len(args) <= 5:
        raise HookUsageError(
            "rtorrent: expected $d.hash= $d.name= $d.base_path= [$d.custom1= [$d.size_bytes=]], "
            f"got {len(args)} argument(s)"
        )
    warnings: list[str] = []
    return _complete(
        "rtorrent",
        args[0],
        args[1],
        args[2],
        warnings,
        # ruTorrent stores its label URL-encoded in custom1.
        category=unquote(_arg(args, 3)) or None,
        size=_size(_arg(args, 4)),
    )


def from_deluge(args: Sequence[str]) -> Completion:
    """The Execute plugin's `torrent_id torrent_name download_location`."""
    if len(args) != 3:
        raise HookUsageError(
            f"deluge: expected torrent_id name download_location, got {len(args)} argument(s)"
        )
    info_hash, name, location = args
    if not name:
        raise HookUsageError("deluge: empty torrent name")
    warnings: list[str] = []
    return _complete("deluge", info_hash, name, _join(location, name), warnings)


def from_transmission(env: Mapping[str, str]) -> Completion:
    """Transmission passes no arguments, only TR_TORRENT_* variables; the payload is
    `$TR_TORRENT_DIR/$TR_TORRENT_NAME`."""
    name = env.get("TR_TORRENT_NAME", "")
    directory = env.get("TR_TORRENT_DIR", "")
    if not name or not directory:
        raise HookUsageError("transmission: TR_TORRENT_NAME and TR_TORRENT_DIR must be set")
    path = _join(directory, name)
    if not os.path.lexists(path):
        # Transmission writes Windows-reserved characters (<>:"\|?* and controls) in
        # names as "_" on disk, while TR_TORRENT_NAME keeps them: use what is there.
        on_disk = _join(directory, TRANSMISSION_RESERVED.sub("_", name))
        if os.path.lexists(on_disk):
            path = on_disk
    labels = _tags(env.get("TR_TORRENT_LABELS", ""))
    trackers = _tags(env.get("TR_TORRENT_TRACKERS", ""))
    warnings: list[str] = []
    return _complete(
        "transmission",
        env.get("TR_TORRENT_HASH", ""),
        name,
        path,
        warnings,
        # Transmission has no category; its first label plays that part (as Q4D's
        # LABEL field did), and all labels are the tags.
        category=labels[0] if labels else None,
        tags=labels,
        tracker=tracker_host(trackers[0]) if trackers else None,
    )


def _join(directory: str, name: str) -> str:
    return (directory.rstrip("/") or "") + "/" + name


PARSERS: dict[str, Callable[[Sequence[str]], Completion]] = {
    "qbittorrent": from_qbittorrent,
    "rtorrent": from_rtorrent,
    "deluge": from_deluge,
}


def disk_size(path: str) -> int | None:
    """Bytes of the regular files at path (symlinks not followed), or None when the
    walk would take too long or the path cannot be read."""
    deadline = time.monotonic() + SIZE_MAX_SECONDS
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    if not stat.S_ISDIR(st.st_mode):
        return None
    total, seen, stack = 0, 0, [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > SIZE_MAX_ENTRIES or time.monotonic() > deadline:
                        return None
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            return None
    return total


def event_id(completion: Completion, now: float) -> str:
    """`<client>-<hash>-<unix ms>`: unique per completion, and stored with the event so
    every resend carries the same id (the bridge's first dedupe key)."""
    key = completion.hash
    if key is None:
        key = "p" + hashlib.sha1(os.fsencode(completion.path)).hexdigest()[:16]  # noqa: S324
    return f"{completion.client}-{key}-{int(now * 1000)}"


def payload(
    completion: Completion, seedbox_id: str, type_code: str | None, now: float
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": 1,
        "event_id": event_id(completion, now),
        "seedbox": seedbox_id,
        "client": completion.client,
        "hash": completion.hash,
        "name": completion.name,
        "path": completion.path,
        "category": completion.category,
        "tags": list(completion.tags),
        "tracker": completion.tracker,
        "size": completion.size,
        "type": type_code,
        "completed_at": round(now, 3),
    }
    return {k: v for k, v in data.items() if v is not None}


def encode(data: Mapping[str, Any]) -> bytes:
    """Compact JSON with non-ASCII unescaped, as the bridge writes it."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # A name that is not valid UTF-8 reaches Python as surrogate escapes; JSON's
        # \udcXX form keeps those bytes recoverable instead of failing the event.
        return json.dumps(data, separators=(",", ":")).encode("ascii")


def classic_line(completion: Completion, type_code: str | None) -> bytes | None:
    """Q4D's `Down` line `PATH\\tHASH\\tTYPE\\n`, or None when the path itself holds a
    tab or a line break (the format has no escaping and would deliver a wrong path)."""
    if any(ch in completion.path for ch in "\t\r\n"):
        return None
    hash_field = (completion.hash or "NotUsed").encode()
    return (
        os.fsencode(completion.path)
        + b"\t"
        + hash_field
        + b"\t"
        + (type_code or "").encode()
        + b"\n"
    )
