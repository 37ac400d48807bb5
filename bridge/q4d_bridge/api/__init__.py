"""The HTTP API (next): the qBittorrent-compatible download-client API Sonarr, Radarr and
Prowlarr use, /metrics and /health, on aiohttp. It reads and commands the queue through
lifecycle/ like the MQTT commands do. See docs/architecture.md."""
