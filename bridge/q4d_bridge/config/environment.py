"""The environment's part of the configuration: `Q4D_<SECTION>__<KEY>` overrides (a
number addresses a list element: `Q4D_SEEDBOXES__0__HOST`), and Queue4Download's own
variables as deprecated aliases (legacy_env.py), each warned about once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import yaml

from . import legacy_env
from .legacy_env import Default, KeyPath
from .schema import ENV_PREFIX

_LOGGER = logging.getLogger(__name__)
NOT_CONFIG = frozenset({"Q4D_CONFIG"})  # names the file; no key of it
_warned: set[str] = set()


def show(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def configures(environ: Mapping[str, str]) -> bool:
    """Whether environ holds any configuration (so a missing file may be fine)."""
    return any(
        key.startswith(ENV_PREFIX) and key not in NOT_CONFIG and value
        for key, value in environ.items()
    )


def _step(node: Any, part: str | int, next_part: str | int | None) -> Any:
    """The child of node at part, created as a list or mapping as the next part asks;
    None where node cannot have such a child."""
    fresh: Any = [] if isinstance(next_part, int) else {}
    if isinstance(node, dict) and isinstance(part, str):
        return node.setdefault(part, fresh)
    if isinstance(node, list) and isinstance(part, int) and part <= len(node):
        if part == len(node):
            node.append(fresh)
        return node[part]
    return None


def set_path(raw: dict[str, Any], path: KeyPath, value: Any) -> str | None:
    """Set raw at path, creating what is missing; an error text if that cannot be."""
    node: Any = raw
    for i, part in enumerate(path[:-1]):
        child = _step(node, part, path[i + 1])
        if child is None:
            where = show(path[:i]) or "the top level"
            if isinstance(node, list) and isinstance(part, int):
                return (
                    f"cannot set {show(path)}: {where} has {len(node)} element(s), "
                    f"so the next index is {len(node)}"
                )
            kind = "list" if isinstance(part, int) else "mapping"
            return f"cannot set {show(path)}: {where} is not a {kind}"
        node = child
    if not isinstance(node, dict) or not isinstance(path[-1], str):
        return f"cannot set {show(path)}: {show(path[:-1]) or 'the top level'} is not a mapping"
    node[path[-1]] = value
    return None


def _get(raw: dict[str, Any], path: KeyPath) -> tuple[Any, bool]:
    """The parent node of path's last part, and whether that part is set there."""
    node: Any = raw
    for part in path[:-1]:
        found = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if not found:
            return None, False
        node = node[part]
    return node, isinstance(node, dict) and path[-1] in node


def _apply_default(raw: dict[str, Any], default: Default) -> None:
    parent, present = _get(raw, default.path)
    if present or (isinstance(parent, dict) and any(k in parent for k in default.unless)):
        return
    set_path(raw, default.path, default.value)  # where it cannot be, the schema says why


def env_path(key: str) -> KeyPath:
    """`Q4D_SEEDBOXES__0__KNOWN_HOSTS` -> ("seedboxes", 0, "known_hosts")."""
    parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
    return tuple(int(p) if p.isdecimal() else p for p in parts)


def apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply environ to raw: Q4D's aliases first, the bridge's own variables over them,
    then the defaults the aliases bring. Returns the errors, each naming its variable."""
    errors: list[str] = []
    legacy = legacy_env.translate(environ)
    errors += legacy.errors
    for name, path, value in legacy.settings:
        if problem := set_path(raw, path, value):
            errors.append(f"{name}: {problem}")
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_CONFIG or key in legacy_env.NAMES:
            continue
        path = env_path(key)
        if not path:
            continue
        try:  # values are read as YAML scalars: numbers, booleans, [lists]
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            errors.append(f"{key}: not a valid YAML value (quote it)")  # never the value: a secret
            continue
        if problem := set_path(raw, path, parsed):
            errors.append(f"{key}: {problem}")
    for default in legacy.defaults:
        _apply_default(raw, default)
    for name, note in legacy.notes.items():
        if name not in _warned:
            _warned.add(name)
            _LOGGER.warning("%s", note)
    return errors
