"""Post-processing in the lifecycle, through the real bridge, Mosquitto and sshd: a
landed item runs its plan's steps in order and is done after the last one; a transient
error is retried, a permanent one fails the item with the payload in place and a retry
runs the steps again from the one that failed; a stopped bridge resumes at the step it
was in; a done item is fetched again only with force, and stays done when that fails.
(The steps' own work — extraction, imports, hand-offs — is tested in their own files;
here scripted steps stand in for them.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from q4d_bridge.bridge import Bridge
from q4d_bridge.models import Item, ItemState, StepState
from q4d_bridge.postprocess.base import Landed, StepError

from tests.bridge.test_commands_live import answer, item_messages
from tests.bridge.test_e2e import Env, make_file, running_bridge
from tests.helpers.services import Mosquitto, SshServer

RULES = [{"destination": "tv", "match": [{"field": "category", "is": "post"}],
          "extract": True, "seedbox_cleanup": "at_once"}]  # fmt: skip


class Scripted:
    """A step whose outcomes the test sets: "ok", "transient", "fail", "hang" or "move"
    (the payload taken away, as Sonarr's import with Move does)."""

    def __init__(self, name: str, *outcomes: str) -> None:
        self.name = name
        self.outcomes = list(outcomes)
        self.calls: list[Landed] = []
        self.release = asyncio.Event()

    async def run(self, landed: Landed) -> str:
        self.calls.append(landed)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "hang":
            await self.release.wait()
        if outcome == "transient":
            raise StepError("service unavailable", transient=True)
        if outcome == "fail":
            raise StepError("archive is corrupt")
        assert landed.path.exists() or self.name == "cleanup"  # it never reads it
        if outcome == "move":
            landed.path.unlink()
        return f"{self.name} ok"


def scripted(env: Env, extract: Scripted, cleanup: Scripted) -> None:
    env.bridge.post.steps = {"extract": extract, "cleanup": cleanup}


async def settled_item(env: Env, extract: Scripted, cleanup: Scripted) -> Item:
    """The item of a completion landed with these steps, once everything settled."""
    scripted(env, extract, cleanup)
    item_id = await landed_item(env)
    await env.wait_settled(1)
    return env.bridge.lifecycle.items[item_id]


async def landed_item(env: Env, name: str = "show.mkv") -> str:
    make_file(env.remote / name, 50_000)
    await env.complete(name, "a" * 40, category="post")
    await env.recorder.wait_for(lambda: env.bridge.lifecycle.items, 10, "the item")
    (item_id,) = env.bridge.lifecycle.items
    return item_id


async def test_steps_run_in_order_after_landing(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=RULES) as env:
        extract, cleanup = Scripted("extract", "transient"), Scripted("cleanup")
        item = await settled_item(env, extract, cleanup)
        assert item.state is ItemState.DONE and item.step is None
        assert [(s.name, s.state, s.attempts, s.detail) for s in item.steps] == [
            ("extract", StepState.DONE, 2, "extract ok"),
            ("cleanup", StepState.DONE, 1, "cleanup ok"),
        ]
        assert extract.calls[0].path == env.library / "tv" / "show.mkv"
        assert extract.calls[0].plan.steps() == ("extract", "cleanup")
        kinds = [e["event"] for e in env.recorder.events() if e["event"] != "started"]
        assert kinds == ["queued", "landed", "step_done", "step_done", "completed"]
        landed = env.recorder.events("landed")[0]
        assert landed["steps"] == ["extract", "cleanup"]
        # the label DONE goes when the payload is home, once
        labels = [m.json()["label"] for m in env.recorder.on("q4d/seedbox/sb1/label")]
        assert labels == ["QUEUED", "DONE"]
        published = item_messages(env, item.id)
        assert any(m["state"] == "processing" and m["step"] == "extract" and
                   m["steps"][0]["state"] == "retrying" and
                   m["error"]["message"] == "extract: service unavailable"
                   for m in published)  # fmt: skip
        assert published[-1]["steps"][1]["detail"] == "cleanup ok"


async def test_a_failed_step_keeps_the_payload_and_a_retry_resumes_there(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=RULES) as env:
        extract, cleanup = Scripted("extract"), Scripted("cleanup", "fail")
        item = await settled_item(env, extract, cleanup)
        assert item.state is ItemState.FAILED and item.error_code == "post_processing"
        assert item.last_error == "cleanup: archive is corrupt"
        assert item.step is not None and item.step.name == "cleanup"
        assert (env.library / "tv" / "show.mkv").stat().st_size == 50_000
        failed = env.recorder.events("failed")[0]
        assert failed["step"] == "cleanup"
        assert [m.json()["label"] for m in env.recorder.on("q4d/seedbox/sb1/label")] == [
            "QUEUED", "DONE",
        ]  # fmt: skip
        started = len(env.recorder.events("started"))
        retried = await answer(env, "retry", item_id=item.id)
        assert retried["ok"], retried
        await env.recorder.wait_for(lambda: item.state is ItemState.DONE, 10, "done")
        assert len(extract.calls) == 1 and len(cleanup.calls) == 2  # from the failed step
        assert len(env.recorder.events("started")) == started  # nothing fetched again


async def test_a_stopped_bridge_resumes_at_the_step_it_was_in(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=RULES) as env:
        extract, cleanup = Scripted("extract"), Scripted("cleanup", "hang")
        scripted(env, extract, cleanup)
        item_id = await landed_item(env)
        await env.recorder.wait_for(lambda: cleanup.calls, 20, "the cleanup step")
        item = env.bridge.lifecycle.items[item_id]
        assert item.step is not None and item.step.state is StepState.RUNNING
    again_extract, again_cleanup = Scripted("extract"), Scripted("cleanup")

    def steps(bridge: Bridge) -> None:
        bridge.post.steps = {"extract": again_extract, "cleanup": again_cleanup}

    async with running_bridge(
        tmp_path, mosquitto, sshd, engine="sftp", rules=RULES, prepare=steps
    ) as env:
        item = env.bridge.lifecycle.items[item_id]
        await env.recorder.wait_for(lambda: item.state is ItemState.DONE, 10, "done")
        assert not again_extract.calls and len(again_cleanup.calls) == 1
        assert env.bridge.lifecycle.step_of(item, "cleanup").attempts == 2


async def test_a_done_item_is_fetched_again_only_with_force(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp") as env:
        make_file(env.remote / "film.mkv", 40_000, seed=1)
        await env.complete("film.mkv", "b" * 40)
        await env.wait_settled(1)
        (item_id,) = env.bridge.lifecycle.items
        landed = env.library / "other" / "film.mkv"
        before = landed.read_bytes()
        refused = await answer(env, "retry", item_id=item_id)
        assert refused["error"]["code"] == "invalid_state"
        (env.remote / "film.mkv").unlink()  # gone from the seedbox since
        assert (await answer(env, "retry", item_id=item_id, force=True))["ok"]
        await env.recorder.wait_for(lambda: env.recorder.events("refetch_failed"), 20, "refused")
        item = env.bridge.lifecycle.items[item_id]
        assert item.state is ItemState.DONE and not item.refetch
        assert item.last_error is not None and "the library copy stays" in item.last_error
        assert landed.read_bytes() == before


async def test_a_forced_fetch_replaces_the_library_copy_and_runs_the_steps_again(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=RULES) as env:
        extract, cleanup = Scripted("extract"), Scripted("cleanup")
        scripted(env, extract, cleanup)
        item_id = await landed_item(env)
        await env.wait_settled(1)
        landed = env.library / "tv" / "show.mkv"
        old = landed.read_bytes()
        make_file(env.remote / "show.mkv", 50_000, seed=7)  # the seedbox's copy since
        new = (env.remote / "show.mkv").read_bytes()
        assert new != old
        assert (await answer(env, "retry", item_id=item_id, force=True))["ok"]
        await env.recorder.wait_for(
            lambda: len(env.recorder.events("completed")) == 2, 20, "the second completion"
        )
        item = env.bridge.lifecycle.items[item_id]
        assert item.state is ItemState.DONE and not item.refetch and item.last_error is None
        assert landed.read_bytes() == new  # replaced, once the new copy was in staging
        assert [p.name for p in landed.parent.iterdir()] == ["show.mkv"]  # no staging left
        assert len(extract.calls) == 2 and len(cleanup.calls) == 2  # its steps ran again
        assert [s.state for s in item.steps] == [StepState.DONE, StepState.DONE]


async def test_the_seedbox_clean_up_runs_after_an_import_moved_the_payload(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer
) -> None:
    """The clean-up removes the seedbox's copy: a landed one moved away by the step
    before it (an import with Move) does not fail it. A step that reads the payload
    does fail on it (`<path> is gone`)."""
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp", rules=RULES) as env:
        extract, cleanup = Scripted("extract", "move"), Scripted("cleanup")
        item = await settled_item(env, extract, cleanup)
        assert item.state is ItemState.DONE, (item.last_error, item.steps)
        assert len(cleanup.calls) == 1 and not (env.library / "tv" / "show.mkv").exists()

        extract2, cleanup2 = Scripted("extract", "fail"), Scripted("cleanup")
        scripted(env, extract2, cleanup2)
        moved = await second_item(env, "film.mkv")
        await env.wait_settled(2)
        assert env.bridge.lifecycle.items[moved].state is ItemState.FAILED
        (env.library / "tv" / "film.mkv").unlink()  # gone before the retry
        assert (await answer(env, "retry", item_id=moved))["ok"]
        failed = env.bridge.lifecycle.items[moved]
        await env.recorder.wait_for(
            lambda: failed.state is ItemState.FAILED and failed.last_error is not None
            and failed.last_error.endswith("is gone"), 10, "failed again",
        )  # fmt: skip
        assert failed.last_error == f"extract: {env.library / 'tv' / 'film.mkv'} is gone"
        assert not cleanup2.calls


async def second_item(env: Env, name: str) -> str:
    before = set(env.bridge.lifecycle.items)
    make_file(env.remote / name, 30_000, seed=2)
    await env.complete(name, "d" * 40, category="post")
    await env.recorder.wait_for(
        lambda: set(env.bridge.lifecycle.items) - before, 10, "the second item"
    )
    (item_id,) = set(env.bridge.lifecycle.items) - before
    return item_id
