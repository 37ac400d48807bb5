"""The outbox: every message is on disk before it is published, and leaves only after
the broker's PUBACK.

One file per MQTT message: the topic, a newline, then the payload bytes exactly as
they are published. File names start with a fixed-width nanosecond timestamp, so
sorting by name is sending in completion order. Writers never take the senders' lock
(a new file appears atomically by rename); senders (the hook after writing, and
`flush`) hold `.lock` so no message is ever sent by two processes at once.

Each completion also gets the next number of the outbox's sequence (`stream`, `seq`),
under `.sequence.lock`, held only while one event is numbered and written: the bridge
checks the numbers it receives and says so when some never arrived (a broker that
dropped queued messages, an outbox lost with its host).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".msg"
SEQUENCE_FILE = ".sequence"
_sequence = itertools.count()


class OutboxError(Exception):
    pass


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock_path = directory / ".lock"

    def _ensure(self) -> None:
        # Events hold paths and names of the user's downloads: private to the user.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def add(self, topic: str, payload: bytes) -> Path:
        """Write one message durably: temp file, fsync, rename, fsync the directory."""
        self._ensure()
        name = f"{time.time_ns():020d}-{os.getpid():010d}-{next(_sequence):04d}{SUFFIX}"
        final = self.directory / name
        temp = self.directory / f".{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(topic.encode("utf-8") + b"\n" + payload)
                handle.flush()
                os.fsync(handle.fileno())
            temp.rename(final)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    def pending(self) -> list[Path]:
        """Messages waiting, oldest first (temp files and set-aside files excluded)."""
        try:
            found = [p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)]
        except FileNotFoundError:
            return []
        return sorted((p for p in found if not p.name.startswith(".")), key=lambda p: p.name)

    def read(self, path: Path) -> Message | None:
        """The message at path; None if another sender already removed it. A file
        that is not a message is renamed to `*.bad` so it cannot block the queue."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        topic, sep, payload = raw.partition(b"\n")
        try:
            topic_text = topic.decode("utf-8")
        except UnicodeDecodeError:
            topic_text = ""
        if not sep or not topic_text:
            path.replace(path.with_name(path.name + ".bad"))
            raise OutboxError(f"{path.name} is not an outbox message; set aside as {path.name}.bad")
        return Message(topic_text, payload)

    @contextlib.contextmanager
    def numbered(self, wait: float) -> Iterator[tuple[str, int] | None]:
        """The next number of this outbox's event sequence, as (stream, seq), for the
        one message added inside the block; None if the sequence stayed busy for
        `wait` seconds (the message then goes out unnumbered: a hook never hangs).

        Held under a lock, so messages sort in the order of their numbers and the last
        one sent is always the highest. The counter is saved before the message: a
        crash in between shows up at the bridge as a missing number, never as one
        number used twice. The stream is a random id made with the counter: a new or
        reset counter starts a new stream instead of repeating old numbers."""
        self._ensure()
        fd = os.open(self.directory / ".sequence.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not _lock(fd, wait):
                yield None
                return
            path = self.directory / SEQUENCE_FILE
            try:
                stream, last = path.read_text(encoding="ascii").split()
                number = int(last) + 1
            except (FileNotFoundError, ValueError, UnicodeDecodeError):
                stream, number = secrets.token_hex(8), 1
            temp = path.with_name(f".sequence-{os.getpid()}.tmp")
            with temp.open("w", encoding="ascii") as handle:
                handle.write(f"{stream} {number}\n")
                handle.flush()
                os.fsync(handle.fileno())
            temp.replace(path)
            yield stream, number
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @staticmethod
    def remove(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    @contextlib.contextmanager
    def locked(self, wait: float) -> Iterator[bool]:
        """Hold the senders' lock, waiting up to `wait` seconds; yields whether it got it."""
        self._ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            yield _lock(fd, wait)
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _lock(fd: int, wait: float) -> bool:
    """flock(fd) exclusively, trying for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        else:
            return True
