"""The test of a Sonarr or Radarr instance the arr_import step calls: the app's system
status (`GET /api/v3/system/status` with the key in `X-Api-Key`, as in Sonarr's and
Radarr's `Api.V3/System/SystemController.cs`), through the step's own request code
(postprocess/arr_import.py). It shows the key is taken, the API is v3, and the app is the
one the settings name; nothing is changed in the app."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import voluptuous as vol

from ..config.loader import read_secret_keys
from ..config.model import ArrConfig, Config
from ..config.post import ARR_SCHEMA
from ..postprocess.arr_import import APPS, NoAnswer, exchange, where_of
from .base import ProbeError, configured, invalid, reference, relative, schema_lines

WHERE = "arr.probe"  # the loader's path of a value under test, stripped from its errors
STATUS_PATH = "/api/v3/system/status"


def arr_target(value: dict[str, Any], config: Config) -> ArrConfig:
    """The instance a `config_test` value gives (an `arr.<name>` mapping) or names
    (`{"id": <name>}` of the running configuration)."""
    ident = reference(value)
    if ident is not None:
        return configured(ident, config.arr, "arr instance")
    raw = copy.deepcopy(value)
    errors: list[str] = []
    key_file = raw.get("api_key_file")
    if key_file is not None and not _own_key_file(key_file, config):
        # Any file the bridge can read would go to the URL of the request as the key.
        raise invalid(["api_key_file: only the key file of a saved instance; send api_key"])
    read_secret_keys(WHERE, raw, ("api_key",), errors)
    try:
        data = ARR_SCHEMA(raw)
    except vol.Invalid as err:
        raise invalid([*relative(errors, WHERE), *schema_lines(err)]) from None
    if errors:
        raise invalid(relative(errors, WHERE))
    return ArrConfig(**data)


def _own_key_file(path: Any, config: Config) -> bool:
    """Whether path is a key file the runtime layer wrote for an arr instance
    (`secrets/arr-<id>-api_key`, as config_get shows it): an edit from Home Assistant
    tests new settings with the key it cannot see."""
    if not isinstance(path, str):
        return False
    file = Path(path)
    return (
        file.parent == config.data_dir / "secrets"
        and file.name.startswith("arr-")
        and file.name.endswith("-api_key")
    )


def _status(instance: ArrConfig, status: int, text: str) -> dict[str, Any]:
    """The app's status resource, or the ProbeError its answer amounts to."""
    title, where = APPS[instance.type].title, where_of(instance)
    if status in (401, 403):
        raise ProbeError("auth_failed", f"{title} at {where}: API key refused (HTTP {status})")
    if status in (408, 429) or status >= 500:
        # a proxy in front whose app is down, or the app itself failing
        raise ProbeError("unreachable", f"{title} at {where}: HTTP {status}")
    if status != 200:
        # 404: no v3 API there (a wrong URL base, Sonarr v2); a redirect, not followed
        # (it would carry the key elsewhere): a login page in front
        raise ProbeError("unsupported", f"no {title} v3 API at {where} (HTTP {status})")
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    if not isinstance(found, dict) or not isinstance(found.get("version"), str):
        raise ProbeError("unsupported", f"no {title} v3 API at {where} (not a system status)")
    return found


async def probe_arr(instance: ArrConfig) -> dict[str, Any]:
    """The app's name and version, once it took the key and said it is the declared app."""
    title, where = APPS[instance.type].title, where_of(instance)
    async with aiohttp.ClientSession() as http:
        try:
            status, text = await exchange(
                http, instance, "GET", STATUS_PATH, None, instance.timeout
            )
        except NoAnswer as err:
            raise ProbeError("timeout" if err.timed_out else "unreachable", str(err)) from None
    found = _status(instance, status, text)
    app_name = str(found.get("appName") or "")
    if app_name.lower() != instance.type:
        # Radarr's URL under a Sonarr entry (or Prowlarr, Lidarr…): its scan commands
        # would be refused at each import
        raise ProbeError(
            "unsupported",
            f"{where} is {app_name or 'not Sonarr or Radarr'}, not {title}",
            app_name=app_name or None,
            version=found["version"],
        )
    return {
        "type": instance.type,
        "url": where,
        "app_name": app_name,
        "instance_name": found.get("instanceName") or None,
        "version": found["version"],
    }
