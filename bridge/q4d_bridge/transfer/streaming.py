"""Piece hashes checked while the bytes arrive, so a payload is verified when its last
byte is written instead of being read back from disk afterwards.

The SFTP engine hands over every block it wrote (`PieceStream.written`, on the event
loop: a queue put, nothing more); a worker thread maps the block onto the torrent's
pieces and hashes each piece's bytes in order as they become contiguous (hashlib
releases the GIL, so hashing runs beside the transfer). Blocks arrive out of order
across connections and files; a piece's bytes past its hashed frontier are held until
the gap fills, up to a memory bound.

Only what this process saw is trusted. A piece is "good" or "bad" here only if every one
of its bytes on disk came through `written` in this attempt: bytes already in staging
(a resumed transfer, written before a crash), bytes written before the .torrent arrived,
pieces that touch an excluded file, and pieces dropped to bound memory are left to the
read-back check (verify.bad_pieces), which reads only those.

The lftp and rsync engines are read back after the transfer, as before: lftp's pget
writes segments out of order into a sparse file (a tailer cannot tell a hole from
zeros written) and rsync's --append-verify rewrites a file whose checksum failed (a
tailer would have hashed bytes that then change). That read-back measured ~0.8 s per
GiB from the page cache, after the last byte (bench/verify_stream.py, "read-back").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import queue
import threading
from collections.abc import Collection
from dataclasses import dataclass, field

from .verify import TorrentInfo

_LOGGER = logging.getLogger(__name__)
# Out-of-order bytes held while a piece waits for a gap (a piece spanning chunks that
# other connections read); past it, the piece is left to the read-back check.
HOLD_LIMIT = 64 * 1024 * 1024
# Bytes handed over but not yet hashed; past it, blocks are not handed over (their
# pieces are read back) rather than letting a slow disk's worth pile up in memory.
QUEUE_LIMIT = 128 * 1024 * 1024
_ZEROS = bytes(1024 * 1024)


@dataclass(frozen=True, slots=True)
class Streamed:
    """What the stream settled: pieces whose hash matched, and pieces that failed."""

    good: frozenset[int]
    bad: frozenset[int]


@dataclass(slots=True)
class _Piece:
    end: int  # stream offset where the piece ends
    need: int  # bytes of it stored in files (padding excluded)
    done: int  # stream offset hashed up to
    digest: hashlib._Hash = field(default_factory=lambda: hashlib.sha1(usedforsecurity=False))
    seen: int = 0
    held: dict[int, memoryview] = field(default_factory=dict)


class PieceTally:
    """The pure part: blocks in, pieces settled. Not thread-safe: one worker feeds it."""

    def __init__(
        self, torrent: TorrentInfo, excluded: Collection[str] = (), hold_limit: int = HOLD_LIMIT
    ) -> None:
        self.torrent = torrent
        self.hold_limit = hold_limit
        self.where = {f.rel: f for f in torrent.files if not f.padding}
        self.starts = [f.offset for f in torrent.files]
        length = torrent.piece_length
        # Pieces with excluded bytes: their check needs bytes fetched apart (checking.py).
        self.dropped: set[int] = {
            index
            for f in torrent.files
            if f.rel in excluded and f.length
            for index in range(f.offset // length, (f.offset + f.length - 1) // length + 1)
        }
        self.open: dict[int, _Piece] = {}
        self.good: set[int] = set()
        self.bad: set[int] = set()
        self.held_bytes = 0

    def feed(self, rel: str, offset: int, data: bytes) -> None:
        tfile = self.where.get(rel)
        if tfile is None:
            return
        pos = tfile.offset + offset
        view = memoryview(data)
        length = self.torrent.piece_length
        while view:
            index = pos // length
            take = min(len(view), (index + 1) * length - pos)
            self._piece_bytes(index, pos, view[:take])
            pos += take
            view = view[take:]

    def settled(self) -> Streamed:
        return Streamed(frozenset(self.good), frozenset(self.bad))

    def _piece_bytes(self, index: int, pos: int, view: memoryview) -> None:
        if index in self.dropped:
            return
        piece = self.open.get(index)
        if piece is None:
            if index in self.good or index in self.bad:  # written twice: trust neither
                self._drop(index)
                return
            piece = self.open[index] = self._start(index)
        if pos < piece.done or pos in piece.held:
            self._drop(index)  # bytes overlapping ones already seen
            return
        piece.seen += len(view)
        if pos == piece.done:
            piece.digest.update(view)
            piece.done += len(view)
        else:
            piece.held[pos] = view
            self.held_bytes += len(view)
            if self.held_bytes > self.hold_limit:
                self._drop(index)
                return
        self._advance(piece)
        if piece.seen >= piece.need:
            if piece.done != piece.end or piece.held:  # overlaps made the count lie
                self._drop(index)
                return
            del self.open[index]
            if piece.digest.digest() == self.torrent.pieces[index]:
                self.good.add(index)
            else:
                self.bad.add(index)

    def _start(self, index: int) -> _Piece:
        start = index * self.torrent.piece_length
        end = min(start + self.torrent.piece_length, self.torrent.total_length)
        padding = 0
        for tfile in self.torrent.files[self._file_at(start) :]:
            if tfile.offset >= end:
                break
            if tfile.padding:
                padding += min(end, tfile.offset + tfile.length) - max(start, tfile.offset)
        piece = _Piece(end=end, need=end - start - padding, done=start)
        self._advance(piece)
        return piece

    def _advance(self, piece: _Piece) -> None:
        """Hash what became contiguous: held blocks at the frontier, padding as zeros."""
        while piece.done < piece.end:
            view = piece.held.pop(piece.done, None)
            if view is None:
                tfile = self.torrent.files[self._file_at(piece.done)]
                if not tfile.padding:
                    return
                pad_end = min(piece.end, tfile.offset + tfile.length)
                while piece.done < pad_end:
                    step = min(len(_ZEROS), pad_end - piece.done)
                    piece.digest.update(_ZEROS[:step])
                    piece.done += step
                continue
            self.held_bytes -= len(view)
            piece.digest.update(view)
            piece.done += len(view)

    def _file_at(self, pos: int) -> int:
        """The file holding stream offset pos (the last one starting at or before it, so
        never an empty file unless it ends the torrent)."""
        return max(0, bisect.bisect_right(self.starts, pos) - 1)

    def _drop(self, index: int) -> None:
        piece = self.open.pop(index, None)
        if piece is not None:
            self.held_bytes -= sum(len(view) for view in piece.held.values())
        self.good.discard(index)
        self.bad.discard(index)
        self.dropped.add(index)


class PieceStream:
    """A PieceTally fed by a worker thread. `written` is called on the event loop and
    never blocks; `finish` waits for what was handed over to be hashed."""

    def __init__(self, tally: PieceTally, queue_limit: int = QUEUE_LIMIT) -> None:
        self.tally = tally
        self.queue_limit = queue_limit
        self.queue: queue.SimpleQueue[tuple[str, int, bytes] | None] = queue.SimpleQueue()
        # Each counter has one writer (the loop, the worker): no lock needed.
        self.submitted = 0
        self.processed = 0
        self.failed: BaseException | None = None
        self.abandoned = False
        # Resolved on the loop when the worker has ended: waiting for it takes no thread.
        self._loop = asyncio.get_running_loop()
        self.stopped: asyncio.Future[None] = self._loop.create_future()
        self.thread = threading.Thread(target=self._run, name="q4d-piece-hash", daemon=True)
        self.thread.start()

    def written(self, rel: str, offset: int, data: bytes) -> None:
        if self.submitted - self.processed > self.queue_limit:
            return  # the worker lags: these pieces are read back instead
        self.submitted += len(data)
        self.queue.put((rel, offset, data))

    def finish(self) -> Streamed | None:
        """Blocking (run it in a thread): the settled pieces, or None if hashing broke."""
        self.queue.put(None)
        self.thread.join()
        if self.failed is not None:
            _LOGGER.warning("piece hashing while receiving failed (%s); reading back instead",
                            self.failed)  # fmt: skip
            return None
        return self.tally.settled()

    def abandon(self) -> None:
        """The attempt ended otherwise: the worker stops without hashing what is left."""
        self.abandoned = True
        self.queue.put(None)

    def _run(self) -> None:
        try:
            while (item := self.queue.get()) is not None:
                if self.abandoned or self.failed is not None:
                    continue
                rel, offset, data = item
                try:
                    self.tally.feed(rel, offset, data)
                except Exception as err:  # a bug here must cost a read-back, not the item
                    self.failed = err
                self.processed += len(data)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                self._loop.call_soon_threadsafe(_resolve, self.stopped)


class StreamSlot:
    """Where the engine's blocks go: nowhere until the .torrent is in (the transfer does
    not wait for it; pieces it missed are read back), then to a PieceStream."""

    def __init__(self) -> None:
        self.stream: PieceStream | None = None

    def attach(self, stream: PieceStream) -> None:
        self.stream = stream

    def written(self, rel: str, offset: int, data: bytes) -> None:
        if self.stream is not None:
            self.stream.written(rel, offset, data)

    async def finish(self) -> Streamed | None:
        if self.stream is None:
            return None
        streamed = await asyncio.to_thread(self.stream.finish)
        self.stream = None
        return streamed

    async def close(self) -> None:
        """The attempt is over (or cancelled, even inside `finish`): the worker drops
        what is left and is gone before the attempt ends, so none outlives it."""
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.abandon()
            await stream.stopped
            stream.thread.join(timeout=1.0)  # past its last line already: microseconds


def _resolve(stopped: asyncio.Future[None]) -> None:
    if not stopped.done():
        stopped.set_result(None)
