"""The configuration commands (docs/protocol.md#configuration-commands): read the
effective seedboxes, destinations, rules, arr instances, home clients and dispatch
settings, set or remove a runtime entry.

A change is checked by building the whole configuration with the loader `check-config`
uses (its `path: reason` lines come back, and by key inside the entry), stored only when
valid (secrets as files), and then handed to the bridge's `apply`. The answer body of
`config_get` is also the retained `<prefix>/bridge/<id>/config` topic."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import voluptuous as vol

from ..config.loader import ConfigError, check_raw
from ..config.model import Config
from ..config.runtime import (
    SECTIONS,
    SINGLETONS,
    Layer,
    entry_name,
    entry_path,
    field_errors,
    sections,
)
from ..config.runtime_entry import (
    EntryError,
    Prepared,
    moved,
    prepare,
    secret_paths,
    with_paths,
)
from ..config.secret_files import SecretFiles
from ..config.source import ConfigSource
from ..config.values import ID_PATTERN
from ..models import Item
from ..persistence.runtime_config import delete_entry, load_layer, save_entry
from ..persistence.store import Store

_LOGGER = logging.getLogger(__name__)

ENTRY_ID = vol.All(
    str, vol.Match(ID_PATTERN, msg="id must be lowercase letters, digits, '-' or '_' (max 63)")
)


def _singleton_id(args: dict[str, Any]) -> dict[str, Any]:
    """A section that is one mapping (dispatch) has one entry, named as the section."""
    section = args["section"]
    if section in SINGLETONS and args["id"] != section:
        raise vol.Invalid(f"the {section} section's only id is {section!r}", path=["id"])
    return args


SCHEMAS: dict[str, vol.Schema | vol.All] = {
    "config_get": vol.Schema({}),
    "config_set": vol.All(
        vol.Schema(
            {
                vol.Required("section"): vol.In(SECTIONS),
                vol.Required("id"): ENTRY_ID,
                vol.Required("value"): vol.Any(dict, str, msg="value must be an object"),
                vol.Optional("confirm", default=False): bool,
            }
        ),
        _singleton_id,
    ),
    "config_remove": vol.All(
        vol.Schema(
            {
                vol.Required("section"): vol.In(SECTIONS),
                vol.Required("id"): ENTRY_ID,
                vol.Optional("confirm", default=False): bool,
            }
        ),
        _singleton_id,
    ),
}
# What a destination's or rule's post-processing names an instance of these sections
# by: the step's key, the key inside its mapping, and the word for the instance.
REFERENCES = {
    "arr": ("arr_import", "instance", "arr instance"),
    "home_clients": ("handoff", "client", "home client"),
}


class Apply(Protocol):
    """The bridge's live apply (Bridge.apply): what it changed, for the answer."""

    def __call__(self, new: Config, *, confirm: bool) -> Awaitable[dict[str, Any]]: ...


class ConfigCommandError(Exception):
    """A refusal; `detail` joins the answer's error object (errors, fields, items)."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


def _with(layer: Layer, section: str, entry_id: str, value: Any) -> Layer:
    out = {name: dict(entries) for name, entries in layer.items()}
    if value is None:
        out[section].pop(entry_id, None)
    else:
        out[section][entry_id] = value
    return out


class ConfigDesk:
    """The one writer of the runtime layer: checks, stores, applies, re-publishes; one
    change at a time."""

    def __init__(
        self,
        store: Store,
        source: ConfigSource,
        *,
        apply: Apply,
        current: Callable[[], Config],
        unfinished: Callable[[], Iterable[Item]],
        publish: Callable[[dict[str, Any]], None],
        vet: Callable[[Config, bool], None] = lambda new, confirm: None,
    ) -> None:
        """vet: refuses (ConfigCommandError) a configuration the running bridge would
        not apply, before it is stored."""
        self.store = store
        self.vet = vet
        self.source = source
        self.apply = apply
        self.current = current
        self.unfinished = unfinished
        self.publish = publish
        self.files = SecretFiles(current().data_dir)
        with store.transaction() as db:
            self.revision, self.layer = load_layer(db)
        self._lock = asyncio.Lock()

    def body(self) -> dict[str, Any]:
        """config_get's answer and the retained config topic: redacted."""
        return {"revision": self.revision, "sections": sections(self.source.base, self.layer)}

    def _writable(self, section: str, entry_id: str) -> None:
        listed = self.source.base.get(section)
        ids: Iterable[Any] = []
        if section in SINGLETONS:
            ids = [section] if section in self.source.base else []
        elif isinstance(listed, dict):
            ids = listed
        elif isinstance(listed, list):
            ids = [e.get("id") for e in listed if isinstance(e, dict)]
        if entry_id in ids:
            raise ConfigCommandError(
                "read_only",
                f"{entry_name(section, entry_id)} is defined in the YAML file; edit it there",
            )

    def _check(self, section: str, entry_id: str, layer: Layer) -> Config:
        """The whole configuration with this layer, or `invalid` with the loader's lines
        and those inside the entry by key."""
        merged = self.source.merged(layer)
        try:
            return check_raw(merged)
        except ConfigError as err:
            fields = field_errors(err.errors, entry_path(section, entry_id, merged))
            raise ConfigCommandError(
                "invalid", "; ".join(err.errors), errors=err.errors, fields=fields
            ) from None

    async def set(self, section: str, entry_id: str, value: Any, confirm: bool) -> dict[str, Any]:
        async with self._lock:
            self._writable(section, entry_id)
            previous = self.layer[section].get(entry_id)
            orders = [v.get("order", 0) for v in self.layer["rules"].values()]
            try:
                # a thread: unlocking an encrypted private key takes a while (its KDF)
                prepared = await asyncio.to_thread(
                    prepare, section, entry_id, value, previous,
                    lambda field: str(self.files.path(section, entry_id, field)),
                    next_order=max(orders, default=-1) + 1,
                )  # fmt: skip
            except EntryError as err:
                name = entry_name(section, entry_id)
                errors = [f"{name}.{k}: {r}" for k, r in err.fields.items()]
                raise ConfigCommandError(
                    "invalid", "; ".join(errors), errors=errors, fields=err.fields
                ) from None
            self._write_secrets(section, entry_id, prepared)
            layer = _with(self.layer, section, entry_id, prepared.value)
            new = self._check(section, entry_id, layer)
            self.vet(new, confirm)
            self.revision = save_entry(self.store, section, entry_id, prepared.value)
            self.layer = layer
            _LOGGER.info(
                "configuration: %s %s from Home Assistant (revision %d)",
                entry_name(section, entry_id), "changed" if previous is not None else "added",
                self.revision,
            )  # fmt: skip
            if moved(previous, prepared.value) and "known_hosts" not in prepared.files:
                # Trust on first use pins the new address's key, not the old one's.
                SecretFiles.remove([self.files.path(section, entry_id, "known_hosts")])
            kept = set(secret_paths(prepared.value))
            dropped = [p for p in secret_paths(previous) if p not in kept]
            return await self._applied(new, confirm, self._managed(section, entry_id, dropped))

    def _write_secrets(self, section: str, entry_id: str, prepared: Prepared) -> None:
        """The entry's secrets staged beside the files in use, the whole configuration
        checked with them, and only then put in place: a refused change leaves the
        running secrets as they were."""
        staged = self.files.stage(section, entry_id, prepared.files)
        try:
            staged_value = with_paths(prepared.value, staged)
            self._check(section, entry_id, _with(self.layer, section, entry_id, staged_value))
            self.files.commit(staged)
            staged = {}
        except ConfigCommandError as err:
            unstaged = {tmp: final for final, tmp in staged.items()}
            err.detail["errors"] = [_replaced(e, unstaged) for e in err.detail["errors"]]
            err.message = "; ".join(err.detail["errors"])
            raise
        finally:
            self.files.discard(staged)

    async def remove(self, section: str, entry_id: str, confirm: bool) -> dict[str, Any]:
        async with self._lock:
            self._writable(section, entry_id)
            previous = self.layer[section].get(entry_id)
            if previous is None:
                raise ConfigCommandError(
                    "not_found", f"no runtime entry {entry_name(section, entry_id)}"
                )
            if section == "seedboxes":
                items = sorted(i.id for i in self.unfinished() if i.seedbox == entry_id)
                if items and not confirm:
                    raise ConfigCommandError(
                        "confirm_required",
                        f"seedbox {entry_id} has {len(items)} unfinished item(s): removing it "
                        "cancels them (send confirm: true)",
                        items=items,
                    )
            if section == "destinations":
                self._check_unused(entry_id)
            if section in REFERENCES:
                self._check_instance_unused(section, entry_id)
            layer = _with(self.layer, section, entry_id, None)
            new = self._check(section, entry_id, layer)
            self.vet(new, confirm)
            self.revision = delete_entry(self.store, section, entry_id)
            self.layer = layer
            _LOGGER.info(
                "configuration: %s removed from Home Assistant (revision %d)",
                entry_name(section, entry_id), self.revision,
            )  # fmt: skip
            files = self.files.managed(section, entry_id)
            return await self._applied(new, confirm, files)

    def _check_unused(self, name: str) -> None:
        """A destination something still sends payloads to stays."""
        merged = self.source.merged(self.layer)
        users = []
        rules = merged.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict) and rule.get("destination") == name:
                users.append(f"rules.{rule['id']}" if "id" in rule else f"rules[{i}]")
        codes = merged.get("type_codes")
        if isinstance(codes, dict):
            users += [f"type_codes.{code}" for code, dest in codes.items() if dest == name]
        if merged.get("default_destination") == name:  # named; an implicit default moves on
            users.append("default_destination")
        routing = self.current().routing
        users += [
            f"tracker rule {r.tracker}"
            for r in routing.tracker_rules.rules
            if r.destination == name
        ]
        items = sorted(i.id for i in self.unfinished() if i.destination == name)
        if items:
            users.append(f"{len(items)} unfinished item(s)")
        if users:
            raise ConfigCommandError(
                "in_use",
                f"destination {name} is still used by {', '.join(users)}",
                used_by=users,
                items=items,
            )

    def _check_instance_unused(self, section: str, name: str) -> None:
        """An arr instance a destination's or rule's arr_import names stays, and so does
        a home client its handoff names."""
        step, key, word = REFERENCES[section]
        merged = self.source.merged(self.layer)
        users = [f"destinations.{d}" for d, plan in _named(merged.get("destinations"))
                 if _refers_to(plan, step, key, name)]  # fmt: skip
        rules = merged.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if _refers_to(rule, step, key, name):
                users.append(f"rules.{rule['id']}" if "id" in rule else f"rules[{i}]")
        if users:
            raise ConfigCommandError(
                "in_use", f"{word} {name} is still used by {', '.join(users)}", used_by=users
            )

    def _managed(self, section: str, entry_id: str, paths: Iterable[str]) -> list[Path]:
        """Of paths, the files the layer made for the entry (never one a user named)."""
        ours = set(self.files.managed(section, entry_id))
        return [Path(p) for p in paths if Path(p) in ours]

    async def _applied(self, new: Config, confirm: bool, unused: list[Path]) -> dict[str, Any]:
        """Apply the stored change; then the files it no longer needs go (after: a
        transfer still running on the old settings may read them until cancelled)."""
        try:
            applied = await self.apply(new, confirm=confirm)
        except Exception as err:
            _LOGGER.exception("configuration revision %d stored, not applied", self.revision)
            raise ConfigCommandError(
                "apply_failed",
                f"stored as revision {self.revision} but not applied ({type(err).__name__}): "
                "it applies when the bridge starts again",
                revision=self.revision,
            ) from err
        finally:
            self.files.remove(unused)
            self.publish(self.body())
        return {"revision": self.revision, "applied": applied}


def _named(section: Any) -> list[tuple[str, Any]]:
    return [(str(k), v) for k, v in section.items()] if isinstance(section, dict) else []


def _refers_to(entry: Any, step: str, key: str, name: str) -> bool:
    """Whether a destination's or rule's mapping has `step` (arr_import, handoff) name
    instance `name`: as the step's value, or under `key` in its mapping."""
    if not isinstance(entry, dict):
        return False
    plan = entry.get(step)
    return (plan.get(key) if isinstance(plan, dict) else plan) == name


def _replaced(line: str, paths: dict[str, str]) -> str:
    for old, new in paths.items():
        line = line.replace(old, new)
    return line


async def _logged(what: str, change: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A refused change logged by code and the key paths at fault: the reasons stay in
    the answer (a reason may quote a value)."""
    try:
        return await change
    except ConfigCommandError as err:
        paths = [line.partition(": ")[0] for line in err.detail.get("errors", [])]
        _LOGGER.warning(
            "configuration change %s refused: %s%s",
            what, err.code, f" ({', '.join(paths)})" if paths else "",
        )  # fmt: skip
        raise


def handlers(desk: ConfigDesk, valid: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """What each op does with its validated arguments: config_get answers at once, the
    changes once applied (an awaitable)."""
    what = entry_name(str(valid.get("section")), str(valid.get("id")))
    return {
        "config_get": desk.body,
        "config_set": lambda: _logged(
            what,
            desk.set(
                valid["section"], valid["id"], copy.deepcopy(valid["value"]), valid["confirm"]
            ),
        ),
        "config_remove": lambda: _logged(
            what, desk.remove(valid["section"], valid["id"], valid["confirm"])
        ),
    }
