"""The HTTP API, on aiohttp and only when enabled: the qBittorrent-compatible download
client Sonarr, Radarr and Prowlarr use (docs/arr.md), on a server other routes join
(`server.ApiServer.add_routes`). Adds go through dispatch/, the queue is read through
lifecycle/; it knows nothing of MQTT. See docs/architecture.md."""
