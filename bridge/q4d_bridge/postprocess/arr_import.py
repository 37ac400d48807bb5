"""The arr_import step: once a payload has landed, ask Sonarr or Radarr to import it,
for those who keep the app pointed at their seedbox's client, and wait for the outcome.

It is the app's own v3 command API, as in Sonarr's and Radarr's source
(`Sonarr.Api.V3/Commands/CommandController.cs`, `CommandResource.cs`,
`MediaFiles/Commands/DownloadedEpisodesScanCommand.cs`, `DownloadedMoviesScanCommand.cs`):
`POST /api/v3/command` with `{"name": "DownloadedEpisodesScan", "path", "downloadClientId",
"importMode"}` and the key in `X-Api-Key` answers 201 with the command resource; `GET
/api/v3/command/{id}` follows its `status` (queued, started, then completed, failed,
aborted, cancelled or orphaned) and `result` (successful, or unsuccessful when the scan
imported nothing: the app completes the command and says "Failed to import").

Idempotent after a crash or a retry: the step simply sends the scan again. While the
first command is still queued or started the app hands back that same command (its
queue drops a new command equal to one in progress: `CommandQueueManager.Push`), so the
step follows it rather than starting another; once it has ended, a second scan of an
imported path imports nothing more (and reports so)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
from yarl import URL

from ..config.model import ArrConfig
from .base import Landed, StepError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class App:
    title: str  # as messages name it
    command: str  # the scan command the app's CommandController knows by name


APPS = {
    "sonarr": App("Sonarr", "DownloadedEpisodesScan"),
    "radarr": App("Radarr", "DownloadedMoviesScan"),
}
RUNNING = ("queued", "started")
POLL_INTERVAL = 1.0
MAX_POLLS = 300
MAX_TEXT = 300  # of an app's message or error quoted in a detail


def arr_path(local: Path, path_map: Mapping[str, str]) -> str:
    """`local` as the app sees it: the longest `path_map` prefix (whole path components:
    /srv/media does not match /srv/media2) replaced by its target, whose separator the
    rest follows (a Windows app's `D:\\media`). Unmapped paths go as they are."""
    parts = PurePosixPath(local).parts
    best: tuple[int, str] | None = None
    for prefix, target in path_map.items():
        depth = len(PurePosixPath(prefix).parts)
        if parts[:depth] == PurePosixPath(prefix).parts and (best is None or depth > best[0]):
            best = (depth, target)
    if best is None:
        return str(local)
    depth, target = best
    sep = "\\" if "\\" in target else "/"
    rest = parts[depth:]
    if not rest:
        return target
    return target.rstrip(sep) + sep + sep.join(rest)


def scan_body(app: App, path: str, info_hash: str | None, import_mode: str) -> dict[str, str]:
    """The command as the app's controller reads it (camelCase, the enum by name)."""
    body = {"name": app.command, "path": path, "importMode": import_mode}
    if info_hash:
        # The apps keep a torrent's download id as the hash in capitals (QBittorrent.cs:
        # `torrent.Hash.ToUpper()`, the same for Transmission and Deluge) and find it
        # case-sensitively; with it the import follows the download the app grabbed.
        body["downloadClientId"] = info_hash.upper()
    return body


def _quote(text: object) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line[:MAX_TEXT]


def _error_message(text: str) -> str:
    """What an app's error answer says: its ErrorModel's message, the first validation
    error, else the start of the text."""
    try:
        data = json.loads(text)
    except ValueError:
        return _quote(text)
    if isinstance(data, dict) and data.get("message"):
        return _quote(data["message"])
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return _quote(data[0].get("errorMessage", ""))
    return _quote(text)


def answer(app: App, where: str, status: int, text: str, gone: str | None = None) -> dict[str, Any]:
    """The command resource in an answer, or the StepError the answer amounts to; `gone`
    says what a 404 means when asking after a command the app took."""
    message = _error_message(text)
    said = f" — {message}" if message else ""
    if status == 404 and gone is not None:
        # The app forgot the command (its history trimmed, a backup restored): the retry
        # sends it again.
        raise StepError(gone, transient=True)
    if status in (401, 403):
        raise StepError(f"{app.title} at {where}: API key refused (HTTP {status})")
    if status == 404 or 300 <= status < 400:
        # A redirect is not followed (it would carry the key elsewhere): a wrong URL base
        # or a login page in front.
        raise StepError(f"no {app.title} v3 API at {where} (HTTP {status})")
    if status in (408, 429) or status >= 500:
        raise StepError(f"{app.title} at {where}: HTTP {status}{said}", transient=True)
    if status >= 400:
        raise StepError(f"{app.title} at {where} refused {app.command}: HTTP {status}{said}")
    try:
        resource = json.loads(text)
    except ValueError:
        resource = None
    if (
        not isinstance(resource, dict)
        or not isinstance(resource.get("id"), int)
        or not isinstance(resource.get("status"), str)
    ):
        raise StepError(f"no {app.title} v3 API at {where} (the answer is not a command)")
    return resource


def outcome(app: App, resource: Mapping[str, Any]) -> str | None:
    """The detail to record once the command has ended well, None while it runs; a
    StepError when it ended otherwise."""
    status = str(resource["status"]).lower()  # the apps write enums in camelCase
    message = _quote(resource.get("message") or "")
    said = f" — {message}" if message else ""
    if status in RUNNING:
        return None
    if status == "completed":
        if str(resource.get("result", "")).lower() == "unsuccessful":
            # The app's own verdict on a scan with no file imported; still a completed
            # command, as it is after a rerun over an imported path.
            return f"{app.title}: {app.command} completed, nothing imported{said}"
        return f"{app.title}: {app.command} completed{said}"
    if status == "failed":
        # The message is then just "Failed"; the exception's first line says why.
        reason = _quote(resource.get("exception") or "") or message
        raise StepError(f"{app.title}: {app.command} failed — {reason or 'no reason given'}")
    if status == "orphaned":
        # The app restarted while the command ran: sending it again is the way on.
        raise StepError(f"{app.title} restarted during {app.command}", transient=True)
    raise StepError(f"{app.title}: {app.command} {status}{said}")


class ArrImport:
    """The step; it owns its HTTP session: `close()` it when the bridge stops."""

    name = "arr_import"

    def __init__(
        self,
        instances: Mapping[str, ArrConfig],
        *,
        poll_interval: float = POLL_INTERVAL,
        max_polls: int = MAX_POLLS,
    ) -> None:
        self._instances = instances
        self._poll_interval = poll_interval
        self._max_polls = max_polls
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def run(self, landed: Landed) -> str:
        plan = landed.plan.arr_import
        if plan is None:
            raise StepError("the item's plan has no arr_import")
        config = self._instances.get(plan.instance)
        if config is None:  # the plan was fixed at intake; the config changed since
            raise StepError(f"{plan.instance!r} is no longer under arr")
        app = APPS[config.type]
        path = arr_path(landed.path, config.path_map)
        body = scan_body(app, path, landed.hash, landed.plan.import_mode())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout
        resource = await self._call(config, "POST", "/api/v3/command", body, deadline)
        command_id = resource["id"]
        log.info("%s: %s of %s sent (command %s)", app.title, app.command, path, command_id)
        polls = 0
        while (detail := outcome(app, resource)) is None:
            # Sent again on the retry, the scan finds this same command if it is still
            # running (the app's queue keeps one of equal commands).
            still = StepError(
                f"{app.title}: {app.command} still {resource['status']} after "
                f"{config.timeout:g}s (command {command_id})",
                transient=True,
            )
            if polls >= self._max_polls or loop.time() + self._poll_interval > deadline:
                raise still
            await asyncio.sleep(self._poll_interval)
            polls += 1
            try:
                resource = await self._call(
                    config, "GET", f"/api/v3/command/{command_id}", None, deadline,
                    gone=f"{app.title}: command {command_id} is gone",
                )  # fmt: skip
            except NoAnswer as err:
                # The time ran out during the last poll (a late wake-up from the sleep
                # leaves it a moment): what is known is the status seen last.
                if err.timed_out and loop.time() >= deadline:
                    raise still from None
                raise
        log.info("%s", detail)
        return detail

    async def _call(
        self,
        config: ArrConfig,
        method: str,
        path: str,
        body: dict[str, str] | None,
        deadline: float,
        gone: str | None = None,
    ) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        remaining = deadline - asyncio.get_running_loop().time()
        status, text = await exchange(self._http, config, method, path, body, remaining)
        return answer(APPS[config.type], where_of(config), status, text, gone)


def where_of(config: ArrConfig) -> str:
    """The app's URL as messages show it: no credentials."""
    return URL(config.url).with_user(None).human_repr().rstrip("/")


class NoAnswer(StepError):
    """No HTTP answer from the app: `timed_out`, else unreachable. Always transient."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message, transient=True)
        self.timed_out = timed_out


async def exchange(
    http: aiohttp.ClientSession,
    config: ArrConfig,
    method: str,
    path: str,
    body: dict[str, str] | None,
    within: float,
) -> tuple[int, str]:
    """One request to the app with its key, within `within` seconds: the status and the
    text (the key blanked out), or NoAnswer. Shared by the step and its probe
    (probes/arr.py), so both speak to the app alike."""
    app = APPS[config.type]
    where = where_of(config)
    try:
        async with http.request(
            method,
            config.url + path,
            json=body,
            headers={"X-Api-Key": config.api_key},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=max(within, 0.001)),
        ) as response:
            status = response.status
            text = await response.text(errors="replace")
    # `from None`: aiohttp's errors hold the request, whose headers hold the key.
    except TimeoutError:
        raise NoAnswer(
            f"{app.title} at {where}: no answer within {config.timeout:g}s", timed_out=True
        ) from None
    except aiohttp.ClientError as err:
        reason = str(err) or type(err).__name__
        raise NoAnswer(f"{app.title} at {where} unreachable: {reason}", timed_out=False) from None
    # An answer quoting the request (a proxy's error page) must not quote the key.
    return status, text.replace(config.api_key, "***")
