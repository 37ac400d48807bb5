"""Sequence tracking: numbers that never arrive are reported once they are overdue, and
only then; what was tracked survives a restart."""

from __future__ import annotations

from pathlib import Path

from q4d_bridge.intake.sequence import GRACE, Gap, Sequences
from q4d_bridge.persistence.store import Message, Store

T = 1_000_000.0


def tracker(tmp_path: Path) -> Sequences:
    return Sequences(Store(tmp_path / "q4d.sqlite3"))


def test_an_unbroken_sequence_reports_nothing(tmp_path: Path) -> None:
    seq = tracker(tmp_path)
    for n in range(1, 6):
        seq.received("sb1", "s1", n, T)
    seq.announced("sb1", "s1", 5, T)
    assert seq.overdue(T) == [] and seq.overdue(T + 10 * GRACE) == []
    assert (seq.missing("sb1"), seq.lost("sb1")) == (0, 0)


def test_counting_starts_at_the_first_event_seen(tmp_path: Path) -> None:
    """Numbers before the first one the bridge saw went to whoever listened then."""
    seq = tracker(tmp_path)
    seq.received("sb1", "s1", 500, T)
    seq.received("sb1", "s1", 501, T)
    assert seq.overdue(T) == [] and seq.overdue(T + 2 * GRACE) == []


def test_reordering_within_the_grace_period_is_not_a_loss(tmp_path: Path) -> None:
    seq = tracker(tmp_path)
    for n in (1, 3, 4):
        seq.received("sb1", "s1", n, T)
    assert seq.missing("sb1") == 1
    assert seq.overdue(T) == []
    assert seq.overdue(T + GRACE - 1) == []
    seq.received("sb1", "s1", 2, T + GRACE - 1)
    assert seq.overdue(T + GRACE + 1) == [] and seq.missing("sb1") == 0


def test_missing_numbers_are_reported_once_when_overdue(tmp_path: Path) -> None:
    seq = tracker(tmp_path)
    for n in (1, 2, 5):
        seq.received("sb1", "s1", n, T)
    seq.announced("sb1", "s1", 8, T)  # the outbox sent up to 8: 3, 4, 6, 7, 8 missing
    assert seq.missing("sb1") == 5
    assert seq.overdue(T) == []
    assert seq.overdue(T + GRACE) == [Gap("sb1", "s1", 5, 3, 8)]
    assert (seq.missing("sb1"), seq.lost("sb1")) == (0, 5)
    assert seq.overdue(T + 3 * GRACE) == []  # reported once
    seq.received("sb1", "s1", 4, T + 3 * GRACE)  # very late: already counted, ignored
    seq.received("sb1", "s1", 9, T + 3 * GRACE)
    assert seq.overdue(T + 5 * GRACE) == [] and seq.lost("sb1") == 5


def test_the_announced_tail_of_a_dropped_queue_is_found(tmp_path: Path) -> None:
    """A broker kept the first events and dropped the rest: only the retained number
    tells the bridge, before any later event arrives."""
    seq = tracker(tmp_path)
    seq.announced("sb1", "s1", 2000, T)  # retained: may arrive before the queued events
    assert seq.missing("sb1") == 0  # nothing to count from yet
    for n in range(1, 1001):
        seq.received("sb1", "s1", n, T)
    assert seq.overdue(T) == []
    assert seq.overdue(T + GRACE) == [Gap("sb1", "s1", 1000, 1001, 2000)]


def test_streams_and_seedboxes_are_counted_apart(tmp_path: Path) -> None:
    seq = tracker(tmp_path)
    seq.received("sb1", "old", 7, T)
    seq.received("sb1", "new", 1, T)  # a reinstalled outbox starts a new stream at 1
    seq.received("sb2", "s9", 1, T)
    seq.received("sb2", "s9", 3, T)
    seq.overdue(T)
    assert seq.overdue(T + GRACE) == [Gap("sb2", "s9", 1, 2, 2)]
    assert (seq.lost("sb1"), seq.lost("sb2")) == (0, 1)


def test_what_was_tracked_survives_a_restart(tmp_path: Path) -> None:
    seq = tracker(tmp_path)
    for n in (1, 2, 3, 6):
        seq.received("sb1", "s1", n, T)
    seq.announced("sb1", "s1", 7, T)
    seq.overdue(T)  # compacts and persists
    again = tracker(tmp_path)
    assert again.missing("sb1") == 3  # 4, 5, 7
    again.received("sb1", "s1", 4, T)
    again.overdue(T)
    assert again.overdue(T + GRACE) == [Gap("sb1", "s1", 2, 5, 7)]
    third = tracker(tmp_path)
    assert (third.missing("sb1"), third.lost("sb1")) == (0, 2)


def test_stale_streams_are_pruned(tmp_path: Path) -> None:
    seq = tracker(tmp_path)
    seq.received("sb1", "gone", 1, T)
    seq.received("sb1", "gone", 3, T)
    seq.received("sb1", "live", 1, T + 100 * 86400)
    seq.prune(T + 100 * 86400)
    assert seq.missing("sb1") == 0
    assert tracker(tmp_path).missing("sb1") == 0


def test_a_slow_drain_is_not_a_loss(tmp_path: Path) -> None:
    """The retained high-water mark can arrive before a long queue: as long as missing
    numbers keep coming in, the grace period starts over."""
    seq = tracker(tmp_path)
    seq.received("sb1", "s1", 1, T)
    seq.announced("sb1", "s1", 100, T)
    seq.overdue(T)
    for n in range(2, 101):
        now = T + n * GRACE / 10  # the queue drains over ten grace periods
        seq.received("sb1", "s1", n, now)
        assert seq.overdue(now) == []
    assert (seq.missing("sb1"), seq.lost("sb1")) == (0, 0)


def test_the_notice_is_queued_with_the_report(tmp_path: Path) -> None:
    store = Store(tmp_path / "q4d.sqlite3")
    seq = Sequences(store)
    seq.received("sb1", "s1", 1, T)
    seq.received("sb1", "s1", 3, T)
    seq.overdue(T)
    notice = Message("q4d/bridge/test/event", b"lost")
    assert seq.overdue(T + GRACE, lambda gap: notice) == [Gap("sb1", "s1", 1, 2, 2)]
    assert [m for _, m in store.outbox()] == [notice]
