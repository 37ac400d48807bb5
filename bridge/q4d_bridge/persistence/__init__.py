"""The bridge's SQLite store: items, history, seen events, rejections, counters,
settings and the MQTT outbox."""
