"""The add-on's options (`/data/options.json`, shaped by the schema in
addon/q4d-bridge/config.yaml) and the bridge configuration they become. Secrets go to
their own files, never into the configuration: the MQTT and WebUI passwords to
`*_password_file`s (the SSH password and a key's passphrase likewise), SSH keys and
pinned host keys to files the SSH settings name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

from ..config import values as v
from ..config.schema import CLIENT_TYPES, ENGINES, TRANSFER_ENGINES
from . import AddonError, keys
from .supervisor import MqttService

# HA OS mounts network storage under these; anything else in the container is lost
# when the add-on is updated or rebuilt.
LIBRARY_ROOTS = ("/media", "/share")
# The integration discovers bridges on q4d/bridge/+/status (custom_components/q4d/manifest.json).
TOPIC_PREFIX = "q4d"
LOG_LEVELS = ("debug", "info", "warning", "error")

_PORT = vol.All(int, vol.Range(min=1, max=65535))
_TEXT = vol.All(str, vol.Length(min=1))

SEEDBOX_OPTIONS = vol.Schema(
    {
        vol.Required("id"): v.identifier,
        vol.Optional("name"): _TEXT,
        vol.Required("host"): _TEXT,
        vol.Required("port"): _PORT,
        vol.Required("user"): _TEXT,
        vol.Optional("key_file"): v.absolute_path,
        vol.Optional("private_key"): _TEXT,
        # for a key with a passphrase, or a seedbox that takes only passwords
        vol.Optional("passphrase"): v.login_secret,
        vol.Optional("password"): v.login_secret,
        vol.Optional("host_key"): _TEXT,
        vol.Optional("trust_on_first_use", default=False): bool,
        vol.Optional("remote_root"): v.absolute_path,
        vol.Optional("max_concurrent"): vol.All(int, vol.Range(min=1, max=64)),
        vol.Optional("engine"): vol.In(ENGINES),
        vol.Optional("torrent_file"): _TEXT,
        vol.Optional("client_type"): vol.In(CLIENT_TYPES),
        vol.Optional("client_url"): _TEXT,
        vol.Optional("client_username"): _TEXT,
        vol.Optional("client_password"): _TEXT,
        vol.Optional("client_verify_tls"): bool,
    }
)

DESTINATION_OPTIONS = vol.Schema(
    {vol.Required("name"): v.identifier, vol.Required("path"): v.absolute_path}
)

RULE_OPTIONS = vol.Schema(
    {
        vol.Optional("destination"): v.identifier,
        vol.Optional("ignore", default=False): bool,
        vol.Optional("category"): _TEXT,
        vol.Optional("tag"): _TEXT,
        vol.Optional("tracker"): _TEXT,
        vol.Optional("name"): vol.All(_TEXT, v.regex),
        vol.Optional("seedbox"): v.identifier,
        vol.Optional("min_size"): v.size,
        vol.Optional("max_size"): v.size,
        vol.Optional("subdir"): _TEXT,
        vol.Optional("engine"): vol.In(TRANSFER_ENGINES),
    }
)

OPTIONS = vol.Schema(
    {
        vol.Required("bridge_id"): v.identifier,
        vol.Optional("bridge_name"): _TEXT,
        # Both may be empty: seedboxes and destinations are then added from Home
        # Assistant (Settings → Devices & services), kept in the bridge's runtime layer.
        vol.Optional("seedboxes", default=list): [SEEDBOX_OPTIONS],
        vol.Optional("destinations", default=list): [DESTINATION_OPTIONS],
        vol.Optional("default_destination"): v.identifier,
        vol.Optional("rules", default=list): [RULE_OPTIONS],
        vol.Optional("max_concurrent"): vol.All(int, vol.Range(min=1, max=256)),
        vol.Optional("bandwidth_limit"): v.size,
        vol.Optional("min_free_space"): v.size,
        vol.Optional("mqtt_host"): _TEXT,
        vol.Optional("mqtt_port"): _PORT,
        vol.Optional("mqtt_username"): _TEXT,
        vol.Optional("mqtt_password"): _TEXT,
        vol.Optional("extra_config"): v.absolute_path,
        vol.Required("log_level"): vol.All(str, vol.Lower, vol.In(LOG_LEVELS)),
    }
)


@dataclass
class Plan:
    """The bridge configuration and the secret files (mode 0600) it names."""

    config: dict[str, Any]
    files: dict[Path, str] = field(default_factory=dict)


def _unset_blanks(value: Any) -> Any:
    """The options form may keep a cleared field as "" or null: both mean unset."""
    if isinstance(value, dict):
        return {k: _unset_blanks(x) for k, x in value.items() if x is not None and x != ""}
    if isinstance(value, list):
        return [_unset_blanks(x) for x in value]
    return value


def _path(path: list[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _login_problems(sb: dict[str, Any], where: str) -> list[str]:
    """Exactly one login: a key (a file or pasted, perhaps with its passphrase) or a
    password; each tool the bridge runs answers one prompt."""
    key_options = [k for k in ("key_file", "private_key") if k in sb]
    if len(key_options) == 2:
        return [f"{where}: set key_file or private_key (one of the two)"]
    if key_options and "password" in sb:
        return [f"{where}.password: set a key (key_file or private_key) or password, not both"]
    if not key_options and "password" not in sb:
        return [f"{where}: set key_file or private_key (an SSH key), or password"]
    if "passphrase" in sb and not key_options:
        return [f"{where}.passphrase: only with key_file or private_key (that key's passphrase)"]
    return []


def parse(raw: Any) -> dict[str, Any]:
    """The options, checked; errors name the option (`seedboxes[0].port: …`)."""
    if not isinstance(raw, dict):
        raise AddonError(["options: expected a mapping of options"])
    try:
        options: dict[str, Any] = OPTIONS(_unset_blanks(raw))
    except vol.MultipleInvalid as err:
        raise AddonError(sorted({f"{_path(e.path)}: {e.msg}" for e in err.errors})) from None
    errors: list[str] = []
    names = [d["name"] for d in options["destinations"]]
    errors += [f"destinations: {n!r} named twice" for n in sorted(set(names)) if names.count(n) > 1]
    for i, dest in enumerate(options["destinations"]):
        root = Path(dest["path"])
        if not any(root.is_relative_to(lib) and root != Path(lib) for lib in LIBRARY_ROOTS):
            errors.append(
                f"destinations[{i}].path: must be a folder inside /media or /share "
                f"(Home Assistant's storage), got {dest['path']!r}"
            )
    for i, sb in enumerate(options["seedboxes"]):
        errors += _login_problems(sb, f"seedboxes[{i}]")
        if "host_key" not in sb and not sb["trust_on_first_use"]:
            errors.append(
                f"seedboxes[{i}].host_key: required (the seedbox's public host key, a line of "
                f"`ssh-keyscan -p {sb['port']} {sb['host']}`), unless trust_on_first_use is on"
            )
        client_keys = [k for k in sb if k.startswith("client_")]
        if client_keys and ("client_type" not in sb or "client_url" not in sb):
            errors.append(
                f"seedboxes[{i}]: {', '.join(client_keys)}: the torrent client needs "
                "client_type and client_url"
            )
    if errors:
        raise AddonError(errors)
    return options


def _key(sb: dict[str, Any], where: str, path: Path, plan: Plan, errors: list[str]) -> str:
    """The key (pasted or from key_file) for `path`, checked with its passphrase."""
    try:
        if "private_key" in sb:
            option, text = "private_key", sb["private_key"]
        else:
            option, text = "key_file", Path(sb["key_file"]).read_text(encoding="utf-8")
        plan.files[path] = keys.private_key(
            text, f"{where}.{option}", sb.get("passphrase"), f"{where}.passphrase"
        )
    except OSError as err:
        errors.append(
            f"{where}.key_file: cannot read {sb['key_file']}: {err.strerror} (keep the key in "
            "/ssl, or in the add-on's folder /addon_configs/…q4d_bridge, which it sees as /config)"
        )
    except ValueError as err:
        errors.append(str(err))
    return str(path)


def _seedbox(sb: dict[str, Any], data: Path, plan: Plan, errors: list[str], i: int) -> None:
    out: dict[str, Any] = {k: sb[k] for k in ("id", "host", "port", "user") if k in sb}
    for key in ("name", "max_concurrent", "engine", "torrent_file"):
        if key in sb:
            out[key] = sb[key]
    where = f"seedboxes[{i}]"
    ssh = data / "ssh"
    for login in ("password", "passphrase"):
        if login in sb:
            path = data / "secrets" / f"{sb['id']}.{login}"
            plan.files[path] = sb[login]
            out[f"{login}_file"] = str(path)
    if "password" not in sb:
        out["key"] = _key(sb, where, ssh / f"{sb['id']}.key", plan, errors)
    if "host_key" in sb:
        known = ssh / f"{sb['id']}.known_hosts"
        try:
            plan.files[known] = keys.known_hosts(
                sb["host"], sb["port"], sb["host_key"], f"{where}.host_key"
            )
        except ValueError as err:
            errors.append(str(err))
        out["known_hosts"] = str(known)
    # Without host_key, trust on first use pins into <data_dir>/known_hosts/<id>, kept.
    out["trust_on_first_use"] = sb["trust_on_first_use"] and "host_key" not in sb
    if "remote_root" in sb:
        out["remote_roots"] = [sb["remote_root"]]
    if "client_type" in sb:
        client: dict[str, Any] = {"type": sb["client_type"], "url": sb.get("client_url", "")}
        if "client_username" in sb:
            client["username"] = sb["client_username"]
        if "client_password" in sb:
            secret = data / "secrets" / f"{sb['id']}.client_password"
            plan.files[secret] = sb["client_password"]
            client["password_file"] = str(secret)
        if "client_verify_tls" in sb:
            client["verify_tls"] = sb["client_verify_tls"]
        out["client"] = client
    plan.config["seedboxes"].append(out)


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = []
    for option, field_, op in (
        ("category", "category", "is"),
        ("tag", "tags", "is"),
        ("tracker", "tracker", "contains"),
        ("name", "name", "regex"),
        ("seedbox", "seedbox", "is"),
        ("min_size", "size", "gt"),
        ("max_size", "size", "lt"),
    ):
        if option in rule:
            conditions.append({"field": field_, op: rule[option]})
    out: dict[str, Any] = {"match": conditions}
    for key in ("destination", "subdir", "engine"):
        if key in rule:
            out[key] = rule[key]
    if rule["ignore"]:
        out["ignore"] = True
    return out


def _broker(options: dict[str, Any], mqtt: MqttService | None, data: Path, plan: Plan) -> None:
    broker: dict[str, Any] = {"topic_prefix": TOPIC_PREFIX}
    if "mqtt_host" in options:
        broker["host"] = options["mqtt_host"]
        broker["port"] = options.get("mqtt_port", 1883)
        username, password = options.get("mqtt_username"), options.get("mqtt_password")
    else:
        assert mqtt is not None  # the caller asks the Supervisor when mqtt_host is unset
        broker["host"], broker["port"] = mqtt.host, mqtt.port
        username, password = mqtt.username, mqtt.password
        if mqtt.ssl:
            broker["tls"] = True
    if username:
        broker["username"] = username
    if password:
        secret = data / "secrets" / "mqtt_password"
        plan.files[secret] = password
        broker["password_file"] = str(secret)
    plan.config["broker"] = broker


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Mappings merge key by key; a seedbox merges into the one with its id (or is
    added); any other value replaces the option's."""
    for key, value in extra.items():
        if key == "seedboxes" and isinstance(value, list) and isinstance(base.get(key), list):
            by_id = {sb["id"]: sb for sb in base["seedboxes"]}
            for sb in value:
                if isinstance(sb, dict) and sb.get("id") in by_id:
                    _merge(by_id[sb["id"]], sb)
                else:
                    base["seedboxes"].append(sb)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _extra(path: str) -> dict[str, Any]:
    where = f"extra_config: {path}"
    try:
        extra = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise AddonError([f"{where}: cannot read: {err.strerror}"]) from None
    except yaml.YAMLError as err:
        raise AddonError([f"{where}: not valid YAML: {err}"]) from None
    if not isinstance(extra, dict):
        raise AddonError([f"{where}: the top level must be a mapping of bridge settings"])
    broker = extra.get("broker")
    reserved = [k for k in ("data_dir", "bridge") if k in extra]
    if isinstance(broker, dict) and "topic_prefix" in broker:
        reserved.append("broker.topic_prefix")
    if reserved:
        raise AddonError(
            [f"{where}: {', '.join(reserved)} come from the add-on (discovery needs them)"]
        )
    return extra


def build(options: dict[str, Any], mqtt: MqttService | None, data: Path) -> Plan:
    """The bridge configuration for checked options; `data` is the add-on's /data."""
    plan = Plan(
        config={
            "bridge": {"id": options["bridge_id"]},
            "data_dir": str(data / "bridge"),
            "seedboxes": [],
            "destinations": {d["name"]: {"path": d["path"]} for d in options["destinations"]},
            "log_level": options["log_level"].upper(),
        }
    )
    if "bridge_name" in options:
        plan.config["bridge"]["name"] = options["bridge_name"]
    _broker(options, mqtt, data, plan)
    errors: list[str] = []
    for i, sb in enumerate(options["seedboxes"]):
        _seedbox(sb, data, plan, errors, i)
    if errors:
        raise AddonError(errors)
    if "default_destination" in options:
        plan.config["default_destination"] = options["default_destination"]
    plan.config["rules"] = [_rule(r) for r in options["rules"]]
    transfers = {
        k: options[k]
        for k in ("max_concurrent", "bandwidth_limit", "min_free_space")
        if k in options
    }
    if transfers:
        plan.config["transfers"] = transfers
    if "extra_config" in options:
        _merge(plan.config, _extra(options["extra_config"]))
    return plan
