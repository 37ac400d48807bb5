"""Bridge config dictionaries for tests and benchmarks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from q4d_bridge.config.loader import ConfigError, parse_config


def bridge_config(
    data_dir: Path,
    library: Path,
    *,
    key: Path,
    known_hosts: Path,
    broker_port: int = 1883,
    ssh_port: int = 22,
    user: str = "root",
    remote_root: str | None = None,
    classic: bool = False,
    bridge_id: str = "test",
    **overrides: Any,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bridge": {"id": bridge_id, "name": "Test bridge"},
        "data_dir": str(data_dir),
        "broker": {"host": "127.0.0.1", "port": broker_port, "keepalive": 10},
        "seedboxes": [
            {
                "id": "sb1",
                "host": "127.0.0.1",
                "port": ssh_port,
                "user": user,
                "key": str(key),
                "known_hosts": str(known_hosts),
                "remote_roots": [remote_root] if remote_root else [],
                "max_concurrent": 4,
            }
        ],
        "destinations": {
            "tv": str(library / "tv"),
            "movies": str(library / "movies"),
            "default": str(library / "other"),
        },
        "rules": [
            {"destination": "tv", "match": [{"field": "category", "is": "tv"}]},
            {"destination": "movies", "match": [{"field": "category", "is": "movies"}]},
        ],
        "type_codes": {"T": "tv", "M": "movies"},
        "transfers": {"max_concurrent": 4, "max_attempts": 2, "retry_initial": 0.2},
        "classic": {"enabled": classic, "seedbox": "sb1"},
    }
    config.update(overrides)
    return config


def errors_of(raw: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    """The key-path errors a config is refused with (the config itself is left as it is)."""
    with pytest.raises(ConfigError) as info:
        parse_config(copy.deepcopy(raw), environ)
    return info.value.errors
