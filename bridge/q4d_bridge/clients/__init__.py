"""Clients for the torrent clients on seedboxes (Web APIs); they know nothing of MQTT."""

from __future__ import annotations

from ..config.model import ClientConfig
from .base import TorrentClient
from .deluge import DelugeClient
from .qbittorrent import QbittorrentClient
from .rtorrent import RtorrentClient
from .rtorrent_transport import SshLink
from .transmission import TransmissionClient


def make_client(config: ClientConfig, *, ssh: SshLink | None = None) -> TorrentClient:
    """The client adapter for a seedbox's torrent client (config validates the type).
    ssh: the seedbox's SSH connection, for a client reached through it (rTorrent's
    `scgi+ssh://`); the adapters know no more of the SSH link than this callable."""
    if config.type == "qbittorrent":
        return QbittorrentClient(config)
    if config.type == "deluge":
        return DelugeClient(config)
    if config.type == "rtorrent":
        return RtorrentClient(config, ssh=ssh)
    if config.type == "transmission":
        return TransmissionClient(config)
    raise ValueError(f"no adapter for torrent client {config.type!r}")
