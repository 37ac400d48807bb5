"""The Home Assistant Supervisor's rules for an add-on ("app") repository, reproduced from
its public source (supervisor/apps/validate.py, supervisor/apps/options.py,
supervisor/validate.py, supervisor/store/validate.py and store/data.py, as of 2026-08)
rather than vendored. Stricter where the Supervisor only warns or silently drops: an
unknown key, a deprecated value or an option missing from the schema is an error here,
since the Supervisor would ignore it and the add-on would not do what the file says."""

from __future__ import annotations

import re
from typing import Any

import voluptuous as vol

ARCHES = ("aarch64", "amd64")  # ARCH_ALL; armhf, armv7 and i386 are ARCH_DEPRECATED
DEPRECATED_ARCHES = ("armhf", "armv7", "i386")
STARTUP = ("initialize", "system", "services", "application", "once")
BOOT = ("auto", "manual", "manual_only")
STAGE = ("stable", "experimental", "deprecated")
MAP_TYPES = (
    "data", "ssl", "local_apps", "backup", "share", "media", "homeassistant_config",
    "all_app_configs", "app_config",
)  # fmt: skip
# accepted, with a deprecation advisory: "config" (2023-10), the addon_* names (2026-07)
DEPRECATED_MAP_TYPES = ("config", "addons", "all_addon_configs", "addon_config")
RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
RE_VOLUME = re.compile(
    r"^(data|config|ssl|local_apps|addons|backup|share|media|homeassistant_config"
    r"|all_app_configs|all_addon_configs|app_config|addon_config)(?::(rw|ro))?$"
)
RE_SERVICE = re.compile(r"^(?P<service>mqtt|mysql):(?P<rights>provide|want|need)$")
RE_DOCKER_PORT = re.compile(r"^\d+(?:/tcp|/udp)?$")
RE_DOCKER_IMAGE_BUILD = re.compile(
    r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)(:[\.\-\w{}]+)?$"
)
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool|email|url|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
# Every key _SCHEMA_APP_CONFIG knows; the Supervisor drops any other (REMOVE_EXTRA).
KNOWN_KEYS = frozenset((
    "name", "version", "slug", "description", "arch", "machine", "url", "startup", "boot",
    "init", "advanced", "stage", "ports", "ports_description", "watchdog", "webui", "ingress",
    "ingress_port", "ingress_entry", "ingress_stream", "panel_icon", "panel_title",
    "panel_admin", "homeassistant", "host_network", "host_pid", "host_ipc", "host_uts",
    "host_dbus", "devices", "udev", "tmpfs", "map", "environment", "privileged", "apparmor",
    "full_access", "audio", "video", "gpio", "usb", "uart", "devicetree", "kernel_modules",
    "realtime", "hassio_api", "hassio_role", "homeassistant_api", "stdin", "legacy",
    "docker_api", "auth_api", "services", "discovery", "backup_exclude", "backup_pre",
    "backup_post", "backup", "options", "schema", "image", "ulimits", "timeout", "journald",
    "breaking_versions",
))  # fmt: skip
DEPRECATED_KEYS = ("advanced", "codenotary", "auto_uart", "snapshot", "snapshot_exclude")

NETWORK_PORT = vol.All(vol.Coerce(int), vol.Range(min=1, max=65535))


def _map_entry(entry: Any) -> dict[str, Any]:
    if isinstance(entry, str):
        raise vol.Invalid(f"map entry {entry!r}: use the mapping form {{type, read_only}}")
    entry = vol.Schema(
        {
            vol.Required("type"): vol.In(MAP_TYPES + DEPRECATED_MAP_TYPES),
            vol.Optional("read_only", default=True): bool,
            vol.Optional("path"): str,
        }
    )(entry)
    if entry["type"] in DEPRECATED_MAP_TYPES:
        raise vol.Invalid(f"map type {entry['type']!r} is deprecated")
    return dict(entry)


def _arch(value: Any) -> str:
    if value in DEPRECATED_ARCHES:
        raise vol.Invalid(f"arch {value!r} is deprecated")
    return str(vol.In(ARCHES)(value))


SCHEMA_ELEMENT = vol.Schema(
    vol.Any(
        vol.Match(RE_SCHEMA_ELEMENT),
        [vol.Any(vol.Match(RE_SCHEMA_ELEMENT), {str: vol.Self})],  # no list in a list
        {str: vol.Self},
    )
)

APP_CONFIG = vol.Schema(
    {
        vol.Required("name"): vol.All(str, vol.Length(min=1)),
        vol.Required("version"): vol.All(str, vol.Match(r"^\d+\.\d+\.\d+")),
        vol.Required("slug"): vol.Match(RE_SLUG),
        vol.Required("description"): str,
        vol.Required("arch"): vol.All([_arch], vol.Length(min=1)),
        vol.Optional("url"): vol.Url(),
        vol.Optional("startup"): vol.In(STARTUP),
        vol.Optional("boot"): vol.In(BOOT),
        vol.Optional("init"): bool,
        vol.Optional("stage"): vol.In(STAGE),
        vol.Optional("timeout"): vol.All(int, vol.Range(min=10, max=300)),
        vol.Optional("ports"): {vol.Match(RE_DOCKER_PORT): vol.Maybe(NETWORK_PORT)},
        vol.Optional("ports_description"): {vol.Match(RE_DOCKER_PORT): str},
        vol.Optional("map"): [_map_entry],
        vol.Optional("services"): [vol.Match(RE_SERVICE)],
        vol.Optional("options"): dict,
        vol.Optional("schema"): vol.Any(vol.Schema({str: SCHEMA_ELEMENT}), False),
        vol.Optional("backup_exclude"): [str],
        vol.Optional("hassio_api"): bool,
        vol.Optional("homeassistant_api"): bool,
    },
    extra=vol.ALLOW_EXTRA,  # the other known keys: unused here, checked by name below
)

TRANSLATION = vol.Schema(
    {
        vol.Required("name"): str,
        vol.Optional("description"): vol.Maybe(str),
        vol.Optional("fields"): {str: vol.Self},
    }
)
TRANSLATIONS = vol.Schema(
    {vol.Optional("configuration"): {str: TRANSLATION}, vol.Optional("network"): {str: str}}
)
REPOSITORY = vol.Schema(
    {vol.Required("name"): str, vol.Optional("url"): vol.Url(), vol.Optional("maintainer"): str}
)


def check_app_config(config: Any) -> dict[str, Any]:
    """The add-on's config.yaml as the store reads it; raises vol.Invalid."""
    if not isinstance(config, dict):
        raise vol.Invalid("config must be a mapping")
    unknown = sorted(set(config) - KNOWN_KEYS)
    if unknown:
        raise vol.Invalid(f"keys the Supervisor ignores: {unknown}")
    deprecated = sorted(set(config) & set(DEPRECATED_KEYS))
    if deprecated:
        raise vol.Invalid(f"deprecated keys: {deprecated}")
    checked: dict[str, Any] = APP_CONFIG(config)
    if checked.get("options") and checked.get("schema") is not False:
        check_options(checked.get("schema") or {}, checked["options"])
    return checked


def _single(typ: str, value: Any, key: str) -> Any:
    if value is None:
        raise vol.Invalid(f"Missing required option '{key}'")
    match = RE_SCHEMA_ELEMENT.match(typ)
    if not match:
        raise vol.Invalid(f"Unknown type '{typ}'")
    bounds = {
        name[2:]: float(match.group(name))
        for name in ("i_min", "i_max", "f_min", "f_max", "s_min", "s_max", "p_min", "p_max")
        if match.group(name)
    }
    if typ.startswith(("str", "password")):
        return vol.All(str, vol.Length(**bounds))(value)
    if typ.startswith("int"):
        return vol.All(vol.Coerce(int), vol.Range(**bounds))(value)
    if typ.startswith("float"):
        return vol.All(vol.Coerce(float), vol.Range(**bounds))(value)
    if typ.startswith("bool"):
        return vol.Boolean()(value)
    if typ.startswith("email"):
        return vol.Email()(value)
    if typ.startswith("url"):
        return vol.Url()(value)
    if typ.startswith("port"):
        return NETWORK_PORT(value)
    if typ.startswith("match"):
        return vol.Match(match.group("match"))(str(value))
    if typ.startswith("list"):
        return vol.In(match.group("list").split("|"))(str(value))
    raise vol.Invalid(f"type '{typ}' of option '{key}' needs hardware (not used here)")


def _element(typ: Any, value: Any, key: str) -> Any:
    if isinstance(typ, list):
        if not isinstance(value, list):
            raise vol.Invalid(f"Invalid list for option '{key}'")
        return [_element(typ[0], item, key) for item in value]
    if isinstance(typ, dict):
        if not isinstance(value, dict):
            raise vol.Invalid(f"Invalid dict for option '{key}'")
        return _dict(typ, value, key)
    return _single(typ, value, key)


def _dict(schema: dict[str, Any], values: dict[str, Any], root: str) -> dict[str, Any]:
    unknown = sorted(set(values) - set(schema))
    if unknown:  # the Supervisor drops them with a warning
        raise vol.Invalid(f"options not in the schema under {root}: {unknown}")
    out = {key: _element(schema[key], value, key) for key, value in values.items()}
    for missing in set(schema) - set(out):
        typ = schema[missing]
        if isinstance(typ, list) and typ:
            typ = typ[0]
        if not (isinstance(typ, str) and typ.endswith("?")):
            raise vol.Invalid(f"Missing option '{missing}' in {root}")
    return out


def check_options(schema: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Options as AppOptions checks them before the add-on starts (options.py)."""
    return _dict(schema, options, "root")
