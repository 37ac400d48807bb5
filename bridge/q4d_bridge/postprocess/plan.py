"""What happens to a payload around and after landing, as configured for its rule and
destination: pure data, merged at config time (a rule's keys override its
destination's), fixed on the item at intake and stored with it as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

# The order the steps run in after landing. The hand-off comes before the import so an
# import that moves the files cannot take them from under the home client's recheck.
STEP_ORDER = ("extract", "handoff", "arr_import", "cleanup")


@dataclass(frozen=True, slots=True)
class Ownership:
    """Who owns what landed and its modes; None keeps the bridge's user and the
    transfers' modes."""

    owner: str | int | None = None
    group: str | int | None = None
    file_mode: int | None = None
    dir_mode: int | None = None


@dataclass(frozen=True, slots=True)
class ExtractPlan:
    # Relative folder the archives unpack into (inside the payload's folder, or beside
    # a single-file payload); None: where the archives are.
    subfolder: str | None = None
    keep_archives: bool = True


@dataclass(frozen=True, slots=True)
class ArrImportPlan:
    instance: str  # a name under the config's `arr:`
    # Sonarr/Radarr's importMode (Auto, Move or Copy); None: not configured, see
    # PostPlan.import_mode.
    import_mode: str | None = None


@dataclass(frozen=True, slots=True)
class HandoffPlan:
    client: str  # a name under the config's `home_clients:`
    category: str | None = None
    tags: tuple[str, ...] = ()
    # After the home client confirmed 100 %: remove the torrent from the seedbox.
    remove_from_seedbox: bool = False
    delete_seedbox_data: bool = True


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    """Removing the torrent from the seedbox's client once landed and verified: at once,
    or when its ratio or its seeding time reaches a goal (whichever first)."""

    at_once: bool = False
    ratio: float | None = None
    seeding_time: float | None = None  # seconds
    delete_data: bool = True


@dataclass(frozen=True, slots=True)
class PostPlan:
    exclude: tuple[str, ...] = ()  # glob patterns of files never fetched
    ownership: Ownership = field(default_factory=Ownership)
    extract: ExtractPlan | None = None
    handoff: HandoffPlan | None = None
    arr_import: ArrImportPlan | None = None
    cleanup: CleanupPlan | None = None

    def steps(self) -> tuple[str, ...]:
        """The steps that run after landing, in order. A clean-up on a goal is not one:
        it waits (for days, maybe) after the item is done."""
        present = {
            "extract": self.extract is not None,
            "handoff": self.handoff is not None,
            "arr_import": self.arr_import is not None,
            "cleanup": self.cleanup is not None and self.cleanup.at_once,
        }
        return tuple(name for name in STEP_ORDER if present[name])

    def import_mode(self) -> str:
        """The importMode the arr_import step sends: the configured one, else Copy with a
        hand-off (Auto would move the files the home client seeds once Sonarr/Radarr
        finds no seedbox torrent to leave them for), else Auto."""
        configured = self.arr_import.import_mode if self.arr_import else None
        return configured or ("Copy" if self.handoff else "Auto")

    def merged(self, overrides: dict[str, Any]) -> PostPlan:
        """This plan with the keys a rule sets replaced (ownership key by key)."""
        owner_keys = {k: overrides[k] for k in ("owner", "group", "file_mode", "dir_mode")
                      if k in overrides}  # fmt: skip
        changes = {k: v for k, v in overrides.items() if k in _PLAN_KEYS}
        return replace(self, ownership=replace(self.ownership, **owner_keys), **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> PostPlan:
        if not text:
            return NO_PLAN  # frozen: every item without steps shares it
        data = json.loads(text)
        return cls(
            exclude=tuple(data.get("exclude", ())),
            ownership=Ownership(**data.get("ownership", {})),
            extract=_part(ExtractPlan, data.get("extract")),
            handoff=_part(HandoffPlan, data.get("handoff"), tags=tuple),
            arr_import=_part(ArrImportPlan, data.get("arr_import")),
            cleanup=_part(CleanupPlan, data.get("cleanup")),
        )


NO_PLAN = PostPlan()
_PLAN_KEYS = ("exclude", "extract", "handoff", "arr_import", "cleanup")


def _part(kind: Any, data: dict[str, Any] | None, **convert: Any) -> Any:
    if data is None:
        return None
    return kind(**{k: convert[k](v) if k in convert else v for k, v in data.items()})
