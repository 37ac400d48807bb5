"""The validated configuration, typed: what the rest of the bridge reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..models import Item
from ..rules import Routing


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
class ClientDispatch:
    """Whether and how a seedbox's client takes new torrents (docs/dispatch.md)."""

    enabled: bool = True
    weight: float = 1.0
    min_free: int = 50 * 1024**3
    max_downloads: int = 50
    save_path: str | None = None


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    disk_weight: float = 1.0
    download_weight: float = 2.0
    bandwidth_weight: float = 0.1
    min_score: float = -1.0
    size_estimate: int = 10 * 1024**3
    history: int = 200
    categories: tuple[str, ...] = ()
    watch_interval: float = 5.0
    fetch_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The seedbox's torrent client Web API (for .torrent export, and nodes)."""

    type: str
    url: str
    username: str | None
    password: str | None
    verify_tls: bool
    poll_interval: float = 30.0
    dispatch: ClientDispatch = ClientDispatch()

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
    key: str | None  # None: log in by password
    known_hosts: str
    remote_roots: tuple[str, ...]
    max_concurrent: int
    engine: str
    trust_on_first_use: bool = False
    # repr=False keeps them out of logs and tracebacks
    password: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
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
    max_connections: int
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
    stream_verify: bool = True


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The HTTP API: the qBittorrent-compatible download client for the *arr apps."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8090
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    admin_key: str | None = None
    session_lifetime: float = 3600.0
    on_delete: str = "remove"  # or "keep_seeding"
    delete_seedbox_data: bool = True
    delete_home_copy: bool = False

    def __repr__(self) -> str:  # keeps the secrets out of logs and tracebacks
        def hidden(secret: str | None) -> str | None:
            return "***" if secret else None

        return (
            f"ApiConfig(enabled={self.enabled}, host={self.host!r}, port={self.port}, "
            f"username={self.username!r}, password={hidden(self.password)}, "
            f"api_key={hidden(self.api_key)}, admin_key={hidden(self.admin_key)}, "
            f"on_delete={self.on_delete!r})"
        )


@dataclass(frozen=True, slots=True)
class ArrConfig:
    """A Sonarr or Radarr instance the arr_import step calls."""

    type: str
    url: str
    api_key: str
    timeout: float = 30.0
    # local path prefix -> the same folder as the app sees it (docs/post-processing.md)
    path_map: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # keeps the key out of logs and tracebacks
        return f"ArrConfig(type={self.type!r}, url={self.url!r}, api_key='***')"


@dataclass(frozen=True, slots=True)
class HomeClientConfig:
    """A torrent client at home that a hand-off gives landed payloads to."""

    type: str
    url: str
    username: str | None = None
    password: str | None = None
    verify_tls: bool = True
    recheck_timeout: float = 6 * 3600.0

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        return (
            f"HomeClientConfig(type={self.type!r}, url={self.url!r}, "
            f"username={self.username!r}, password={'***' if self.password else None})"
        )


@dataclass(frozen=True, slots=True)
class ClassicConfig:
    enabled: bool
    down_topic: str
    label_topic: str
    seedbox: str
    labels: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    """In a running bridge `seedboxes` and `routing` are live: Bridge.apply changes them
    in place (live.py) and every part reads them at each use. The rest is fixed at start."""

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
    dispatch: DispatchConfig = DispatchConfig()
    api: ApiConfig = ApiConfig()
    arr: Mapping[str, ArrConfig] = field(default_factory=dict)
    home_clients: Mapping[str, HomeClientConfig] = field(default_factory=dict)

    def serves(self, item: Item) -> bool:
        """Whether the item's seedbox and destination are still configured."""
        return item.seedbox in self.seedboxes and item.destination in self.routing.destinations
