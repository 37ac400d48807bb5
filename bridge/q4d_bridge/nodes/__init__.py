"""Clients for the torrent clients on seedboxes (Web APIs); they know nothing of MQTT."""
