"""What a valid bridge configuration is: the voluptuous schemas (their values are checked
in values.py). Errors name
the key path (`seedboxes[0].port`) and the reason, so `check-config` and a failing `run`
print the same actionable message."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from ..tracker_rules import DOMAIN_PATTERN, tracker_host
from . import values as v
from .post import ARR_SCHEMA, HOME_CLIENT_SCHEMA, POST_KEYS, destination
from .values import TOPIC_PREFIX_PATTERN

ENV_PREFIX = "Q4D_"
TRANSFER_ENGINES = ("lftp", "sftp", "rsync")
ENGINES = ("auto", *TRANSFER_ENGINES)
CLIENT_TYPES = ("qbittorrent", "transmission", "deluge", "rtorrent")
DEFAULT_HOOK_FLUSH = "~/.local/bin/q4d-hook flush"


TLS_SCHEMA = vol.Schema(
    {
        vol.Optional("ca_certs"): v.existing_file,
        vol.Optional("certfile"): v.existing_file,
        vol.Optional("keyfile"): v.existing_file,
        vol.Optional("insecure", default=False): bool,
    }
)

BROKER_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default="localhost"): str,
        vol.Optional("port", default=1883): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Optional("username"): v.text,
        vol.Optional("password"): v.text,
        vol.Optional("tls", default=False): vol.Any(bool, TLS_SCHEMA),
        vol.Optional("client_id"): vol.All(str, vol.Length(min=1, max=64)),
        vol.Optional("topic_prefix", default="q4d"): vol.All(str, v.topic_prefix),
        vol.Optional("keepalive", default=30): vol.All(int, vol.Range(min=5, max=3600)),
        vol.Optional("session_expiry", default="7d"): v.duration,
    }
)


def _client_url(client: dict[str, Any]) -> dict[str, Any]:
    """http(s) for every client; rTorrent also takes its SCGI socket: `scgi://host:port`
    (network.scgi.open_port) or `scgi:///path/to.sock` (network.scgi.open_local), and
    `scgi+ssh://` the same for one on the seedbox, reached through its SSH link."""
    url: str = client["url"]
    if client["type"] != "rtorrent":
        if not re.match(r"^https?://", url):
            raise vol.Invalid("must be an http(s) URL", path=["url"])
        return client
    if re.match(r"^https?://", url):
        return client
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in ("scgi", "scgi+ssh"):
        raise vol.Invalid(
            "must be an http(s) URL (an XML-RPC endpoint such as https://host/RPC2), or "
            "scgi://host:port or scgi:///path/to.sock for rTorrent's SCGI socket, or "
            "scgi+ssh://… for one on the seedbox, through its SSH link",
            path=["url"],
        )
    parts = urlsplit(url)
    if parts.netloc and not parts.netloc.startswith("~"):
        try:
            parts.port  # noqa: B018 - parsed for its check
        except ValueError as err:
            raise vol.Invalid(f"invalid port in {url!r}: {err}", path=["url"]) from err
        if not parts.hostname or parts.path not in ("", "/") or "@" in parts.netloc:
            raise vol.Invalid(
                f"expected {scheme}://host:port (port 5000 if left out), got {url!r}",
                path=["url"],
            )
    elif parts.netloc or not parts.path.startswith("/") or parts.path.endswith("/"):
        # Neither asyncio nor sshd expands `~`: the socket's path is taken as it is.
        tilde = " (~ is not expanded: write the whole path)" if "~" in url else ""
        raise vol.Invalid(f"expected {scheme}:///absolute/path/to.sock, got {url!r}{tilde}",
                          path=["url"])  # fmt: skip
    for key in ("username", "password"):
        if key in client:
            raise vol.Invalid(
                "SCGI has no login: username and password are for an http(s) url", path=[key]
            )
    return client


CLIENT_KEYS_SCHEMA = vol.Schema(
    {
        vol.Required("type"): vol.In(CLIENT_TYPES),
        vol.Required("url"): str,
        vol.Optional("username"): v.text,
        vol.Optional("password"): v.text,
        vol.Optional("verify_tls", default=True): bool,
        # how often free space, rates and active downloads are read for the state
        vol.Optional("poll_interval", default="30s"): vol.All(v.duration, vol.Range(min=1)),
        # dispatch: whether and how this client takes new torrents (docs/dispatch.md)
        vol.Optional("dispatch", default=True): bool,
        vol.Optional("weight", default=1.0): vol.All(
            vol.Coerce(float), vol.Range(min=0, max=100, msg="must be between 0 and 100")
        ),
        vol.Optional("min_free", default="50GiB"): v.size,
        vol.Optional("max_downloads", default=50): vol.All(int, vol.Range(min=1, max=10000)),
        vol.Optional("save_path"): v.absolute_path,
    }
)
CLIENT_SCHEMA = vol.All(CLIENT_KEYS_SCHEMA, _client_url)

RECONCILE_SCHEMA = vol.Schema(
    {
        # 0 turns the periodic pass off; the rescan command still runs one
        vol.Optional("interval", default="15m"): v.duration,
        # only torrents completed this recently: older ones may have had items pruned
        vol.Optional("max_age", default="3d"): vol.All(v.duration, vol.Range(min=60)),
        vol.Optional("categories", default=list): [str],
        vol.Optional("tags", default=list): [str],
    }
)

SEEDBOX_SCHEMA = vol.Schema(
    {
        vol.Required("id"): v.identifier,
        vol.Optional("name"): str,
        vol.Required("host"): vol.All(str, vol.Length(min=1)),
        vol.Optional("port", default=22): vol.All(int, vol.Range(min=1, max=65535)),
        vol.Required("user"): vol.All(str, vol.Match(r"^[A-Za-z0-9._][A-Za-z0-9._-]*\Z")),
        # A private key, or a password for seedboxes that offer only passwords (one of
        # the two; the loader says which is missing). Secrets come best from *_file.
        vol.Optional("key"): v.existing_file,
        vol.Optional("passphrase"): v.login_secret,
        vol.Optional("password"): v.login_secret,
        # Not required with trust_on_first_use: the first key seen is pinned there.
        vol.Optional("known_hosts"): v.absolute_path,
        vol.Optional("trust_on_first_use", default=False): bool,
        vol.Optional("remote_roots", default=list): [v.absolute_path],
        vol.Optional("max_concurrent", default=2): vol.All(int, vol.Range(min=1, max=64)),
        vol.Optional("engine", default="auto"): vol.In(ENGINES),
        vol.Optional("torrent_file"): v.torrent_file_template,
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
        # optional name: a rule set from Home Assistant has one (config/runtime.py), and
        # keeps it when exported to a file
        vol.Optional("id"): v.identifier,
        # required unless the rule ignores what it matches
        vol.Optional("destination"): str,
        vol.Optional("match", default=list): [v.condition],
        vol.Optional("subdir"): vol.All(str, vol.Length(min=1), v.subdir),
        vol.Optional("engine"): vol.In(TRANSFER_ENGINES),
        # leave what matches on the seedbox: never fetched, no label, counted
        vol.Optional("ignore", default=False): bool,
        **POST_KEYS,
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
        # On a long lossy link each connection carries little: a transfer adds
        # connections while that pays, up to this many (sftp_adapt.py).
        vol.Optional("max_connections", default=24): vol.All(int, vol.Range(min=1, max=64)),
        # the unit of resume: a kill -9 re-fetches the chunks a connection was reading
        vol.Optional("chunk_size", default="1MiB"): vol.All(
            v.size, vol.Range(min=64 * 1024, msg="must be at least 64KiB")
        ),
        vol.Optional("window", default="16MiB"): vol.All(
            v.size, vol.Range(min=64 * 1024, max=1024**3, msg="must be between 64KiB and 1GiB")
        ),
        # read requests in flight per connection, across chunk and file boundaries
        vol.Optional("max_requests", default=12): vol.All(int, vol.Range(min=1, max=1024)),
        # 0: the server's own limit (OpenSSH advertises 255 KiB).
        vol.Optional("block_size", default=0): vol.All(v.size, vol.Range(max=4 * 1024**2)),
    }
)

TRANSFERS_SCHEMA = vol.Schema(
    {
        vol.Optional("max_concurrent", default=2): vol.All(int, vol.Range(min=1, max=256)),
        vol.Optional("max_attempts", default=5): vol.All(int, vol.Range(min=1, max=100)),
        vol.Optional("retry_initial", default="1s"): v.duration,
        vol.Optional("retry_max", default="15m"): v.duration,
        vol.Optional("nice", default=10): vol.All(int, vol.Range(min=0, max=19)),
        # bytes per second over all transfers; 0 = unlimited (changeable at runtime)
        vol.Optional("bandwidth_limit", default=0): v.size,
        vol.Optional("stall_timeout", default="2m"): vol.All(v.duration, vol.Range(min=1)),
        vol.Optional("min_free_space", default="1GiB"): v.size,
        vol.Optional("space_recheck", default="1m"): vol.All(v.duration, vol.Range(min=1)),
        vol.Optional("breaker_failures", default=5): vol.All(int, vol.Range(min=1, max=1000)),
        vol.Optional("breaker_cooldown", default="5m"): vol.All(v.duration, vol.Range(min=1)),
        vol.Optional("lftp", default=dict): LFTP_SCHEMA,
        vol.Optional("sftp", default=dict): SFTP_SCHEMA,
        vol.Optional("rsync", default=dict): RSYNC_SCHEMA,
        # Piece-hash verification when the .torrent can be had; repairs re-fetch only the
        # bad pieces' byte ranges, and after max_repairs the item fails.
        vol.Optional("verify", default=True): bool,
        vol.Optional("max_repairs", default=2): vol.All(int, vol.Range(min=0, max=20)),
        # Hash pieces as the SFTP engine writes them (no read-back after the last byte);
        # false reads the landed payload back, as the lftp and rsync engines always do.
        vol.Optional("stream_verify", default=True): bool,
        # What landed files and folders get (minus the process umask); never the
        # seedbox's modes, which could make a private file world-readable at home.
        vol.Optional("file_mode", default="0644"): v.mode(0o600),
        vol.Optional("dir_mode", default="0755"): v.mode(0o700),
    }
)

DISPATCH_SCHEMA = vol.Schema(
    {
        # the dispatcher seed's weights: per 100 GiB free, per active download, per MiB/s
        vol.Optional("disk_weight", default=1.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("download_weight", default=2.0): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("bandwidth_weight", default=0.1): vol.All(vol.Coerce(float), vol.Range(min=0)),
        vol.Optional("min_score", default=-1.0): vol.Coerce(float),
        # what a magnet counts as until its v.size is known
        vol.Optional("size_estimate", default="10GiB"): v.size,
        vol.Optional("history", default=200): vol.All(int, vol.Range(min=1, max=100000)),
        # categories accepted besides those the rules route
        vol.Optional("categories", default=list): [vol.All(str, vol.Length(min=1, max=200))],
        # how often clients are asked about torrents still downloading for a request
        vol.Optional("watch_interval", default="5s"): vol.All(v.duration, vol.Range(min=1)),
        # fetching the .torrent behind an `add` command's url gives up after this
        vol.Optional("fetch_timeout", default="30s"): vol.All(v.duration, vol.Range(min=1)),
    }
)


API_ON_DELETE = ("remove", "keep_seeding")

API_SCHEMA = vol.Schema(
    {
        # Off unless asked: the bridge opens no port by default (docs/arr.md).
        vol.Optional("enabled", default=False): bool,
        vol.Optional("host", default="127.0.0.1"): v.ip_address,
        # qBittorrent's own default is 8080; another port lets both run on one host.
        # 0 takes any free port (tests).
        vol.Optional("port", default=8090): vol.All(int, vol.Range(min=0, max=65535)),
        # the *arr apps' login (qBittorrent's WebUI user and password)
        vol.Optional("username"): vol.All(v.text, vol.Length(min=1, max=200)),
        vol.Optional("password"): v.secret(6),
        # Authorization: Bearer <api_key> (qBittorrent 5.2's API keys; Sonarr's "API key")
        vol.Optional("api_key"): v.secret(16),
        # the bridge's management routes, which the *arr credentials do not open
        vol.Optional("admin_key"): v.secret(16),
        # an idle session ends after this; the client then logs in again
        vol.Optional("session_lifetime", default="1h"): vol.All(v.duration, vol.Range(min=1)),
        # what torrents/delete does to the seedbox's torrent (docs/arr.md#removal)
        vol.Optional("on_delete", default="remove"): vol.In(API_ON_DELETE),
        # with deleteFiles=true: the seedbox's data too / the copy landed at home too
        vol.Optional("delete_seedbox_data", default=True): bool,
        vol.Optional("delete_home_copy", default=False): bool,
    }
)

CLASSIC_SCHEMA = vol.Schema(
    {
        vol.Optional("enabled", default=False): bool,
        vol.Optional("down_topic", default="Down"): vol.All(str, vol.Match(TOPIC_PREFIX_PATTERN)),
        vol.Optional("label_topic", default="Label"): vol.All(str, vol.Match(TOPIC_PREFIX_PATTERN)),
        vol.Optional("seedbox"): v.identifier,
        # answer on label_topic (Q4D's LABELLING); off, LabelD.sh is told nothing
        vol.Optional("labels", default=True): bool,
    }
)

# A domain, or a tracker URL whose host is taken (the passkey in its path never stored).
TRACKER_DOMAIN = vol.All(
    str,
    vol.Length(min=1, max=2048),
    tracker_host,
    vol.Match(DOMAIN_PATTERN, msg="tracker must be a domain such as tracker.example.org"),
)


def _one_effect(rule: dict[str, Any]) -> dict[str, Any]:
    if rule["ignore"] and ("category" in rule or "destination" in rule):
        raise vol.Invalid(
            "ignore leaves the torrents on the seedbox: give no category or destination"
        )
    if not rule["ignore"] and "category" not in rule and "destination" not in rule:
        raise vol.Invalid("give destination, category or ignore: true")
    return rule


# One tracker rule, in the configuration file and in the tracker_rule_add command alike.
TRACKER_RULE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("tracker"): TRACKER_DOMAIN,
            vol.Optional("category"): vol.All(str, vol.Length(min=1, max=200)),
            vol.Optional("destination"): v.identifier,
            vol.Optional("ignore", default=False): bool,
        }
    ),
    _one_effect,
)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Required("bridge"): vol.Schema(
            {vol.Required("id"): v.identifier, vol.Optional("name"): str}
        ),
        vol.Required("data_dir"): v.absolute_path,
        vol.Optional("broker", default=dict): BROKER_SCHEMA,
        # Both may be empty: an install configured from Home Assistant starts with the
        # broker alone and gets its seedboxes and destinations through config_set.
        vol.Optional("seedboxes", default=list): [SEEDBOX_SCHEMA],
        vol.Optional("destinations", default=dict): vol.Schema({v.identifier: destination}),
        vol.Optional("default_destination"): v.identifier,
        vol.Optional("rules", default=list): [RULE_SCHEMA],
        vol.Optional("tracker_rules", default=list): [TRACKER_RULE_SCHEMA],
        vol.Optional("types_config"): v.existing_file,
        vol.Optional("default_type"): str,
        vol.Optional("type_codes", default=dict): vol.Schema({str: v.identifier}),
        vol.Optional("transfers", default=dict): TRANSFERS_SCHEMA,
        vol.Optional("classic", default=dict): CLASSIC_SCHEMA,
        vol.Optional("dispatch", default=dict): DISPATCH_SCHEMA,
        vol.Optional("api", default=dict): API_SCHEMA,
        # Sonarr/Radarr instances the arr_import step calls, by name
        vol.Optional("arr", default=dict): vol.Schema({v.identifier: ARR_SCHEMA}),
        # torrent clients at home a hand-off gives landed payloads to, by name
        vol.Optional("home_clients", default=dict): vol.Schema({v.identifier: HOME_CLIENT_SCHEMA}),
        vol.Optional("history_retention", default="7d"): v.duration,
        vol.Optional("log_level", default="INFO"): vol.All(
            vol.Upper, vol.In(["DEBUG", "INFO", "WARNING", "ERROR"])
        ),
    }
)
