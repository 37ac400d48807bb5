"""The seedbox config: one INI file shared by the hook and the label daemon.

Secrets (MQTT and torrent-client passwords) never reach a log line or an error message:
the dataclasses keep them out of their repr, and errors name the key, not its value.
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_VAR = "Q4D_SEEDBOX_CONFIG"
DEFAULT_PATH = "~/.config/q4d/seedbox.conf"
DEFAULT_OUTBOX = "~/.local/state/q4d/outbox"
DEFAULT_LOG = "~/.local/state/q4d/hook.log"

# The bridge's rules for seedbox ids and topic names, so a config accepted here is one
# the bridge can route; topics also refuse control characters (an outbox file keeps the
# topic on its first line, and INI values can span lines).
SEEDBOX_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
TOPIC = re.compile(r"[^#+\x00-\x1f]+")

CLIENTS = ("qbittorrent", "transmission", "deluge", "rtorrent")
DEFAULT_URLS = {
    "qbittorrent": "http://127.0.0.1:8080",
    "transmission": "http://127.0.0.1:9091/transmission/rpc",
    "deluge": "http://127.0.0.1:8112/json",
}
# Which label mechanisms each client has. Deluge's Label plugin allows one label per
# torrent, which Sonarr/Radarr also use as their category, so it is only offered as
# "category" and has to be chosen knowingly; Transmission labels are tags already.
MODES = {
    "qbittorrent": ("tag", "category"),
    "transmission": ("tag",),
    "deluge": ("category",),
    "rtorrent": ("tag", "category"),
}


class ConfigError(Exception):
    """The config file is missing or invalid; the message says which key and why."""


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    seedbox_id: str
    topic_prefix: str = "q4d"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_certs: str | None = None
    keepalive: int = 30
    client_id: str = ""
    session_expiry: int = 7 * 24 * 3600

    @property
    def completed_topic(self) -> str:
        return f"{self.topic_prefix}/seedbox/{self.seedbox_id}/completed"

    @property
    def label_topic(self) -> str:
        return f"{self.topic_prefix}/seedbox/{self.seedbox_id}/label"

    @property
    def sequence_topic(self) -> str:
        return f"{self.topic_prefix}/seedbox/{self.seedbox_id}/sequence"


@dataclass(frozen=True)
class HookConfig:
    outbox: Path
    log_file: Path | None
    types_config: Path | None = None
    default_type: str | None = None
    timeout: float = 5.0
    classic: bool = False
    down_topic: str = "Down"


@dataclass(frozen=True)
class LabelsConfig:
    client: str
    url: str
    mode: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    label_prefix: str = "q4d:"
    subscribe_classic: bool = False
    classic_topic: str = "Label"
    timeout: float = 10.0

    def label_name(self, label: str) -> str:
        """`QUEUED` -> `q4d:QUEUED`: the name a label gets in the torrent client."""
        return self.label_prefix + label


@dataclass(frozen=True)
class Config:
    path: Path
    mqtt: MqttConfig
    hook: HookConfig
    labels: LabelsConfig | None
    warnings: tuple[str, ...] = ()


def config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(explicit or env.get(ENV_VAR) or DEFAULT_PATH).expanduser()


def _expand(value: str) -> Path:
    return Path(os.path.expandvars(value)).expanduser()


def _exposed(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


class _Reader:
    """configparser with typed getters that collect every problem before failing."""

    def __init__(self, parser: configparser.ConfigParser) -> None:
        self.parser = parser
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def text(self, section: str, key: str, default: str | None = None) -> str | None:
        value = self.parser.get(section, key, fallback=None)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def required(self, section: str, key: str) -> str:
        value = self.text(section, key)
        if value is None:
            self.errors.append(f"[{section}] {key} is required")
            return ""
        return value

    def number(self, section: str, key: str, default: float, minimum: float = 0.0) -> float:
        raw = self.text(section, key)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.errors.append(f"[{section}] {key} must be a number")
            return default
        if not value > minimum:
            self.errors.append(f"[{section}] {key} must be greater than {minimum:g}")
            return default
        return value

    def integer(self, section: str, key: str, default: int, low: int, high: int) -> int:
        raw = self.text(section, key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.errors.append(f"[{section}] {key} must be an integer")
            return default
        if not low <= value <= high:
            self.errors.append(f"[{section}] {key} must be between {low} and {high}")
            return default
        return value

    def flag(self, section: str, key: str, default: bool) -> bool:
        if self.text(section, key) is None:
            return default
        try:
            return self.parser.getboolean(section, key)
        except ValueError:
            self.errors.append(f"[{section}] {key} must be true or false")
            return default

    def topic(self, section: str, key: str, default: str) -> str:
        value = (self.text(section, key) or default).strip("/")
        if not value or not TOPIC.fullmatch(value):
            self.errors.append(f"[{section}] {key} must be a topic without '+', '#' or NUL")
        return value

    def secret(self, section: str, key: str) -> str | None:
        """`key` inline, or `key_file` holding it (first line); never echoed back."""
        inline = self.text(section, key)
        file_key = f"{key}_file"
        file_name = self.text(section, file_key)
        if inline is not None and file_name is not None:
            self.errors.append(f"[{section}] set {key} or {file_key}, not both")
            return None
        if file_name is None:
            return inline
        path = _expand(file_name)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            self.errors.append(
                f"[{section}] {file_key}: cannot read {path}: {err.__class__.__name__}"
            )
            return None
        if _exposed(path):
            self.warnings.append(
                f"{path} ({section} {file_key}) is readable by group/others; chmod 600 it"
            )
        return lines[0] if lines else ""


def load(path: Path) -> Config:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path} (set --config or {ENV_VAR})") from None
    except (OSError, UnicodeDecodeError, configparser.Error) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    reader = _Reader(parser)
    for section in ("mqtt", "hook"):
        if not parser.has_section(section):
            parser.add_section(section)
    mqtt = _mqtt(reader)
    hook = _hook(reader)
    labels = _labels(reader) if parser.has_section("labels") else None
    has_secret = any(
        parser.get(s, k, fallback=None) for s, k in (("mqtt", "password"), ("labels", "password"))
    )
    if has_secret and _exposed(path):
        reader.warnings.append(
            f"{path} holds a password and is readable by group/others; chmod 600 it"
        )
    if reader.errors:
        raise ConfigError(f"{path}: " + "; ".join(reader.errors))
    return Config(path, mqtt, hook, labels, tuple(reader.warnings))


def _mqtt(r: _Reader) -> MqttConfig:
    tls = r.flag("mqtt", "tls", False)
    seedbox_id = r.required("mqtt", "seedbox_id")
    if seedbox_id and not SEEDBOX_ID.fullmatch(seedbox_id):
        r.errors.append(
            "[mqtt] seedbox_id must be lowercase letters, digits, '-' or '_' (max 63), "
            "the same id as in the bridge's seedboxes[].id"
        )
    ca_certs = r.text("mqtt", "ca_certs")
    return MqttConfig(
        host=r.required("mqtt", "host"),
        port=r.integer("mqtt", "port", 8883 if tls else 1883, 1, 65535),
        seedbox_id=seedbox_id,
        topic_prefix=r.topic("mqtt", "topic_prefix", "q4d"),
        username=r.text("mqtt", "username"),
        password=r.secret("mqtt", "password"),
        tls=tls,
        ca_certs=str(_expand(ca_certs)) if ca_certs else None,
        keepalive=r.integer("mqtt", "keepalive", 30, 5, 3600),
        client_id=r.text("mqtt", "client_id") or f"q4d-labeld-{seedbox_id}",
        session_expiry=r.integer("mqtt", "session_expiry", 7 * 24 * 3600, 60, 0xFFFFFFFF),
    )


def _hook(r: _Reader) -> HookConfig:
    types_config = r.text("hook", "types_config")
    log_file = r.text("hook", "log_file", DEFAULT_LOG)
    return HookConfig(
        outbox=_expand(r.text("hook", "outbox", DEFAULT_OUTBOX) or DEFAULT_OUTBOX),
        # "log_file = none" turns the file log off (stderr is still written).
        log_file=None if log_file is None or log_file.lower() == "none" else _expand(log_file),
        types_config=_expand(types_config) if types_config else None,
        default_type=r.text("hook", "default_type"),
        timeout=r.number("hook", "timeout", 5.0),
        classic=r.flag("hook", "classic", False),
        down_topic=r.topic("hook", "down_topic", "Down"),
    )


def _labels(r: _Reader) -> LabelsConfig:
    client = (r.required("labels", "client") or "").lower()
    if client and client not in CLIENTS:
        r.errors.append(f"[labels] client must be one of {', '.join(CLIENTS)}")
    modes = MODES.get(client, ("tag",))
    mode = (r.text("labels", "mode") or modes[0]).lower()
    if mode not in modes:
        why = {
            "deluge": "Deluge has one label per torrent (no tags); set mode = category, "
            "knowing it replaces the label Sonarr/Radarr use",
            "transmission": "Transmission labels are tags; use mode = tag",
        }.get(client, "use tag or category")
        r.errors.append(f"[labels] mode {mode!r} is not available for {client}: {why}")
    url = r.text("labels", "url") or DEFAULT_URLS.get(client)
    if url is None:
        r.errors.append(f"[labels] url is required for {client}")
    elif not re.match(r"^(https?|scgi)://" if client == "rtorrent" else r"^https?://", url):
        also = ", or scgi:// for rTorrent's SCGI socket" if client == "rtorrent" else ""
        r.errors.append(f"[labels] url must start with http:// or https://{also}")
    # An explicitly empty label_prefix gives Q4D's bare QUEUED/DONE/FAILED names.
    prefix = r.parser.get("labels", "label_prefix", fallback="q4d:").strip()
    if "," in prefix:
        r.errors.append(
            "[labels] label_prefix must not contain ',' (tag lists are comma-separated)"
        )
    return LabelsConfig(
        client=client,
        url=url or "",
        mode=mode,
        username=r.text("labels", "username"),
        password=r.secret("labels", "password"),
        label_prefix=prefix,
        subscribe_classic=r.flag("labels", "subscribe_classic", False),
        classic_topic=r.topic("labels", "classic_topic", "Label"),
        timeout=r.number("labels", "timeout", 10.0),
    )
