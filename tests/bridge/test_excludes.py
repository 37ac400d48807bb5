"""Excludes: the pure matcher, and per engine through the bridge against a real sshd, a
season with .nfo, .txt and Sample/ files left on the seedbox while the piece check of a
real .torrent still passes (pieces straddling excluded and fetched files included) and
repairs still work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.models import ItemState
from q4d_bridge.transfer.checking import excluded_pieces
from q4d_bridge.transfer.engines.base import Engine, ProgressCallback, TransferRequest
from q4d_bridge.transfer.engines.lftp import exclude_regexes
from q4d_bridge.transfer.engines.rsync import fetch_list
from q4d_bridge.transfer.errors import ErrorCode, TransferError
from q4d_bridge.transfer.excludes import Excludes, outermost, without_excluded
from q4d_bridge.transfer.payload import RemoteEntry, RemoteFile
from q4d_bridge.transfer.verify import TorrentInfo

from tests.bridge.test_e2e import ENGINES, Env, digest_tree, make_file, running_bridge
from tests.bridge.test_integrity import Corrupting
from tests.bridge.test_verify import PIECE, mktorrent
from tests.helpers.services import Mosquitto, SshServer

PATTERNS = ("*.nfo", "Sample/", "*.txt", "Extras/Deleted/")
# Sizes off piece boundaries, so pieces straddle an excluded file and a fetched one.
SEASON = {
    "e01.mkv": 40 * PIECE + 1000,
    "e01.nfo": 3000,
    "e02.mkv": 25 * PIECE + 5,
    "notes.txt": 70_000,
    "Sample/sample.mkv": 5 * PIECE + 77,
    "Sample/Deeper/x.bin": 100,
    "Subs/e01.srt": 3000,
    "Subs/e01.nfo": 10,
    "Extras/Deleted/scene.mkv": 2 * PIECE,
    "Extras/Kept/scene.mkv": PIECE + 3,
}
KEPT = {"e01.mkv", "e02.mkv", "Subs/e01.srt", "Extras/Kept/scene.mkv"}


# --- the matcher -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "excluded"),
    [
        ("movie.nfo", True),
        ("a/b/c/movie.nfo", True),  # a name pattern matches at any depth
        ("movie.NFO", False),  # case-sensitive
        ("movie.nfo.mkv", False),
        ("Sample/x.mkv", True),  # a folder pattern takes all the folder holds
        ("a/Sample/b/x.mkv", True),
        ("Sample", False),  # ...but never a file of that name
        ("Samples/x.mkv", False),
        ("sample/x.mkv", False),
        ("Extras/Deleted/x.mkv", True),  # an inner `/`: from the payload root
        ("Show/Extras/Deleted/x.mkv", False),
        ("Extras/Other/x.mkv", False),
        ("Extras/a.mkv", True),
        ("Extras/sub/a.mkv", False),  # `*` never crosses a `/`
        ("x.txt", True),
        ("[x].txt", True),
    ],
)
def test_matcher(rel: str, excluded: bool) -> None:
    excludes = Excludes(("*.nfo", "Sample/", "Extras/Deleted/", "Extras/*.mkv", "*.txt"))
    assert excludes.file(rel) is excluded


def test_folders_and_empty_patterns() -> None:
    excludes = Excludes(("Sample/", "a/b/"))
    assert excludes.folder("Sample") and excludes.folder("x/Sample/y")
    assert excludes.folder("a/b") and excludes.folder("a/b/c") and not excludes.folder("z/a/b")
    assert not excludes.folder("a")
    assert not Excludes(()) and not Excludes(("/",))


def listing() -> RemoteEntry:
    return RemoteEntry(
        True,
        tuple(RemoteFile(rel, size) for rel, size in sorted(SEASON.items())),
        dirs=("Extras", "Extras/Deleted", "Extras/Kept", "Sample", "Sample/Deeper", "Subs"),
        path="/seedbox/Show.S01",
    )


def test_excluded_files_leave_the_listing_and_the_size() -> None:
    entry = without_excluded(listing(), PATTERNS, "Show.S01")
    assert {f.rel for f in entry.entries} == KEPT
    assert entry.size == sum(SEASON[rel] for rel in KEPT) and entry.files == len(KEPT)
    assert {f.rel for f in entry.excluded} == set(SEASON) - KEPT
    assert entry.dirs == ("Extras", "Extras/Kept", "Subs")
    assert entry.excluded_dirs == ("Extras/Deleted", "Sample", "Sample/Deeper")
    assert outermost(entry) == (
        ["Extras/Deleted", "Sample"],
        ["Subs/e01.nfo", "e01.nfo", "notes.txt"],
    )
    assert without_excluded(listing(), (), "Show.S01") == listing()


def test_nothing_left_to_fetch_is_a_clear_error() -> None:
    single = RemoteEntry(False, (RemoteFile("", 10),), path="/seedbox/movie.nfo")
    with pytest.raises(TransferError) as err:
        without_excluded(single, ("*.nfo",), "movie.nfo")
    assert err.value.code == "nothing_to_fetch" and err.value.permanent
    assert err.value.message == "movie.nfo matches the rule's exclude patterns: nothing to fetch"
    assert without_excluded(single, ("Sample/",), "movie.nfo") == single
    with pytest.raises(TransferError, match=r"every file of Show\.S01 matches"):
        without_excluded(listing(), ("*",), "Show.S01")


def test_tool_lists_name_exact_paths() -> None:
    """lftp's regexes escape every special character; rsync's list is NUL-separated
    bytes of what is kept, names exactly as listed."""
    odd = "we(i)rd [1]+$^.nfo"
    entry = RemoteEntry(
        True,
        (RemoteFile("a.mkv", 1), RemoteFile(odd, 2), RemoteFile("caf\udce9.mkv", 3)),
        dirs=("Empty",),
    )
    excluded = without_excluded(entry, ("*.nfo",), "P")
    assert exclude_regexes(excluded) == rb"^we\(i\)rd \[1\]\+\$\^\.nfo$" + b"\n"
    assert fetch_list(excluded) == b"Empty\0a.mkv\0caf\xe9.mkv\0"
    newline = without_excluded(RemoteEntry(True, (RemoteFile("a\nb.nfo", 1), RemoteFile("c", 1))),
                               ("*.nfo",), "P")  # fmt: skip
    with pytest.raises(TransferError, match="use the sftp engine"):
        exclude_regexes(newline)


def test_pieces_only_in_excluded_files_are_skipped(tmp_path: Path) -> None:
    payload = tmp_path / "Show.S01"
    for n, (rel, size) in enumerate(SEASON.items()):
        make_file(payload / rel, size, seed=n)
    torrent = mktorrent(payload, tmp_path / "t.torrent")
    excluded = {rel for rel in SEASON if rel not in KEPT}
    skip, straddling = excluded_pieces(torrent, excluded)
    for index in range(len(torrent.pieces)):
        rels = covering(torrent, index)
        assert (index in skip) == rels.issubset(excluded)
        assert (index in straddling) == bool(rels & excluded and rels - excluded)
    assert skip and straddling


def covering(torrent: TorrentInfo, index: int) -> set[str]:
    start, end = index * torrent.piece_length, (index + 1) * torrent.piece_length
    return {
        f.rel
        for f in torrent.files
        if f.length and not f.padding and f.offset < end and f.offset + f.length > start
    }


# --- through the bridge, per engine ------------------------------------------------------


def excluding(library: Path) -> dict[str, Any]:
    """The default destination as a mapping with the patterns."""
    return {
        "tv": str(library / "tv"),
        "movies": str(library / "movies"),
        "default": {"path": str(library / "other"), "exclude": list(PATTERNS)},
    }


def season(remote: Path, session: Path) -> tuple[str, int]:
    payload = remote / "Show.S01"
    for n, (rel, size) in enumerate(SEASON.items()):
        make_file(payload / rel, size, seed=n + 40)
    session.mkdir(parents=True, exist_ok=True)
    tmp = session / "new.torrent"
    torrent = mktorrent(payload, tmp)
    tmp.rename(session / f"{torrent.info_hash.upper()}.torrent")
    skip, straddling = excluded_pieces(torrent, set(SEASON) - KEPT)
    assert skip and straddling  # the case under test
    return torrent.info_hash, len(torrent.pieces) - len(skip)


def kept_digests(env: Env) -> dict[str, str]:
    everything = digest_tree(env.remote / "Show.S01")
    return {rel: digest for rel, digest in everything.items() if rel in KEPT}


@ENGINES
async def test_excluded_files_are_never_fetched_and_pieces_still_verify(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    engine: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = tmp_path / "session"
    torrent_file = {"torrent_file": f"{session}/{{HASH}}.torrent"}
    library = tmp_path / "library"
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine=engine, seedbox=torrent_file,
        destinations=excluding(library),
    ) as env:  # fmt: skip
        info_hash, checked = season(env.remote, session)
        # A bad byte in e02's first piece, which begins in the excluded e01.nfo: its
        # check and its repair need the excluded bytes, read into scratch only.
        env.bridge.runner.engines[engine] = Corrupting(
            env.bridge.runner.engines[engine], [("e02.mkv", 10)]
        )
        await env.complete("Show.S01", info_hash)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
    assert item.state is ItemState.DONE, item.last_error
    (event,) = env.recorder.events("completed")
    assert (event["verified"], event["repaired_pieces"]) == ("pieces", 1)
    assert f"1 of {checked} pieces failed their hash" in caplog.text
    landed = library / "other" / "Show.S01"
    assert digest_tree(landed) == kept_digests(env)
    # no excluded file, no excluded (even empty) folder, no scratch; staging gone
    assert {str(p.relative_to(landed)) for p in landed.rglob("*")} == KEPT | {
        "Subs", "Extras", "Extras/Kept",
    }  # fmt: skip
    assert not (library / "other" / ".q4d-partial").exists()
    assert item.size == sum(SEASON[rel] for rel in KEPT)


@pytest.mark.parametrize("engine", ["sftp", "rsync"])
async def test_resumed_payload_with_excludes_lands_the_same(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    """A staging folder an earlier attempt left (a crash mid-transfer) is resumed, and
    what the engine brought is the kept files only."""
    session = tmp_path / "session"
    library = tmp_path / "library"
    torrent_file = {"torrent_file": f"{session}/{{HASH}}.torrent"}
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine=engine, seedbox=torrent_file,
        destinations=excluding(library),
    ) as env:  # fmt: skip
        info_hash, _checked = season(env.remote, session)
        env.bridge.runner.engines[engine] = Crashing(
            env.bridge.runner.engines[engine], truncate=engine == "rsync"
        )
        await env.complete("Show.S01", info_hash)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
    assert item.state is ItemState.DONE, item.last_error
    assert digest_tree(library / "other" / "Show.S01") == kept_digests(env)


class Crashing(Corrupting):
    """The first attempt fetches and then fails, as when the link drops at its end; with
    `truncate`, half of e01.mkv is lost first (rsync appends to what it finds; the SFTP
    engine trusts its journal instead). The second attempt resumes."""

    def __init__(self, inner: Engine, *, truncate: bool) -> None:
        super().__init__(inner, [])
        self.truncate = truncate
        self.crashed = False

    async def fetch(self, request: TransferRequest, on_progress: ProgressCallback) -> None:
        await self.inner.fetch(request, on_progress)
        if not self.crashed:
            self.crashed = True
            if self.truncate:
                os.truncate(request.target / "e01.mkv", 20 * PIECE)
            raise TransferError(ErrorCode.CONNECTION, "connection lost (test)")


async def test_an_excluded_single_file_fails_clearly(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    library = tmp_path / "library"
    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", destinations=excluding(library)
    ) as env:
        make_file(env.remote / "movie.nfo", 100)
        await env.complete("movie.nfo", "c" * 40)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
    assert (item.state, item.error_code) == (ItemState.FAILED, "nothing_to_fetch")
    assert not (library / "other" / "movie.nfo").exists()
