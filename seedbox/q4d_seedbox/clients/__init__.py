"""Torrent-client adapters for the label daemon: each applies one q4d label to one
torrent, replacing only the labels q4d owns and leaving the user's own alone."""

from __future__ import annotations

import abc

from ..config import LabelsConfig

LABELS = ("QUEUED", "DONE", "FAILED")


class ClientError(Exception):
    """A torrent-client call failed. `retry` is False when trying again cannot help
    (the client answered, and said no: unknown torrent, bad request)."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class UnknownTorrent(ClientError):
    """The client answered that it has no torrent with this hash (removed since, or
    never added): the label is dropped, and trying again cannot help."""

    def __init__(self, client: str) -> None:
        super().__init__(f"unknown torrent ({client} has no torrent with this hash)", retry=False)


class LabelClient(abc.ABC):
    def __init__(self, cfg: LabelsConfig) -> None:
        self.cfg = cfg

    @abc.abstractmethod
    def apply(self, info_hash: str, label: str) -> None:
        """Give the torrent `info_hash` (40 lowercase hex) the q4d label `label`
        (QUEUED, DONE or FAILED); raises UnknownTorrent when the client does not have
        it (checked every time: some clients answer success for unknown hashes),
        ClientError for other failures."""

    def other_names(self, label: str) -> list[str]:
        """The client-side names of the q4d labels this one replaces."""
        return [self.cfg.label_name(other) for other in LABELS if other != label]


def make_client(cfg: LabelsConfig) -> LabelClient:
    # Imported here so each adapter module stays importable on its own.
    from .deluge import Deluge  # noqa: PLC0415
    from .qbittorrent import QBittorrent  # noqa: PLC0415
    from .rtorrent import RTorrent  # noqa: PLC0415
    from .transmission import Transmission  # noqa: PLC0415

    classes: dict[str, type[LabelClient]] = {
        "qbittorrent": QBittorrent,
        "transmission": Transmission,
        "deluge": Deluge,
        "rtorrent": RTorrent,
    }
    return classes[cfg.client](cfg)
