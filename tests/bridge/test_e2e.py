"""The whole bridge against real parts: Mosquitto, sshd (SFTP) and lftp on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.bridge import Bridge
from q4d_bridge.config.loader import parse_config
from q4d_bridge.models import ItemState

from tests.helpers.configs import bridge_config
from tests.helpers.mqtt import Recorder, publish, recording
from tests.helpers.services import Mosquitto, SshServer

pytestmark = pytest.mark.timeout(120)
ENGINES = pytest.mark.parametrize("engine", ["lftp", "sftp", "rsync"])
FINISHED_EVENTS = ("completed", "failed", "cancelled")
FINISHED_STATES = (ItemState.DONE, ItemState.FAILED, ItemState.CANCELLED)


@dataclass
class Env:
    bridge: Bridge
    recorder: Recorder
    port: int
    remote: Path
    library: Path
    # Items a previous run finished: this run publishes no event for them.
    finished_before: frozenset[str] = frozenset()
    raw: dict[str, Any] = field(default_factory=dict)  # its config, as YAML would give it

    async def complete(self, rel: str, info_hash: str | None, **fields: Any) -> str:
        path = str(self.remote / rel)
        event_id = fields.pop("event_id", hashlib.sha1(path.encode()).hexdigest()[:12])
        payload = {"v": 1, "event_id": event_id, "path": path, "hash": info_hash, **fields}
        await publish(self.port, [("q4d/seedbox/sb1/completed", json.dumps(payload).encode())])
        return event_id

    def items_in(self, state: ItemState) -> list[str]:
        return [i.id for i in self.bridge.lifecycle.items.values() if i.state is state]

    async def wait_settled(self, count: int, timeout: float = 60) -> None:
        await self.recorder.wait_for(
            lambda: len(self._finished_ids()) >= count, timeout, f"{count} finished items"
        )
        # The bridge publishes after recording; assertions on events need them to have arrived.
        settled_ids = self._finished_ids() - self.finished_before
        await self.recorder.wait_for(
            lambda: (
                settled_ids
                <= {
                    e["item"]["id"] for e in self.recorder.events() if e["event"] in FINISHED_EVENTS
                }
            ),
            timeout,
            "their finishing events",
        )

    def _finished_ids(self) -> set[str]:
        return {i.id for i in self.bridge.lifecycle.items.values() if i.state in FINISHED_STATES}


def make_file(path: Path, size: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * 4096
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def digest_tree(path: Path) -> dict[str, str]:
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@contextlib.asynccontextmanager
async def running_bridge(
    tmp_path: Path,
    mosquitto: Mosquitto,
    sshd: SshServer,
    engine: str = "lftp",
    disk_free: Callable[[Path], int] | None = None,
    prepare: Callable[[Bridge], None] | None = None,
    recorded: tuple[str, ...] = (),
    **config_kw: Any,
) -> AsyncIterator[Env]:
    """A bridge running on the test's broker and sshd; `prepare` sees it before it runs;
    the recorder hears `recorded` topics (all by default)."""
    remote = tmp_path / "seedbox"
    library = tmp_path / "library"
    remote.mkdir(exist_ok=True)
    transfers = config_kw.pop("transfers", {})
    seedbox = config_kw.pop("seedbox", {})
    raw = bridge_config(
        tmp_path / "data",
        library,
        key=sshd.client_key,
        known_hosts=config_kw.pop("known_hosts", sshd.known_hosts),
        broker_port=mosquitto.port,
        ssh_port=sshd.port,
        user=sshd.user,
        remote_root=str(remote),
        **config_kw,
    )
    raw["seedboxes"][0]["engine"] = engine
    raw["seedboxes"][0].update(seedbox)
    raw["transfers"].update(transfers)
    given = copy.deepcopy(raw)
    bridge = Bridge(parse_config(raw), **({"disk_free": disk_free} if disk_free else {}))
    finished_before = frozenset(
        i.id for i in bridge.lifecycle.items.values() if i.state in FINISHED_STATES
    )
    if prepare is not None:
        prepare(bridge)
    async with recording(mosquitto.port, *recorded) as recorder:
        task = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(bridge.connected.wait(), 15)
            yield Env(bridge, recorder, mosquitto.port, remote, library, finished_before, given)
        finally:
            bridge.stop()
            await asyncio.wait_for(task, 30)


@ENGINES
async def test_v1_file_and_directory_land_byte_identical(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine) as env:
        make_file(env.remote / "Movie (2024)" / "movie.mkv", 3_000_000, seed=1)
        season = env.remote / "Show.S01"
        for n in range(5):
            make_file(season / f"Show.S01E0{n}.mkv", 700_000 + n, seed=n)
        make_file(season / "Subs" / "en.srt", 1234, seed=9)
        make_file(season / "empty.nfo", 0)
        (season / "escape").symlink_to("/etc")  # a link in a torrent folder never lands
        hash_movie, hash_show = "a" * 40, "b" * 40
        await env.complete("Movie (2024)/movie.mkv", hash_movie, category="movies", size=3_000_000)
        await env.complete("Show.S01", hash_show, category="tv")
        await env.wait_settled(2)

        assert sorted(env.items_in(ItemState.DONE)) == sorted(env.bridge.lifecycle.items)
        movie = env.library / "movies" / "movie.mkv"
        assert digest_tree(movie) == digest_tree(env.remote / "Movie (2024)" / "movie.mkv")
        assert digest_tree(env.library / "tv" / "Show.S01") == digest_tree(season)
        assert not (env.library / "tv" / "Show.S01" / "escape").exists()
        # nothing partial left behind, nothing outside the destinations
        assert not list((env.library / "tv" / ".q4d-partial").glob("*"))
        assert {p.name for p in env.library.iterdir()} == {"movies", "tv"}

        rec = env.recorder
        await rec.wait_for(lambda: len(rec.on("q4d/seedbox/sb1/label")) >= 4, what="labels")
        labels = [m.json() for m in rec.on("q4d/seedbox/sb1/label")]
        for info_hash in (hash_movie, hash_show):
            assert [lab["label"] for lab in labels if lab["hash"] == info_hash] == [
                "QUEUED",
                "DONE",
            ]
        await rec.wait_for(lambda: len(rec.events("completed")) == 2, what="completed events")
        kinds = [e["event"] for e in rec.events()]
        assert kinds.count("queued") == kinds.count("started") == kinds.count("completed") == 2
        done_item = next(
            e["item"] for e in rec.events("completed") if e["item"]["hash"] == hash_movie
        )
        assert done_item["progress"] == 100.0 and done_item["state"] == "done"
        assert done_item["local_path"] == str(movie)

        await rec.wait_for(
            lambda: (
                rec.on("q4d/bridge/test/state")
                and rec.on("q4d/bridge/test/state")[-1].json()["counts"]["done"] == 2
            ),
            what="state snapshot with 2 done",
        )
        state = rec.on("q4d/bridge/test/state")[-1].json()
        assert state["totals"]["completed"] == 2
        assert (
            state["totals"]["bytes_transferred"]
            == 3_000_000 + sum(700_000 + n for n in range(5)) + 1234
        )
        item_topics = {m.topic for m in rec.on("q4d/bridge/test/item/") if m.payload}
        assert len(item_topics) == 2
        status = rec.on("q4d/bridge/test/status")[-1].json()
        assert status["state"] == "online" and status["seedboxes"] == ["sb1"]


async def test_classic_down_and_label(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, classic=True) as env:
        make_file(env.remote / "Classic.Show.S02E01.mkv", 200_000, seed=3)
        info_hash = "C0FFEE" + "0" * 34
        line = f"{env.remote / 'Classic.Show.S02E01.mkv'}\t{info_hash}\tT\n"
        await publish(env.port, [("Down", line.encode())])
        await env.wait_settled(1)
        landed = env.library / "tv" / "Classic.Show.S02E01.mkv"  # type code T -> tv
        assert landed.read_bytes() == (env.remote / "Classic.Show.S02E01.mkv").read_bytes()
        rec = env.recorder
        # Q4D's hook set QUEUED already; a second one could make LabelD.sh miss the DONE.
        await rec.wait_for(lambda: len(rec.on("Label")) >= 1, what="classic DONE")
        assert [m.payload.decode() for m in rec.on("Label")] == [f"{info_hash.lower()}\tDONE"]
        await rec.wait_for(lambda: len(rec.on("q4d/seedbox/sb1/label")) >= 2, what="v1 labels")
        v1_labels = [m.json()["label"] for m in rec.on("q4d/seedbox/sb1/label")]
        assert v1_labels == ["QUEUED", "DONE"]


async def test_classic_rejected_down_is_answered_nope(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, classic=True) as env:
        outside, unsafe, no_hash = "a" * 40, "b" * 40, "NotUsed"
        lines = [
            f"/elsewhere/Show.S01\t{outside.upper()}\tT",  # not under the remote roots
            f"{env.remote}/../etc\t{unsafe}\tT",
            f"/elsewhere/Film\t{no_hash}\tM",  # no hash, nothing to label
        ]
        await publish(env.port, [("Down", line.encode()) for line in lines])
        # A v1 event after them: its labels arrive after any NOPE (the outbox keeps order).
        make_file(env.remote / "after.mkv", 1000)
        await env.complete("after.mkv", "c" * 40)
        await env.wait_settled(1)
        rec = env.recorder
        await rec.wait_for(
            lambda: f"{'c' * 40}\tDONE".encode() in {m.payload for m in rec.on("Label")},
            what="the v1 item's classic DONE",
        )
        assert [m.payload.decode() for m in rec.on("Label")] == [
            f"{outside}\tNOPE",
            f"{unsafe}\tNOPE",
            f"{'c' * 40}\tQUEUED",
            f"{'c' * 40}\tDONE",
        ]
        assert [r["reason"] for r in env.bridge.store.rejected()] == ["unsafe_path"] * 3
        # The v1 label topic: only the v1 item; a rejected line gets its NOPE on Label alone.
        assert {m.json()["hash"] for m in rec.on("q4d/seedbox/sb1/label")} == {"c" * 40}


@ENGINES
async def test_failure_is_classified_and_labelled(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine) as env:
        await env.complete("never-downloaded.mkv", "d" * 40)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
        assert item.state is ItemState.FAILED
        assert item.error_code == "remote_missing"
        assert item.attempts == 1  # a permanent error is not retried blindly
        rec = env.recorder
        await rec.wait_for(lambda: len(rec.on("q4d/seedbox/sb1/label")) >= 2, what="labels")
        assert rec.on("q4d/seedbox/sb1/label")[-1].json()["label"] == "FAILED"
        failed = rec.events("failed")[0]["item"]
        assert failed["error"]["code"] == "remote_missing"


@ENGINES
async def test_host_key_mismatch_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(
        tmp_path, mosquitto, sshd, known_hosts=sshd.wrong_known_hosts, engine=engine
    ) as env:
        make_file(env.remote / "x.mkv", 1000)
        await env.complete("x.mkv", "e" * 40)
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
        assert (item.state, item.error_code) == (ItemState.FAILED, "host_key_mismatch")
        assert not (env.library / "other" / "x.mkv").exists()


async def test_duplicates_do_nothing(tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd) as env:
        make_file(env.remote / "dup.mkv", 5000)
        event_id = await env.complete("dup.mkv", "f" * 40)
        await env.complete("dup.mkv", "f" * 40, event_id=event_id)  # redelivery
        await env.complete("dup.mkv", "f" * 40, event_id="another-id")  # second hook run
        await env.wait_settled(1)
        rec = env.recorder
        await rec.wait_for(lambda: len(rec.events("duplicate")) == 2, what="2 duplicate events")
        assert len(env.bridge.lifecycle.items) == 1
        assert {e["reason"] for e in rec.events("duplicate")} == {"event_id", "hash"}


async def test_commands(tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd) as env:
        rec = env.recorder

        async def command(op: str, **args: Any) -> dict[str, Any]:
            request_id = f"r{len(rec.on('q4d/bridge/test/command/result'))}-{op}"
            payload = json.dumps({"id": request_id, "op": op, "args": args}).encode()
            await publish(env.port, [("q4d/bridge/test/command", payload)])
            results = await rec.wait_for(
                lambda: [
                    m.json()
                    for m in rec.on("q4d/bridge/test/command/result")
                    if m.json()["id"] == request_id
                ],
                what=f"result of {op}",
            )
            return results[0]

        assert (await command("pause"))["ok"]
        make_file(env.remote / "held.mkv", 10_000)
        await env.complete("held.mkv", "1" * 40)
        await rec.wait_for(lambda: env.items_in(ItemState.QUEUED), what="queued item")
        await asyncio.sleep(0.5)
        assert env.items_in(ItemState.QUEUED)  # paused: nothing started
        (item_id,) = env.bridge.lifecycle.items
        assert (await command("set_priority", item_id=item_id, priority=7))["ok"]
        queue = (await command("get_queue"))["result"]["items"]
        assert [(i["id"], i["priority"], i["state"]) for i in queue] == [(item_id, 7, "queued")]
        assert (await command("resume"))["ok"]
        await env.wait_settled(1)
        assert env.items_in(ItemState.DONE) == [item_id]
        # a done item is fetched again only when asked explicitly
        refused = (await command("retry", item_id=item_id))["error"]
        assert refused["code"] == "invalid_state" and "retry with force" in refused["message"]
        assert (await command("retry", force=True))["error"]["code"] == "invalid_args"
        again = await command("retry", item_id=item_id, force=True)
        assert again["result"]["items"] == [item_id]
        await rec.wait_for(lambda: len(rec.events("completed")) == 2, what="second completion")

        bad = await command("cancel", item_id=item_id)
        assert bad["error"]["code"] == "invalid_state"
        assert (await command("explode"))["error"]["code"] == "unknown_op"
        assert (await command("set_priority", item_id=item_id))["error"]["code"] == "invalid_args"
        assert (await command("retry", item_id="0" * 16))["error"]["code"] == "not_found"
        await publish(env.port, [("q4d/bridge/test/command", b"{not json")])
        await rec.wait_for(
            lambda: any(m.json()["id"] is None for m in rec.on("q4d/bridge/test/command/result")),
            what="error result for unparseable command",
        )


@ENGINES
async def test_cancel_running_transfer(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    # capped, so a busy machine's late `started` still finds the transfer running
    capped = {"bandwidth_limit": "50MiB"}
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine, transfers=capped) as env:
        make_file(env.remote / "big.bin", 400_000_000, seed=5)
        await env.complete("big.bin", "2" * 40)
        rec = env.recorder
        await rec.wait_for(lambda: rec.events("started"), what="started")
        (item_id,) = env.bridge.lifecycle.items
        env.bridge.controller.cancel(item_id)
        await env.wait_settled(1)
        assert env.items_in(ItemState.CANCELLED) == [item_id]
        assert not (env.library / "other" / "big.bin").exists()
        assert not (env.library / "other" / ".q4d-partial" / item_id).exists()
        assert (env.remote / "big.bin").exists()


HOSTILE_NAMES = [
    'double"quote.mkv',
    "single'quote.mkv",
    "semi;colon; rm -rf x.mkv",
    "$(touch pwned-subshell).mkv",
    "`touch pwned-backtick`.mkv",
    "bang! !touch pwned-bang.mkv",
    "back\\slash\\.mkv",
    "amp & pipe | redirect > out < in.mkv",
    "glob * ? [ab] {c,d} ~ #.mkv",
    "-leading-dash.mkv",
    "  spaces  around  .mkv",
    "Amélie (2001) 東京 🎬.mkv",
    "é" * 125 + ".mkv",  # 254 bytes of UTF-8
    "x" * 255,
]


@ENGINES
async def test_hostile_inputs(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine) as env:
        for n, name in enumerate(HOSTILE_NAMES):
            make_file(env.remote / name, 10_000 + n, seed=n)
        hostile_dir = env.remote / 'dir "with" $(touch pwned-dir) ;'
        make_file(hostile_dir / "a'b;c.mkv", 4321)
        make_file(hostile_dir / "sub dir" / "$HOME.mkv", 1234)

        valid = [
            json.dumps({"v": 1, "event_id": f"h{n}", "path": str(env.remote / name), "hash": None})
            for n, name in enumerate(HOSTILE_NAMES)
        ]
        valid.append(json.dumps({"v": 1, "event_id": "hdir", "path": str(hostile_dir)}))
        base = {"v": 1, "event_id": "bad", "hash": None}
        invalid = [
            b"not json at all",
            b"\x00\x01\x02",
            b"[]",
            json.dumps({**base, "path": 42}).encode(),
            json.dumps({**base, "path": str(env.remote / "x"), "size": "big"}).encode(),
            json.dumps({"v": 1, "path": str(env.remote / "x")}).encode(),  # no event_id
            json.dumps({**base, "event_id": "b1"}).encode(),  # no path
            b'{"v": 1, "event_id": "b2", "path": "' + b"a" * (1024 * 1024) + b'"}',
            json.dumps(
                {**base, "event_id": "b3", "path": f"{env.remote}/../../etc/passwd"}
            ).encode(),
            json.dumps({**base, "event_id": "b4", "path": "/etc/passwd"}).encode(),
            json.dumps({**base, "event_id": "b5", "path": "relative/x.mkv"}).encode(),
            json.dumps({**base, "event_id": "b6", "path": f"{env.remote}/new\nline.mkv"}).encode(),
            json.dumps({**base, "event_id": "b7", "path": f"{env.remote}/nul\u0000.mkv"}).encode(),
            json.dumps({**base, "event_id": "b8", "path": f"{env.remote}/" + "y" * 256}).encode(),
            json.dumps({**base, "event_id": "b9", "path": str(env.remote)}).encode(),
        ]
        messages = [("q4d/seedbox/sb1/completed", p.encode()) for p in valid]
        messages += [("q4d/seedbox/sb1/completed", p) for p in invalid]
        messages.append(("q4d/seedbox/ghost/completed", valid[0].encode()))  # unknown seedbox
        await publish(env.port, messages)
        rejected_expected = len(invalid) + 1

        rec = env.recorder
        await rec.wait_for(
            lambda: len(rec.events("rejected")) == rejected_expected,
            what=f"{rejected_expected} rejections",
        )
        await env.wait_settled(len(valid), timeout=90)
        assert len(env.items_in(ItemState.DONE)) == len(valid), [
            (i.name, i.last_error)
            for i in env.bridge.lifecycle.items.values()
            if i.state is not ItemState.DONE
        ]
        for name in HOSTILE_NAMES:
            landed = env.library / "other" / name
            assert landed.read_bytes() == (env.remote / name).read_bytes(), name
        assert digest_tree(env.library / "other" / hostile_dir.name) == digest_tree(hostile_dir)

        counters = env.bridge.store.counters()
        assert counters["rejected"] == rejected_expected
        reasons = {e["reason"] for e in rec.events("rejected")}
        assert reasons >= {"malformed", "wrong_type", "missing_field", "too_large", "unsafe_path",
                           "unknown_seedbox"}  # fmt: skip
        # nothing outside the destination roots, and no command ran anywhere
        outside = {p.name for p in env.library.iterdir()}
        assert outside == {"other"}
        for root in (tmp_path, Path.cwd(), Path("/tmp")):
            assert (
                not list(root.rglob("pwned*"))
                if root != Path("/tmp")
                else not list(root.glob("pwned*"))
            )
        # the bridge is still healthy: one more ordinary event goes through
        make_file(env.remote / "after.mkv", 100)
        await env.complete("after.mkv", None)
        await env.wait_settled(len(valid) + 1)


@ENGINES
async def test_symlink_in_destination_cannot_redirect_payload(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    rules = [
        {"destination": "tv", "match": [{"field": "category", "is": "tv"}], "subdir": "{category}"}
    ]
    outside = tmp_path / "outside"
    outside.mkdir()
    async with running_bridge(tmp_path, mosquitto, sshd, rules=rules, engine=engine) as env:
        (env.library / "tv").mkdir(parents=True)
        (env.library / "tv" / "tv").symlink_to(outside)  # planted: tv/<category> -> outside
        make_file(env.remote / "ep.mkv", 1000)
        await env.complete("ep.mkv", "3" * 40, category="tv")
        await env.wait_settled(1)
        (item,) = env.bridge.lifecycle.items.values()
        assert (item.state, item.error_code) == (ItemState.FAILED, "unsafe_path")
        assert list(outside.iterdir()) == []


@ENGINES
async def test_bandwidth_limit_honoured_and_changeable(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, engine: str
) -> None:
    limit = 8 * 1024 * 1024
    async with running_bridge(tmp_path, mosquitto, sshd, engine=engine) as env:
        assert env.bridge.controller.set_limits(limit, 1) == {
            "bandwidth_limit": limit,
            "max_concurrent": 1,
        }
        size = 40 * 1024 * 1024
        make_file(env.remote / "limited.bin", size, seed=4)
        await env.complete("limited.bin", "4" * 40)
        # The rate on disk between 10% and 90%, sampled every 20 ms: SSH set-up (and a
        # login shell on the seedbox) does not count against the limit.
        staged = env.library / "other" / ".q4d-partial"
        marks: dict[float, float] = {}
        for _ in range(3000):
            on_disk = sum(min(p.stat().st_blocks * 512, p.stat().st_size)
                          for p in staged.rglob("limited.bin"))  # fmt: skip
            for mark in (0.1, 0.9):
                if on_disk >= mark * size:
                    marks.setdefault(mark, time.monotonic())
            if len(marks) == 2:
                break
            await asyncio.sleep(0.02)
        await env.wait_settled(1, timeout=60)
        (item,) = env.bridge.lifecycle.items.values()
        assert item.state is ItemState.DONE
        rate = 0.8 * size / (marks[0.9] - marks[0.1])
        assert 0.9 * limit <= rate <= 1.1 * limit, f"{rate / 2**20:.2f} MiB/s"
        state = env.bridge.state().as_dict()
        assert state["limits"] == {
            "max_concurrent": 1,
            "bandwidth_limit": limit,
            "per_seedbox": {"sb1": 4},
        }
