"""Bridge configuration: one YAML file, validated with voluptuous, `Q4D_*` overrides.

Errors name the key path (`seedboxes[0].port`) and the reason, so `check-config` and a
failing `run` print the same actionable message.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

from .rules import (
    RULE_FIELDS,
    SIZE_OPS,
    STRING_OPS,
    Condition,
    Routing,
    Rule,
    TypeRule,
    TypesConfigError,
    check_subdir_template,
    load_types_config,
)

ENV_PREFIX = "Q4D_"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
TOPIC_PREFIX_PATTERN = r"^[^#+\x00]+$"
TRANSFER_ENGINES = ("lftp", "sftp", "rsync")
ENGINES = ("auto", *TRANSFER_ENGINES)
CLIENT_TYPES = ("qbittorrent",)
DEFAULT_HOOK_FLUSH = "~/.local/bin/q4d-hook flush"


class ConfigError(Exception):
    """The configuration is invalid; `errors` holds one `path: reason` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# --- validators ------------------------------------------------------------------------


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(ID_PATTERN, value):
        raise vol.Invalid("must be lowercase letters, digits, '-' or '_' (max 63), e.g. 'seedbox1'")
    return value


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise vol.Invalid(f"must be an absolute path, got {value!r}")
    return value


def _existing_file(value: Any) -> str:
    path = _absolute_path(value)
    if not Path(path).is_file():
        raise vol.Invalid(f"file not found: {path}")
    return path


def _torrent_file_template(value: Any) -> str:
    """Where the seedbox keeps a torrent's .torrent: `{hash}` (lowercase) or `{HASH}`."""
    path = _absolute_path(value)
    if "{hash}" not in path and "{HASH}" not in path:
        raise vol.Invalid("must contain {hash} or {HASH}, e.g. /home/me/.session/{HASH}.torrent")
    try:
        path.format(hash="0", HASH="0")
    except (KeyError, IndexError, ValueError) as err:
        raise vol.Invalid(f"only {{hash}} and {{HASH}} may appear in braces: {err}") from err
    return path


def _duration(value: Any) -> float:
    """Seconds as a number, or a string like `90s`, `15m`, `6h`, `7d`."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a duration like 30s, 15m, 6h or 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise vol.Invalid("duration must not be negative")
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value))
    if not match:
        raise vol.Invalid(f"expected a duration like 30s, 15m, 6h or 7d, got {value!r}")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor


def _size(value: Any) -> int:
    """Bytes as an integer, or a string like `512KiB`, `8MiB`, `1GiB`."""
    if isinstance(value, bool):
        raise vol.Invalid("expected a size like 256KiB or 8MiB")
    if isinstance(value, int):
        if value < 0:
            raise vol.Invalid("size must not be negative")
        return value
    match = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB|TiB)?\s*", str(value))
    if not match:
        raise vol.Invalid(f"expected a size like 256KiB or 8MiB, got {value!r}")
    factor = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}[
        match.group(2)
    ]
    return int(match.group(1)) * factor


def _mode(owner: int) -> Any:
    """Permission bits as octal (`"0644"`, or YAML's 0644), at most 0777, that keep the
    `owner` bits the bridge needs to replace and repair what it landed."""

    def validate(value: Any) -> int:
        if isinstance(value, bool):
            raise vol.Invalid("expected permission bits like 0644")
        if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value.strip()):
            value = int(value.strip(), 8)
        if not isinstance(value, int) or not 0 <= value <= 0o777:
            raise vol.Invalid(f"expected permission bits like 0644 (at most 0777), got {value!r}")
        if value & owner != owner:
            raise vol.Invalid(f"must keep the owner's bits {owner:04o}, got {value:04o}")
        return value

    return validate


def _text(value: Any) -> str:
    """A string; a bare number also counts, since Q4D_BROKER__PASSWORD=123456 reads as one."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise vol.Invalid("expected a string")


def _regex(value: Any) -> str:
    try:
        re.compile(str(value))
    except re.error as err:
        raise vol.Invalid(f"invalid regular expression: {err}") from err
    return str(value)


def _subdir(value: str) -> str:
    try:
        return check_subdir_template(value)
    except ValueError as err:
        raise vol.Invalid(str(err)) from err


def _condition(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise vol.Invalid("a condition is a mapping like {field: category, is: tv}")
    field_ = value.get("field")
    if field_ not in RULE_FIELDS:
        raise vol.Invalid(f"field must be one of {', '.join(RULE_FIELDS)}, got {field_!r}")
    ops = [k for k in value if k != "field"]
    allowed = SIZE_OPS if field_ == "size" else STRING_OPS
    if len(ops) != 1 or ops[0] not in allowed:
        raise vol.Invalid(f"a {field_} condition needs exactly one of {', '.join(allowed)}")
    op = ops[0]
    if field_ == "size":
        return {"field": field_, "op": op, "value": vol.Coerce(int)(value[op])}
    operand = str(value[op])
    if op == "regex":
        _regex(operand)
    return {"field": field_, "op": op, "value": operand}


TLS_SCHEMA = vol.Schema(
    {
        vol.Optional("ca_certs"): _existing_file,
        vol.Optional("certfile"): _existing_file,
        vol.Optional("keyfile"): _existing_file,
        vol.Optional("insecure", default=False): bool,
    }
)

BROKER_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default="localhost"): str,
        vol.Optional("port", default=1883): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Optional("username"): _text,
        vol.Optional("password"): _text,
        vol.Optional("tls", default=False): vol.Any(bool, TLS_SCHEMA),
        vol.Optional("client_id"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Optional("topic_prefix", default="q4d"): vol.All(str, vol.Match(TOPIC_PREFIX_PATTERN)),
        vol.Optional("keepalive", default=30): vol.All(int, vol.Range(min=5, max=3600)),
        vol.Optional("session_expiry", default="7d"): _duration,
    }
)

CLIENT_SCHEMA = vol.Schema(
    {
        vol.Required("type"): vol.In(CLIENT_TYPES),
        vol.Required("url"): vol.All(str, vol.Match(r"^https?://", msg="must be an http(s) URL")),
        vol.Optional("username"): _text,
        vol.Optional("password"): _text,
        vol.Optional("verify_tls", default=True): bool,
        # how often free space, rates and active downloads are read for the state
        vol.Optional("poll_interval", default="30s"): vol.All(_duration, vol.Range(min=1)),
    }
)

RECONCILE_SCHEMA = vol.Schema(
    {
        # 0 turns the periodic pass off; the rescan command still runs one
        vol.Optional("interval", default="15m"): _duration,
        # only torrents completed this recently: older ones may have had items pruned
        vol.Optional("max_age", default="3d"): vol.All(_duration, vol.Range(min=60)),
        vol.Optional("categories", default=list): [str],
        vol.Optional("tags", default=list): [str],
    }
)

SEEDBOX_SCHEMA = vol.Schema(
    {
        vol.Required("id"): _identifier,
        vol.Optional("name"): str,
        vol.Required("host"): vol.All(str, vol.Length(min=1)),
        vol.Optional("port", default=22): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Required("user"): vol.All(str, vol.Match(r"^[A-Za-z0-9._][A-Za-z0-9._-]*\Z")),
        vol.Required("key"): _existing_file,
        # Not required with trust_on_first_use: the first key seen is pinned there.
        vol.Optional("known_hosts"): _absolute_path,
        vol.Optional("trust_on_first_use", default=False): bool,
        vol.Optional("remote_roots", default=list): [_absolute_path],
        vol.Optional("max_concurrent", default=2): vol.All(int, vol.Range(min=1, max=64)),
        vol.Optional("engine", default="auto"): vol.In(ENGINES),
        vol.Optional("torrent_file"): _torrent_file_template,
        vol.Optional("client"): CLIENT_SCHEMA,
        vol.Optional("reconcile", default=dict): RECONCILE_SCHEMA,
        # run on the seedbox each time the bridge connects: resends the hook's outbox
        vol.Optional("hook_flush", default=DEFAULT_HOOK_FLUSH): str,
        # "no exposed ports": the seedbox reaches the home broker through this SSH link
        vol.Optional("broker_forward"): vol.Schema(
            {vol.Required("port"): vol.All(int, vol.Range(min=1, max=65535))}
        ),
    }
)

RULE_SCHEMA = vol.Schema(
    {
        vol.Required("destination"): str,
        vol.Optional("match", default=list): [_condition],
        vol.Optional("subdir"): vol.All(str, vol.Length(min=1), _subdir),
        vol.Optional("engine"): vol.In(TRANSFER_ENGINES),
    }
)

LFTP_SCHEMA = vol.Schema(
    {
        vol.Optional("segments", default=4): vol.All(int, vol.Range(min=1, max=64)),
        vol.Optional("parallel_files", default=4): vol.All(int, vol.Range(min=1, max=64)),
        vol.Optional("max_packets_in_flight", default=64): vol.All(int, vol.Range(min=1, max=1024)),
        vol.Optional("binary", default="lftp"): str,
    }
)

RSYNC_SCHEMA = vol.Schema({vol.Optional("binary", default="rsync"): str})

SFTP_SCHEMA = vol.Schema(
    {
        # More connections ramp up faster after idle (each starts TCP at a small window).
        vol.Optional("connections", default=6): vol.All(int, vol.Range(min=1, max=32)),
        # the unit of resume: a kill -9 re-fetches the chunks a connection was reading
        vol.Optional("chunk_size", default="1MiB"): vol.All(
            _size, vol.Range(min=64 * 1024, msg="must be at least 64KiB")
        ),
        vol.Optional("window", default="16MiB"): vol.All(
            _size, vol.Range(min=64 * 1024, max=1024**3, msg="must be between 64KiB and 1GiB")
        ),
        # read requests in flight per connection, across chunk and file boundaries
        vol.Optional("max_requests", default=12): vol.All(int, vol.Range(min=1, max=1024)),
        # 0: the server's own limit (OpenSSH advertises 255 KiB).
        vol.Optional("block_size", default=0): vol.All(_size, vol.Range(max=4 * 1024**2)),
    }
)

TRANSFERS_SCHEMA = vol.Schema(
    {
        vol.Optional("max_concurrent", default=2): vol.All(int, vol.Range(min=1, max=256)),
        vol.Optional("max_attempts", default=5): vol.All(int, vol.Range(min=1, max=100)),
        vol.Optional("retry_initial", default="1s"): _duration,
        vol.Optional("retry_max", default="15m"): _duration,
        vol.Optional("nice", default=10): vol.All(int, vol.Range(min=0, max=19)),
        # bytes per second over all transfers; 0 = unlimited (changeable at runtime)
        vol.Optional("bandwidth_limit", default=0): _size,
        vol.Optional("stall_timeout", default="2m"): vol.All(_duration, vol.Range(min=1)),
        vol.Optional("min_free_space", default="1GiB"): _size,
        vol.Optional("space_recheck", default="1m"): vol.All(_duration, vol.Range(min=1)),
        vol.Optional("breaker_failures", default=5): vol.All(int, vol.Range(min=1, max=1000)),
        vol.Optional("breaker_cooldown", default="5m"): vol.All(_duration, vol.Range(min=1)),
        vol.Optional("lftp", default=dict): LFTP_SCHEMA,
        vol.Optional("sftp", default=dict): SFTP_SCHEMA,
        vol.Optional("rsync", default=dict): RSYNC_SCHEMA,
        # Piece-hash verification when the .torrent can be had; repairs re-fetch only the
        # bad pieces' byte ranges, and after max_repairs the item fails.
        vol.Optional("verify", default=True): bool,
        vol.Optional("max_repairs", default=2): vol.All(int, vol.Range(min=0, max=20)),
        # What landed files and folders get (minus the process umask); never the
        # seedbox's modes, which could make a private file world-readable at home.
        vol.Optional("file_mode", default="0644"): _mode(0o600),
        vol.Optional("dir_mode", default="0755"): _mode(0o700),
    }
)

CLASSIC_SCHEMA = vol.Schema(
    {
        vol.Optional("enabled", default=False): bool,
        vol.Optional("down_topic", default="Down"): vol.All(str, vol.Match(TOPIC_PREFIX_PATTERN)),
        vol.Optional("label_topic", default="Label"): vol.All(str, vol.Match(TOPIC_PREFIX_PATTERN)),
        vol.Optional("seedbox"): _identifier,
    }
)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Required("bridge"): vol.Schema(
            {vol.Required("id"): _identifier, vol.Optional("name"): str}
        ),
        vol.Required("data_dir"): _absolute_path,
        vol.Optional("broker", default=dict): BROKER_SCHEMA,
        vol.Required("seedboxes"): vol.All([SEEDBOX_SCHEMA], vol.Length(min=1)),
        vol.Required("destinations"): vol.All(
            vol.Schema({_identifier: _absolute_path}), vol.Length(min=1)
        ),
        vol.Optional("default_destination"): _identifier,
        vol.Optional("rules", default=list): [RULE_SCHEMA],
        vol.Optional("types_config"): _existing_file,
        vol.Optional("default_type"): str,
        vol.Optional("type_codes", default=dict): vol.Schema({str: _identifier}),
        vol.Optional("transfers", default=dict): TRANSFERS_SCHEMA,
        vol.Optional("classic", default=dict): CLASSIC_SCHEMA,
        vol.Optional("history_retention", default="7d"): _duration,
        vol.Optional("log_level", default="INFO"): vol.All(
            vol.Upper, vol.In(["DEBUG", "INFO", "WARNING", "ERROR"])
        ),
    }
)


# --- typed result ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TlsConfig:
    ca_certs: str | None
    certfile: str | None
    keyfile: str | None
    insecure: bool


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: TlsConfig | None
    client_id: str
    topic_prefix: str
    keepalive: int
    session_expiry: float

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        return (
            f"BrokerConfig(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={'***' if self.password else None}, tls={self.tls is not None}, "
            f"client_id={self.client_id!r}, topic_prefix={self.topic_prefix!r})"
        )


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The seedbox's torrent client Web API (for .torrent export, and nodes)."""

    type: str
    url: str
    username: str | None
    password: str | None
    verify_tls: bool
    poll_interval: float = 30.0

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        return (
            f"ClientConfig(type={self.type!r}, url={self.url!r}, username={self.username!r}, "
            f"password={'***' if self.password else None})"
        )


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    """Asking the torrent client for completed torrents the bridge never heard of."""

    interval: float = 900.0
    max_age: float = 3 * 86400.0
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SeedboxConfig:
    id: str
    name: str
    host: str
    port: int
    user: str
    key: str
    known_hosts: str
    remote_roots: tuple[str, ...]
    max_concurrent: int
    engine: str
    trust_on_first_use: bool = False
    torrent_file: str | None = None
    client: ClientConfig | None = None
    reconcile: ReconcileConfig = ReconcileConfig()
    hook_flush: str = ""  # empty: nothing runs on connect
    broker_forward_port: int | None = None


@dataclass(frozen=True, slots=True)
class LftpConfig:
    segments: int
    parallel_files: int
    max_packets_in_flight: int
    binary: str


@dataclass(frozen=True, slots=True)
class RsyncConfig:
    binary: str


@dataclass(frozen=True, slots=True)
class SftpConfig:
    connections: int
    chunk_size: int
    window: int
    max_requests: int
    block_size: int


@dataclass(frozen=True, slots=True)
class TransfersConfig:
    max_concurrent: int
    max_attempts: int
    retry_initial: float
    retry_max: float
    nice: int
    bandwidth_limit: int
    stall_timeout: float
    min_free_space: int
    space_recheck: float
    breaker_failures: int
    breaker_cooldown: float
    lftp: LftpConfig
    sftp: SftpConfig
    rsync: RsyncConfig
    verify: bool
    max_repairs: int
    file_mode: int
    dir_mode: int


@dataclass(frozen=True, slots=True)
class ClassicConfig:
    enabled: bool
    down_topic: str
    label_topic: str
    seedbox: str


@dataclass(frozen=True, slots=True)
class Config:
    bridge_id: str
    bridge_name: str
    data_dir: Path
    broker: BrokerConfig
    seedboxes: Mapping[str, SeedboxConfig]
    routing: Routing
    transfers: TransfersConfig
    classic: ClassicConfig
    history_retention: float
    log_level: str


# --- loading -----------------------------------------------------------------------------


def _format_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    """`Q4D_BROKER__HOST=x` sets broker.host; values are read as YAML scalars."""
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == "Q4D_CONFIG":
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"{key}: cannot override {'.'.join(path)}, it is not a mapping"])
            node = child
        node[path[-1]] = yaml.safe_load(value) if value else value


def _read_secret_files(raw: dict[str, Any], errors: list[str]) -> None:
    """`password_file: /run/secrets/x` fills `password` from the file (container secrets),
    for the broker and for each seedbox's torrent client."""
    sections: list[tuple[str, Any]] = [("broker", raw.get("broker"))]
    seedboxes = raw.get("seedboxes")
    if isinstance(seedboxes, list):
        sections += [
            (f"seedboxes[{i}].client", sb.get("client"))
            for i, sb in enumerate(seedboxes)
            if isinstance(sb, dict)
        ]
    for where, section in sections:
        if not isinstance(section, dict) or "password_file" not in section:
            continue
        path = section.pop("password_file")
        try:
            section["password"] = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as err:
            errors.append(f"{where}.password_file: cannot read {path}: {err.strerror}")


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror}"]) from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"]) from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys"])
    return parse_config(raw, environ)


def parse_config(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    errors: list[str] = []
    _apply_env(raw, environ or {})
    _read_secret_files(raw, errors)
    if errors:
        raise ConfigError(errors)
    try:
        data = CONFIG_SCHEMA(raw)
    except vol.MultipleInvalid as err:
        raise ConfigError(sorted({f"{_format_path(e.path)}: {e.msg}" for e in err.errors})) from err
    return _build(data)


def _build(data: dict[str, Any]) -> Config:
    errors: list[str] = []
    destinations = {name: Path(p) for name, p in data["destinations"].items()}
    default_destination = data.get("default_destination") or (
        "default" if "default" in destinations else next(iter(destinations))
    )
    if default_destination not in destinations:
        errors.append(f"default_destination: {default_destination!r} is not in destinations")
    for i, rule in enumerate(data["rules"]):
        if rule["destination"] not in destinations:
            errors.append(f"rules[{i}].destination: {rule['destination']!r} is not in destinations")
    for code, dest in data["type_codes"].items():
        if dest not in destinations:
            errors.append(f"type_codes.{code}: {dest!r} is not in destinations")

    tools = {name: data["transfers"][name]["binary"] for name in ("lftp", "rsync")}
    installed = {name for name, binary in tools.items() if shutil.which(binary)} | {"sftp"}
    for i, rule in enumerate(data["rules"]):
        if rule.get("engine", "sftp") not in installed:
            errors.append(f"rules[{i}].engine: {rule['engine']} is not installed")
    seedboxes: dict[str, SeedboxConfig] = {}
    for i, sb in enumerate(data["seedboxes"]):
        engine = sb["engine"]
        if engine == "auto":
            engine = "lftp" if "lftp" in installed else "sftp"
        elif engine not in installed:
            errors.append(f"seedboxes[{i}].engine: {engine} is not installed (use sftp or auto)")
        known_hosts = sb.get("known_hosts")
        if known_hosts is None and sb["trust_on_first_use"]:
            known_hosts = str(Path(data["data_dir"]) / "known_hosts" / sb["id"])
        elif known_hosts is None:
            errors.append(
                f"seedboxes[{i}].known_hosts: required (a file pinning the seedbox's host key),"
                " unless trust_on_first_use: true pins the first key seen"
            )
        elif not sb["trust_on_first_use"] and not Path(known_hosts).is_file():
            errors.append(f"seedboxes[{i}].known_hosts: file not found: {known_hosts}")
        client = sb.get("client")
        if sb["id"] in seedboxes:
            errors.append(f"seedboxes[{i}].id: duplicate seedbox id {sb['id']!r}")
        seedboxes[sb["id"]] = SeedboxConfig(
            id=sb["id"],
            name=sb.get("name", sb["id"]),
            host=sb["host"],
            port=sb["port"],
            user=sb["user"],
            key=sb["key"],
            known_hosts=known_hosts or "",
            remote_roots=tuple(sb["remote_roots"]),
            max_concurrent=sb["max_concurrent"],
            engine=engine,
            trust_on_first_use=sb["trust_on_first_use"],
            torrent_file=sb.get("torrent_file"),
            client=ClientConfig(
                type=client["type"],
                url=client["url"],
                username=client.get("username"),
                password=client.get("password"),
                verify_tls=client["verify_tls"],
                poll_interval=client["poll_interval"],
            )
            if client
            else None,
            hook_flush=sb["hook_flush"].strip(),
            broker_forward_port=sb["broker_forward"]["port"] if "broker_forward" in sb else None,
            reconcile=ReconcileConfig(
                interval=sb["reconcile"]["interval"],
                max_age=sb["reconcile"]["max_age"],
                categories=tuple(sb["reconcile"]["categories"]),
                tags=tuple(sb["reconcile"]["tags"]),
            ),
        )

    types_rules: tuple[TypeRule, ...] = ()
    if "types_config" in data:
        try:
            types_rules = load_types_config(Path(data["types_config"]))
        except (OSError, TypesConfigError) as err:
            errors.append(f"types_config: {err}")

    classic_raw = data["classic"]
    classic_seedbox = classic_raw.get("seedbox") or data["seedboxes"][0]["id"]
    if classic_raw["enabled"] and classic_seedbox not in seedboxes:
        errors.append(f"classic.seedbox: {classic_seedbox!r} is not a configured seedbox")
    if errors:
        raise ConfigError(errors)

    broker = data["broker"]
    tls_raw = broker["tls"]
    tls: TlsConfig | None = None
    if tls_raw is True or isinstance(tls_raw, dict):
        tls_map: dict[str, Any] = tls_raw if isinstance(tls_raw, dict) else {}
        tls = TlsConfig(
            ca_certs=tls_map.get("ca_certs"),
            certfile=tls_map.get("certfile"),
            keyfile=tls_map.get("keyfile"),
            insecure=tls_map.get("insecure", False),
        )
    transfers = data["transfers"]
    return Config(
        bridge_id=data["bridge"]["id"],
        bridge_name=data["bridge"].get("name", data["bridge"]["id"]),
        data_dir=Path(data["data_dir"]),
        broker=BrokerConfig(
            host=broker["host"],
            port=broker["port"],
            username=broker.get("username"),
            password=broker.get("password"),
            tls=tls,
            client_id=broker.get("client_id") or f"q4d-bridge-{data['bridge']['id']}",
            topic_prefix=broker["topic_prefix"].strip("/"),
            keepalive=broker["keepalive"],
            session_expiry=broker["session_expiry"],
        ),
        seedboxes=seedboxes,
        routing=Routing(
            rules=tuple(
                Rule(
                    destination=r["destination"],
                    conditions=tuple(Condition(**c) for c in r["match"]),
                    subdir=r.get("subdir"),
                    engine=r.get("engine"),
                )
                for r in data["rules"]
            ),
            destinations=destinations,
            type_codes=dict(data["type_codes"]),
            default_destination=default_destination,
            types_rules=types_rules,
            default_type=data.get("default_type", "V" if types_rules else None),
        ),
        transfers=TransfersConfig(
            max_concurrent=transfers["max_concurrent"],
            max_attempts=transfers["max_attempts"],
            retry_initial=transfers["retry_initial"],
            retry_max=transfers["retry_max"],
            nice=transfers["nice"],
            bandwidth_limit=transfers["bandwidth_limit"],
            stall_timeout=transfers["stall_timeout"],
            min_free_space=transfers["min_free_space"],
            space_recheck=transfers["space_recheck"],
            breaker_failures=transfers["breaker_failures"],
            breaker_cooldown=transfers["breaker_cooldown"],
            lftp=LftpConfig(**transfers["lftp"]),
            sftp=SftpConfig(**transfers["sftp"]),
            rsync=RsyncConfig(**transfers["rsync"]),
            verify=transfers["verify"],
            max_repairs=transfers["max_repairs"],
            file_mode=transfers["file_mode"],
            dir_mode=transfers["dir_mode"],
        ),
        classic=ClassicConfig(
            enabled=classic_raw["enabled"],
            down_topic=classic_raw["down_topic"],
            label_topic=classic_raw["label_topic"],
            seedbox=classic_seedbox,
        ),
        history_retention=data["history_retention"],
        log_level=data["log_level"],
    )
