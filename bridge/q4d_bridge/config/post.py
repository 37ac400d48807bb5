"""The post-processing keys a destination or a rule may set, their schemas, and how a
checked mapping becomes a `PostPlan` (docs/post-processing.md)."""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

from ..postprocess.plan import (
    ArrImportPlan,
    CleanupPlan,
    ExtractPlan,
    HandoffPlan,
    PostPlan,
)
from . import values as v

ARR_TYPES = ("sonarr", "radarr")
HOME_CLIENT_TYPES = ("qbittorrent", "transmission")
IMPORT_MODES = ("Auto", "Move", "Copy")
OWNERSHIP_KEYS = ("owner", "group", "file_mode", "dir_mode")


def account(value: Any) -> str | int:
    """A user or group: a numeric id (a media container's PUID/PGID) or a local name."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a user or group name, or a numeric id")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        number = int(value)
        if not 0 <= number < 2**32 - 1:
            raise vol.Invalid(f"id out of range: {number}")
        return number
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?", value):
        return value
    raise vol.Invalid(f"expected a user or group name, or a numeric id, got {value!r}")


def exclude_glob(value: Any) -> str:
    """`*.nfo` matches a file name anywhere; `Sample/` a folder (and all in it) anywhere;
    a pattern with an inner `/` matches the path inside the payload."""
    if not isinstance(value, str) or not value.strip("/"):
        raise vol.Invalid("expected a glob pattern such as *.nfo or Sample/")
    if value.startswith("/") or ".." in value.split("/"):
        raise vol.Invalid("patterns are relative to the payload and stay inside it")
    return value


def relative_folder(value: Any) -> str:
    if not isinstance(value, str) or not value or value.startswith("/"):
        raise vol.Invalid("expected a relative folder name")
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise vol.Invalid("must stay inside the payload's folder")
    return value


def http_url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise vol.Invalid("must be an http(s) URL such as http://127.0.0.1:8989")
    return value.rstrip("/")


EXTRACT_SCHEMA = vol.Schema(
    {
        vol.Optional("subfolder"): relative_folder,
        vol.Optional("keep_archives", default=True): bool,
    }
)
HANDOFF_SCHEMA = vol.Schema(
    {
        vol.Required("client"): v.identifier,
        vol.Optional("category"): vol.All(str, vol.Length(min=1, max=200)),
        vol.Optional("tags", default=list): [vol.All(str, vol.Length(min=1, max=200))],
        vol.Optional("remove_from_seedbox", default=False): bool,
        vol.Optional("delete_seedbox_data", default=True): bool,
    }
)
ARR_IMPORT_SCHEMA = vol.Schema(
    {
        vol.Required("instance"): v.identifier,
        # No default here: unset means Copy with a hand-off, Auto otherwise
        # (PostPlan.import_mode), which the merged plan alone can tell.
        vol.Optional("import_mode"): vol.In(IMPORT_MODES),
    }
)


def _cleanup_goal(value: dict[str, Any]) -> dict[str, Any]:
    if "ratio" not in value and "seeding_time" not in value:
        raise vol.Invalid("give a ratio, a seeding_time or both (or: never, at_once)")
    return value


CLEANUP_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("ratio"): vol.All(vol.Coerce(float), vol.Range(min=0)),
            vol.Optional("seeding_time"): v.duration,
            vol.Optional("delete_data", default=True): bool,
        }
    ),
    _cleanup_goal,
)


def cleanup(value: Any) -> Any:
    if isinstance(value, dict):
        return CLEANUP_SCHEMA(value)
    if value not in ("never", "at_once"):
        raise vol.Invalid("expected never, at_once or a goal such as {ratio: 2, seeding_time: 7d}")
    return value


# Keys shared by a destination (as a mapping) and a rule.
POST_KEYS: dict[Any, Any] = {
    vol.Optional("owner"): account,
    vol.Optional("group"): account,
    vol.Optional("file_mode"): v.mode(0o600),
    vol.Optional("dir_mode"): v.mode(0o700),
    vol.Optional("exclude"): [exclude_glob],
    vol.Optional("extract"): vol.Any(bool, EXTRACT_SCHEMA),
    vol.Optional("handoff"): vol.Any(v.identifier, HANDOFF_SCHEMA),
    vol.Optional("arr_import"): vol.Any(v.identifier, ARR_IMPORT_SCHEMA),
    vol.Optional("seedbox_cleanup"): cleanup,
}

DESTINATION_SCHEMA = vol.Schema({vol.Required("path"): v.absolute_path, **POST_KEYS})


def destination(value: Any) -> dict[str, Any]:
    """A destination: its folder, or a mapping with `path` and post-processing keys."""
    if isinstance(value, str):
        return {"path": v.absolute_path(value)}
    if isinstance(value, dict):
        return dict(DESTINATION_SCHEMA(value))
    raise vol.Invalid("expected a folder (/media/tv) or a mapping with path: and its steps")


ARR_SCHEMA = vol.Schema(
    {
        vol.Required("type"): vol.In(ARR_TYPES),
        vol.Required("url"): http_url,
        vol.Required("api_key"): v.secret(8),
        vol.Optional("timeout", default="30s"): vol.All(v.duration, vol.Range(min=1)),
        # A local folder -> the same folder as the app sees it (in its container, or on
        # Windows); the longest matching prefix wins.
        vol.Optional("path_map", default=dict): {
            v.absolute_path: vol.Match(
                r"^(/|[A-Za-z]:\\|\\\\)", msg="must be an absolute path as the app sees it"
            )
        },
    }
)
HOME_CLIENT_SCHEMA = vol.Schema(
    {
        vol.Required("type"): vol.In(HOME_CLIENT_TYPES),
        vol.Required("url"): http_url,
        vol.Optional("username"): v.text,
        vol.Optional("password"): v.text,
        vol.Optional("verify_tls", default=True): bool,
        # how long a recheck may take before the hand-off gives up on it
        vol.Optional("recheck_timeout", default="6h"): vol.All(v.duration, vol.Range(min=1)),
    }
)


def overrides(section: dict[str, Any]) -> dict[str, Any]:
    """The `PostPlan` fields a checked destination or rule sets, as plan values."""
    out: dict[str, Any] = {k: section[k] for k in OWNERSHIP_KEYS if k in section}
    if "exclude" in section:
        out["exclude"] = tuple(section["exclude"])
    if "extract" in section:
        extract = section["extract"]
        out["extract"] = (
            ExtractPlan(**extract) if isinstance(extract, dict) else ExtractPlan() if extract
            else None
        )  # fmt: skip
    if "handoff" in section:
        handoff = section["handoff"]
        out["handoff"] = (
            HandoffPlan(**{**handoff, "tags": tuple(handoff["tags"])})
            if isinstance(handoff, dict)
            else HandoffPlan(client=handoff)
        )
    if "arr_import" in section:
        arr = section["arr_import"]
        out["arr_import"] = ArrImportPlan(**arr) if isinstance(arr, dict) else ArrImportPlan(arr)
    if "seedbox_cleanup" in section:
        cleanup = section["seedbox_cleanup"]
        out["cleanup"] = (
            None if cleanup == "never"
            else CleanupPlan(at_once=True) if cleanup == "at_once"
            else CleanupPlan(**cleanup)
        )  # fmt: skip
    return out


def plan_problems(where: str, plan: PostPlan, arr: set[str], home: set[str]) -> list[str]:
    """References to instances that do not exist, and steps that undo each other."""
    problems = []
    if plan.arr_import and plan.arr_import.instance not in arr:
        problems.append(f"{where}.arr_import: {plan.arr_import.instance!r} is not under arr")
    if plan.handoff and plan.handoff.client not in home:
        problems.append(f"{where}.handoff: {plan.handoff.client!r} is not under home_clients")
    if plan.handoff and plan.extract and not plan.extract.keep_archives:
        problems.append(
            f"{where}.extract.keep_archives: must stay true with a hand-off (the home "
            "client's recheck reads the archives)"
        )
    if plan.handoff and plan.exclude:
        problems.append(
            f"{where}.exclude: a hand-off needs every file of the torrent (the home client "
            "rechecks them all); drop exclude or the hand-off"
        )
    # Sonarr/Radarr turn Auto into Move when the scan matches no seedbox torrent it must
    # leave in place (none after the hand-off removed it, or one past its seed limits),
    # and a Move may delete the folder after it: only Copy leaves the home client's files.
    if plan.handoff and plan.arr_import and plan.arr_import.import_mode == "Move":
        problems.append(
            f"{where}.arr_import.import_mode: Move would take the files the home client "
            "seeds; use Copy (a hardlink where it can)"
        )
    # Only a configured Auto: unset means Copy with a hand-off.
    if plan.handoff and plan.arr_import and plan.arr_import.import_mode == "Auto":
        problems.append(
            f"{where}.arr_import.import_mode: Auto moves the files the home client seeds "
            "when Sonarr/Radarr finds no seedbox torrent to leave them for (the hand-off may "
            "have removed it); use Copy (a hardlink where it can)"
        )
    return problems
