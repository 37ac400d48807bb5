"""Moving one payload: the seedbox side (SSH sessions, payload inspection, .torrent
sources), the engines, verification and landing in the library. Knows nothing of MQTT
or the queue."""
