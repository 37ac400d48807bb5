"""Store: admission is idempotent, items survive reopening, history is pruned."""

from __future__ import annotations

from pathlib import Path

from q4d_bridge.models import CompletionEvent, ItemState
from q4d_bridge.persistence.store import Message, Store
from q4d_bridge.rules import Resolution

HASH = "ab" * 20


def admit(
    store: Store, event_id: str, path: str = "/r/a", info_hash: str | None = HASH, **kw: object
):
    ev = CompletionEvent(
        event_id=event_id,
        seedbox="sb1",
        path=path,
        name=path.rsplit("/", 1)[-1],
        hash=info_hash,
        **kw,
    )  # type: ignore[arg-type]
    res = Resolution(None, "default", Path("/lib"), Path("/lib") / ev.name)
    return store.admit(
        [(ev, res)], messages_for=lambda item: [Message("announce", item.id.encode())], now=100.0
    )[0]


def test_dedupe_by_event_id_and_hash(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    first = admit(store, "e1")
    assert not first.duplicate
    assert admit(store, "e1").duplicate
    again = admit(store, "e2", path="/r/renamed")  # same torrent, new event id
    assert again.duplicate and again.reason == "hash" and again.item.id == first.item.id
    nohash = admit(store, "e3", path="/r/b", info_hash=None)
    assert not nohash.duplicate
    assert admit(store, "e4", path="/r/b", info_hash=None).reason == "path"
    assert len(store.items()) == 2
    # each new item announced once, in the same transaction; duplicates announce nothing
    outbox = store.outbox()
    assert [(m.topic, m.payload) for _s, m in outbox] == [
        ("announce", first.item.id.encode()),
        ("announce", nohash.item.id.encode()),
    ]
    store.remove_outbox([outbox[0][0]])
    assert [s for s, _m in store.outbox()] == [outbox[1][0]]


def test_items_survive_reopen_and_prune(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    item = admit(store, "e1").item
    item.state = ItemState.DONE
    item.finished_at = item.updated_at = 200.0
    store.save(item, "completed", {"bytes": 1})
    store.close()
    reopened = Store(tmp_path / "q.db")
    (back,) = reopened.items()
    assert back.state is ItemState.DONE and back.finished_at == 200.0
    assert [h["event"] for h in reopened.history(back.id)] == ["completed", "queued"]
    assert reopened.prune(retention=1000, now=1100.0) == []
    removal = lambda item_id: Message(f"item/{item_id}", b"", retain=True)  # noqa: E731
    assert reopened.prune(retention=1000, now=1300.0, removal=removal) == [back.id]
    assert reopened.outbox()[-1][1] == Message(f"item/{back.id}", b"", True)
    assert reopened.items() == []
    # the event id was forgotten with it, so a new completion is a new item again
    assert not admit(reopened, "e1").duplicate


def test_rejected_are_kept_and_counted(tmp_path: Path) -> None:
    store = Store(tmp_path / "q.db")
    store.record_rejected("q4d/seedbox/x/completed", b"junk", "malformed", "not JSON")
    store.record_rejected("Down", b"a", "malformed", "fields")
    assert store.counters()["rejected"] == 2
    assert store.counters()["rejected.malformed"] == 2
    assert store.rejected()[0]["topic"] == "Down"
