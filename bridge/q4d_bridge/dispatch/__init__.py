"""Dispatch (next): choosing the seedbox and torrent client a new torrent or magnet goes
to (free space, active downloads, bandwidth), with duplicate prevention and request
tracking, then adding it through clients/. See docs/architecture.md."""
