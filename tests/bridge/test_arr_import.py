"""The arr_import step against a stand-in for Sonarr's and Radarr's v3 command API, as
their source behaves (Sonarr 49df353f / Radarr 1b9662d5: `Api.V3/Commands/
CommandController.cs`, `CommandResource.cs`, `Messaging/Commands/CommandQueueManager.cs`,
`Http/Authentication/ApiKeyAuthenticationHandler.cs`, `ErrorManagement/*ErrorPipeline.cs`),
and a bridge killed mid-step then run again. The pure parts without sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import q4d_bridge
from aiohttp import web
from q4d_bridge.config.loader import parse_config
from q4d_bridge.config.model import ArrConfig
from q4d_bridge.postprocess.arr_import import APPS, ArrImport, answer, arr_path, outcome, scan_body
from q4d_bridge.postprocess.base import Landed, StepError
from q4d_bridge.postprocess.plan import ArrImportPlan, HandoffPlan, PostPlan

from tests.helpers.configs import errors_of
from tests.helpers.services import LOOPBACK, free_port

KEY = "5f0c1a9e4b7d42c8a1e3"
HASH = "c0ffee00" * 5
SONARR, RADARR = APPS["sonarr"], APPS["radarr"]
FAILED_EXCEPTION = (
    "System.ArgumentException: A path must be provided (Parameter 'path')\n"
    "   at NzbDrone.Core.MediaFiles.DownloadedEpisodesCommandService.Execute(...)"
)

# --- the pure parts ---------------------------------------------------------------------


def test_paths_as_the_app_sees_them() -> None:
    path_map = {"/srv/media": "/data/media", "/srv/media/tv/": "/tv", "/win": "D:\\media\\"}
    assert arr_path(Path("/srv/media/tv/Show/S01E01.mkv"), path_map) == "/tv/Show/S01E01.mkv"
    assert arr_path(Path("/srv/media/movies/Film"), path_map) == "/data/media/movies/Film"
    assert arr_path(Path("/srv/media"), path_map) == "/data/media"
    assert arr_path(Path("/srv/media2/x"), path_map) == "/srv/media2/x"  # whole components
    assert arr_path(Path("/win/Film (2001)/f.mkv"), path_map) == "D:\\media\\Film (2001)\\f.mkv"
    assert arr_path(Path("/elsewhere/x"), {}) == "/elsewhere/x"


def test_the_scan_command_s_body() -> None:
    assert scan_body(SONARR, "/tv/Show", HASH, "Copy") == {
        "name": "DownloadedEpisodesScan",
        "path": "/tv/Show",
        "importMode": "Copy",
        "downloadClientId": HASH.upper(),  # as the apps store a torrent's download id
    }
    assert scan_body(RADARR, "/m/Film", None, "Auto") == {
        "name": "DownloadedMoviesScan", "path": "/m/Film", "importMode": "Auto",
    }  # fmt: skip


def resource(status: str, **more: Any) -> dict[str, Any]:
    return {"id": 7, "name": "DownloadedEpisodesScan", "status": status, **more}


def test_a_command_s_outcome() -> None:
    assert outcome(SONARR, resource("queued")) is None
    assert outcome(SONARR, resource("started")) is None
    done = resource("completed", result="successful", message="Completed")
    assert outcome(SONARR, done) == "Sonarr: DownloadedEpisodesScan completed — Completed"
    assert outcome(RADARR, resource("completed", result="successful")) == (
        "Radarr: DownloadedMoviesScan completed"
    )
    nothing = resource("completed", result="unsuccessful", message="Failed to import")
    assert outcome(SONARR, nothing) == (
        "Sonarr: DownloadedEpisodesScan completed, nothing imported — Failed to import"
    )
    failed = resource("failed", message="Failed", exception=FAILED_EXCEPTION)
    cases = [
        (failed, "Sonarr: DownloadedEpisodesScan failed — System.ArgumentException: A path must be provided (Parameter 'path')", False),
        (resource("aborted"), "Sonarr: DownloadedEpisodesScan aborted", False),
        (resource("cancelled"), "Sonarr: DownloadedEpisodesScan cancelled", False),
        (resource("orphaned"), "Sonarr restarted during DownloadedEpisodesScan", True),
        (resource("weird"), "Sonarr: DownloadedEpisodesScan weird", False),
    ]  # fmt: skip
    for body, message, transient in cases:
        with pytest.raises(StepError) as info:
            outcome(SONARR, body)
        assert (str(info.value), info.value.transient) == (message, transient)


def refused(status: int, text: str = "", gone: str | None = None) -> tuple[str, bool]:
    with pytest.raises(StepError) as info:
        answer(SONARR, "http://h:8989", status, text, gone)
    return str(info.value), info.value.transient


def test_answers_sorted_into_done_retry_and_refused() -> None:
    assert answer(SONARR, "w", 201, json.dumps(resource("queued")))["id"] == 7
    error = json.dumps({"message": "database is locked", "description": "at ..."})
    validation = json.dumps([{"propertyName": "Name", "errorMessage": "'Name' must not be empty."}])
    assert refused(401) == ("Sonarr at http://h:8989: API key refused (HTTP 401)", False)
    assert refused(403)[1] is False
    assert refused(404) == ("no Sonarr v3 API at http://h:8989 (HTTP 404)", False)
    assert refused(302) == ("no Sonarr v3 API at http://h:8989 (HTTP 302)", False)
    assert refused(200, "<html>") == ("no Sonarr v3 API at http://h:8989 (the answer is not a command)", False)  # fmt: skip
    assert refused(200, '{"id": "7"}')[1] is False
    assert refused(500, error) == ("Sonarr at http://h:8989: HTTP 500 — database is locked", True)
    assert refused(503, "<h1>Bad gateway</h1>") == ("Sonarr at http://h:8989: HTTP 503 — <h1>Bad gateway</h1>", True)  # fmt: skip
    assert refused(429)[1] is True and refused(408)[1] is True
    assert refused(400, validation) == (
        "Sonarr at http://h:8989 refused DownloadedEpisodesScan: HTTP 400 — "
        "'Name' must not be empty.",
        False,
    )
    assert refused(404, "", gone="Sonarr: command 7 is gone") == ("Sonarr: command 7 is gone", True)


# --- a stand-in for the apps' command API ---------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeArr:
    """Sonarr's or Radarr's `/api/v3/command` (and `system/status`) as their source behaves: the key in
    `X-Api-Key` (or `apikey=`) else 401 with no body; JSON only; 201 with the command
    resource (enums in camelCase, nulls left out); a command equal to one queued or
    started hands back that one; each GET moves a command one step along `steps`, then
    to `final` (unless `stuck`). `answers` come first, one a request (a status, or a web
    page); `hold` (post or poll) keeps a request waiting until `release`."""

    app: str = "sonarr"
    steps: tuple[str, ...] = ("queued", "started")
    final: dict[str, Any] = field(
        default_factory=lambda: {"status": "completed", "result": "successful"}
    )
    answers: list[int | str] = field(default_factory=list)
    hold: str | None = None
    stuck: bool = False  # commands stay where they are
    seen: list[Seen] = field(default_factory=list)
    commands: dict[int, dict[str, Any]] = field(default_factory=dict)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    version: str = "4.0.14.2939"

    def system_status(self) -> dict[str, Any]:
        """`Api.V3/System/SystemController.cs`'s status resource (a few of its keys)."""
        title = APPS[self.app].title
        return {
            "appName": title, "instanceName": title, "version": self.version,
            "buildTime": "2025-03-01T00:00:00Z", "isDebug": False, "isProduction": True,
            "isAdmin": False, "isUserInteractive": False, "startupPath": "/app",
            "appData": "/config", "osName": "debian", "urlBase": "", "authentication": "forms",
        }  # fmt: skip

    async def handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        self.seen.append(
            Seen(request.method, request.path_qs, dict(request.headers), json.loads(text or "null"))
        )
        if self.answers:
            page = self.answers.pop(0)
            if isinstance(page, str):
                return web.Response(text=page, content_type="text/html")
            return web.json_response({"message": "stand-in"}, status=page)
        key = request.headers.get("X-Api-Key") or request.query.get("apikey")
        if key != KEY:
            return web.Response(status=401)
        if request.method == "GET" and request.path == "/api/v3/system/status":
            return web.json_response(self.system_status())
        if request.method == "POST" and request.path == "/api/v3/command":
            return await self.start(request, json.loads(text))
        if request.method == "GET" and request.path.startswith("/api/v3/command/"):
            return await self.get(int(request.match_info["tail"].rsplit("/", 1)[1]))
        return web.Response(status=404)

    async def start(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if request.content_type != "application/json":
            return web.Response(status=415)
        name = APPS[self.app].command
        if body.get("name", "").lower() != name.lower():  # the controller's .Single()
            return web.json_response({"message": "Sequence contains no matching element"}, status=400)  # fmt: skip
        fields = ("path", "downloadClientId", "importMode")
        same = [
            c for c in self.commands.values()
            if c["status"] in ("queued", "started")
            and all(c["body"].get(f) == body.get(f) for f in fields)
        ]  # fmt: skip
        if same:
            command = same[0]
        else:
            command = {
                "id": len(self.commands) + 1, "name": name, "commandName": name,
                "body": {**body, "sendUpdatesToClient": True}, "priority": "normal",
                "status": self.steps[0], "result": "unknown", "trigger": "manual",
                "queued": "2025-11-14T23:14:05Z",
            }  # fmt: skip
            self.commands[command["id"]] = command
        await self.maybe_hold("post")
        return web.json_response(command, status=201)

    async def get(self, command_id: int) -> web.StreamResponse:
        command = self.commands.get(command_id)
        if command is None:
            return web.Response(status=404)
        if command["status"] in self.steps and not self.stuck:
            later = self.steps.index(command["status"]) + 1
            command.update({"status": self.steps[later]} if later < len(self.steps) else self.final)
        await self.maybe_hold("poll")
        return web.json_response(command)

    async def maybe_hold(self, where: str) -> None:
        if self.hold == where:
            self.held.set()
            await self.release.wait()


@pytest.fixture
async def arr() -> AsyncIterator[Callable[..., Awaitable[FakeArr]]]:
    runners: list[tuple[web.AppRunner, FakeArr]] = []

    async def serve(**settings: Any) -> FakeArr:
        server = FakeArr(**settings)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)  # an ephemeral port
        await site.start()
        port = runner.addresses[0][1]
        server.url = f"http://{LOOPBACK}:{port}"
        runners.append((runner, server))
        return server

    yield serve
    for runner, server in runners:
        server.release.set()  # a request still held ends
        await runner.cleanup()


def landed(
    mode: str | None = "Auto",
    instance: str = "sonarr",
    name: str = "Show.S01E01",
    handoff: HandoffPlan | None = None,
) -> Landed:
    return Landed(
        item_id="i1", name=name, hash=HASH, seedbox="sb1", category="tv",
        path=Path("/srv/media/tv") / name, root=Path("/srv/media/tv"),
        plan=PostPlan(arr_import=ArrImportPlan(instance, mode), handoff=handoff),
    )  # fmt: skip


def config(url: str, kind: str = "sonarr", **more: Any) -> ArrConfig:
    return ArrConfig(type=kind, url=url, api_key=KEY, **{"timeout": 5.0, **more})


async def run(step_config: ArrConfig, item: Landed, name: str = "sonarr") -> str:
    step = ArrImport({name: step_config}, poll_interval=0.02)
    try:
        return await step.run(item)
    finally:
        await step.close()


async def fails(step_config: ArrConfig, item: Landed) -> StepError:
    with pytest.raises(StepError) as info:
        await run(step_config, item, step_config.type)
    assert KEY not in str(info.value)
    return info.value


# --- against the stand-in --------------------------------------------------------------


async def test_sonarr_imports_with_the_request_it_expects(
    arr: Callable[..., Awaitable[FakeArr]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sonarr = await arr()
    path_map = {"/srv/media": "/data/media", "/srv/media/tv": "/tv"}
    detail = await run(config(sonarr.url, path_map=path_map), landed("Copy"))
    assert detail == "Sonarr: DownloadedEpisodesScan completed"
    post, *polls = sonarr.seen
    assert (post.method, post.path) == ("POST", "/api/v3/command")
    assert post.headers["X-Api-Key"] == KEY
    assert post.headers["Content-Type"] == "application/json"
    assert post.body == {
        "name": "DownloadedEpisodesScan", "path": "/tv/Show.S01E01", "importMode": "Copy",
        "downloadClientId": HASH.upper(),
    }  # fmt: skip
    # queued (the POST's answer) → started → completed
    assert [(p.method, p.path, p.body) for p in polls] == [("GET", "/api/v3/command/1", None)] * 2
    assert all(p.headers["X-Api-Key"] == KEY for p in polls)
    assert KEY not in caplog.text and "command 1" in caplog.text


async def test_an_unset_import_mode_is_copy_with_a_hand_off_and_auto_without(
    arr: Callable[..., Awaitable[FakeArr]],
) -> None:
    sonarr = await arr()
    await run(config(sonarr.url), landed(None, handoff=HandoffPlan("home")))
    await run(config(sonarr.url), landed(None))
    scans = [seen.body for seen in sonarr.seen if seen.method == "POST"]
    assert [scan["importMode"] for scan in scans if scan] == ["Copy", "Auto"]


async def test_radarr_says_it_imported_nothing(arr: Callable[..., Awaitable[FakeArr]]) -> None:
    final = {"status": "completed", "result": "unsuccessful", "message": "Failed to import"}
    radarr = await arr(app="radarr", final=final, steps=("queued",))
    item = landed("Copy", instance="radarr", name="Film (2001)")
    detail = await run(config(radarr.url, "radarr"), item, "radarr")
    assert detail == "Radarr: DownloadedMoviesScan completed, nothing imported — Failed to import"
    assert radarr.seen[0].body == {
        "name": "DownloadedMoviesScan", "path": "/srv/media/tv/Film (2001)",
        "importMode": "Copy", "downloadClientId": HASH.upper(),
    }  # fmt: skip


async def test_a_failed_command_fails_the_step(arr: Callable[..., Awaitable[FakeArr]]) -> None:
    final = {"status": "failed", "result": "unknown", "message": "Failed",
             "exception": FAILED_EXCEPTION}  # fmt: skip
    sonarr = await arr(final=final)
    error = await fails(config(sonarr.url), landed())
    assert not error.transient
    assert "failed — System.ArgumentException: A path must be provided" in str(error)


async def test_refusals_are_not_retried(arr: Callable[..., Awaitable[FakeArr]]) -> None:
    sonarr = await arr()
    wrong_key = ArrConfig(type="sonarr", url=sonarr.url, api_key="not-" + KEY, timeout=5)
    error = await fails(wrong_key, landed())
    assert (str(error), error.transient) == (f"Sonarr at {sonarr.url}: API key refused (HTTP 401)", False)  # fmt: skip
    assert "not-" + KEY not in str(error)
    error = await fails(config(sonarr.url + "/sonarr"), landed())  # a wrong URL base
    assert (str(error), error.transient) == (f"no Sonarr v3 API at {sonarr.url}/sonarr (HTTP 404)", False)  # fmt: skip
    sonarr.answers = ["<html>hello</html>"]  # a web page at the URL
    error = await fails(config(sonarr.url), landed())
    assert (str(error), error.transient) == (f"no Sonarr v3 API at {sonarr.url} (the answer is not a command)", False)  # fmt: skip
    # Sonarr's scan sent to Radarr: the controller finds no such command
    radarr = await arr(app="radarr")
    error = await fails(config(radarr.url), landed())
    assert str(error).endswith("HTTP 400 — Sequence contains no matching element")
    assert not error.transient
    # an instance the plan names, gone from the config since intake (the runner puts
    # the step's name before the message: no second `arr_import:`)
    error = await fails(config(sonarr.url), landed(instance="old-sonarr"))
    assert (str(error), error.transient) == ("'old-sonarr' is no longer under arr", False)


async def test_a_busy_or_absent_app_is_retried(arr: Callable[..., Awaitable[FakeArr]]) -> None:
    sonarr = await arr(answers=[503, 429])
    first = await fails(config(sonarr.url), landed())
    assert (str(first), first.transient) == (f"Sonarr at {sonarr.url}: HTTP 503 — stand-in", True)
    assert (await fails(config(sonarr.url), landed())).transient  # 429
    assert await run(config(sonarr.url), landed()) == "Sonarr: DownloadedEpisodesScan completed"
    sonarr.hold = "post"  # no answer in time
    error = await fails(config(sonarr.url, timeout=0.5), landed())
    assert (str(error), error.transient) == (f"Sonarr at {sonarr.url}: no answer within 0.5s", True)
    closed = f"http://{LOOPBACK}:{free_port()}"
    error = await fails(config(closed), landed())
    assert error.transient and str(error).startswith(f"Sonarr at {closed} unreachable: ")


async def test_a_slow_import_is_followed_again_not_sent_twice(
    arr: Callable[..., Awaitable[FakeArr]],
) -> None:
    """Past the timeout the step is retried; the scan sent again finds the same command
    in the app's queue, as Sonarr's CommandQueueManager.Push hands it back."""
    sonarr = await arr()
    other = scan_body(SONARR, "/x", None, "Auto")
    sonarr.commands[1] = {"id": 1, "status": "started", "body": other}
    sonarr.stuck = True
    error = await fails(config(sonarr.url, timeout=1.0), landed())
    assert error.transient
    # queued behind another scan (the apps run one disk-bound command at a time)
    assert str(error) == "Sonarr: DownloadedEpisodesScan still queued after 1s (command 2)"
    sonarr.stuck = False  # the queue moves on meanwhile
    assert await run(config(sonarr.url), landed()) == "Sonarr: DownloadedEpisodesScan completed"
    assert list(sonarr.commands) == [1, 2]  # the other scan's and this one's


async def test_a_command_the_app_forgot(arr: Callable[..., Awaitable[FakeArr]]) -> None:
    sonarr = await arr(stuck=True)
    step = ArrImport({"sonarr": config(sonarr.url)}, poll_interval=0.02)
    task = asyncio.create_task(step.run(landed()))
    while not any(seen.method == "GET" for seen in sonarr.seen):
        await asyncio.sleep(0.01)
    sonarr.commands.clear()  # its history trimmed, a backup restored
    with pytest.raises(StepError) as info:
        await task
    await step.close()
    assert (str(info.value), info.value.transient) == ("Sonarr: command 1 is gone", True)


# --- a bridge killed mid-step, then run again ------------------------------------------

CHILD = """
import asyncio, sys
from pathlib import Path
from q4d_bridge.config.model import ArrConfig
from q4d_bridge.postprocess.arr_import import ArrImport
from q4d_bridge.postprocess.base import Landed
from q4d_bridge.postprocess.plan import ArrImportPlan, PostPlan

async def main() -> None:
    url, key, info_hash = sys.argv[1:4]
    step = ArrImport({"sonarr": ArrConfig("sonarr", url, key, 60.0)}, poll_interval=0.02)
    item = Landed("i1", "Show.S01E01", info_hash, "sb1", "tv", Path("/srv/media/tv/Show.S01E01"),
                  Path("/srv/media/tv"), PostPlan(arr_import=ArrImportPlan("sonarr", "Copy")))
    print(await step.run(item), flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("where", ["post", "poll"])
async def test_killed_mid_step_then_run_again(
    arr: Callable[..., Awaitable[FakeArr]], where: str
) -> None:
    sonarr = await arr(hold=where)
    env = {**os.environ, "PYTHONPATH": str(Path(q4d_bridge.__file__).parents[1])}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, sonarr.url, KEY, HASH, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.wait_for(sonarr.held.wait(), 30)  # the app holds the child's request
    child.send_signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
    out, _ = await child.communicate()
    assert out == b""  # nothing recorded: the step did not end
    sonarr.hold = None
    sonarr.release.set()
    detail = await run(config(sonarr.url), landed("Copy"))
    assert detail == "Sonarr: DownloadedEpisodesScan completed"
    assert list(sonarr.commands) == [1]  # the rerun followed the command the child sent
    posts = [s.body for s in sonarr.seen if s.method == "POST"]
    assert len(posts) == 2 and posts[0] == posts[1]


# --- the config ------------------------------------------------------------------------


def test_path_map_in_the_config(raw: dict[str, Any]) -> None:
    instance = {"type": "sonarr", "url": "http://127.0.0.1:8989", "api_key": KEY}
    raw["arr"] = {"sonarr": {**instance, "path_map": {"/srv/media": "/data/media"}},
                  "radarr": {**instance, "type": "radarr"}}  # fmt: skip
    parsed = parse_config(raw)
    assert parsed.arr["sonarr"].path_map == {"/srv/media": "/data/media"}
    assert parsed.arr["radarr"].path_map == {}
    assert KEY not in repr(parsed.arr)
    raw["arr"]["sonarr"]["path_map"] = {"srv": "/data", "/srv/x": "data"}
    errors = errors_of(raw)
    assert any(e.startswith("arr.sonarr.path_map.srv") for e in errors), errors
    assert "arr.sonarr.path_map./srv/x: must be an absolute path as the app sees it" in errors
