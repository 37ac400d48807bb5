"""The files the runtime layer keeps secrets in, never in SQLite: `<data_dir>/secrets/
<section>-<id>-<field>` (0600, folder 0700), and a host key confirmed in Home Assistant
in `<data_dir>/known_hosts/<id>`, where trust on first use would pin it.

New contents are staged beside the files in use and only replace them once the entry
they belong to was checked (`commit`), so a refused change leaves the running secrets
as they were."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from .runtime_entry import SECRET_FIELDS


class SecretFiles:
    def __init__(self, data_dir: Path) -> None:
        self.secrets = data_dir / "secrets"
        self.known_hosts = data_dir / "known_hosts"

    def path(self, section: str, entry_id: str, field: str) -> Path:
        if field == "known_hosts":
            return self.known_hosts / entry_id
        return self.secrets / f"{section}-{entry_id}-{field}"

    def managed(self, section: str, entry_id: str) -> list[Path]:
        """Every file the layer may keep for the entry (removed with it)."""
        return [self.path(section, entry_id, field) for field in SECRET_FIELDS.get(section, ())]

    def stage(self, section: str, entry_id: str, files: Mapping[str, str]) -> dict[str, str]:
        """Each content written to a private temporary file beside its final path:
        final path -> staged path."""
        staged: dict[str, str] = {}
        try:
            for field, text in files.items():
                final = self.path(section, entry_id, field)
                final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                final.parent.chmod(0o700)  # an existing folder too: it lists the ids
                fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}-")
                staged[str(final)] = tmp
                with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            self.discard(staged)
            raise
        return staged

    @staticmethod
    def commit(staged: Mapping[str, str]) -> None:
        for final, tmp in staged.items():
            Path(tmp).replace(final)

    @staticmethod
    def discard(staged: Mapping[str, str]) -> None:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)

    @staticmethod
    def remove(paths: Iterable[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
