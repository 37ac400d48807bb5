"""Where the effective configuration comes from: the YAML file with the environment over
it (kept raw, as the base), and the runtime layer stored in the bridge's store, merged
into a copy of the base before the loader checks the whole (config/runtime.py). Every
command that reads the configuration (`run`, `check-config`, `config export`, …) goes
through `ConfigSource.load`, so all of them see what the bridge runs."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..persistence.runtime_config import read_layer
from .loader import ConfigError, check_raw, load_raw
from .model import Config
from .runtime import Layer, empty_layer, merge, runtime_notes

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConfigSource:
    base: dict[str, Any]  # the file and the environment; never changed (merges copy it)
    path: Path | None = None

    @classmethod
    def read(cls, path: Path, environ: Mapping[str, str] | None = None) -> ConfigSource:
        environ = os.environ if environ is None else environ
        return cls(load_raw(path, environ), path)

    def data_dir(self) -> Path | None:
        data_dir = self.base.get("data_dir")
        return Path(data_dir) if isinstance(data_dir, str) and data_dir.startswith("/") else None

    def stored_layer(self) -> Layer:
        data_dir = self.data_dir()
        return empty_layer() if data_dir is None else read_layer(data_dir)

    def merged(self, layer: Layer) -> dict[str, Any]:
        return merge(self.base, layer)[0]

    def build(self, layer: Layer) -> Config:
        """The configuration with this layer, checked as `check-config` checks a file;
        ConfigError's lines say which come from a runtime entry."""
        raw, shadowed = merge(self.base, layer)
        for name in shadowed:
            _LOGGER.warning(
                "%s is set from Home Assistant and also in the YAML file: the file's is used",
                name,
            )
        try:
            return check_raw(raw)
        except ConfigError as err:
            notes = runtime_notes(err.errors, raw, layer)
            if self.path is not None and not self.path.exists():
                notes.insert(
                    0,
                    f"{self.path}: not found, and the environment alone is not a whole "
                    "configuration",
                )
            raise ConfigError(notes) from err

    def load(self) -> Config:
        """What a starting bridge runs: the base with the stored layer."""
        return self.build(self.stored_layer())
