"""Dispatch: which seedbox's torrent client gets a new torrent (scoring on free space,
active downloads and bandwidth), duplicate prevention, and the requests that follow a
torrent from the add to the library. Knows nothing of MQTT. See docs/dispatch.md."""
