"""Queue4Download's environment variables as deprecated aliases of the bridge's keys.

A Q4D container is configured with `Q4D_BUS_HOST`, `Q4D_CREDS`, `Q4D_PATH` and the like
(`Q4D_<KEY>` over its `q4d.conf`); the bridge's own variables are `Q4D_<SECTION>__<KEY>`.
`translate` reads the old names into the settings they stand for, plus the defaults that
let such an environment alone run the bridge: Q4D's hook on the seedbox still sends
classic `Down` lines, and Q4D confirmed host keys itself (`sftp:auto-confirm`), which
becomes trust on first use. Pure: the loader applies the result and logs the notes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KeyPath = tuple[str | int, ...]
SEEDBOX: KeyPath = ("seedboxes", 0)
# Where Q4D's README mounts the credentials file (its docker-run example sets no Q4D_CREDS).
Q4D_CREDENTIALS_FILE = "/app/credentials"
# Q4D's `labelling` property: these are true, anything else is false.
_TRUE = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    key: str  # what it sets, as the docs write it
    replacement: str  # the variable to use instead


ALIASES: tuple[Alias, ...] = (
    Alias("Q4D_BUS_HOST", "broker.host", "Q4D_BROKER__HOST"),
    Alias("Q4D_BUS_PORT", "broker.port", "Q4D_BROKER__PORT"),
    Alias("Q4D_USER", "broker.username", "Q4D_BROKER__USERNAME"),
    Alias("Q4D_PW", "broker.password", "Q4D_BROKER__PASSWORD_FILE"),
    Alias("Q4D_HOST", "seedboxes[0].host", "Q4D_SEEDBOXES__0__HOST"),
    Alias(
        "Q4D_CREDS",
        "seedboxes[0].user and .password",
        "Q4D_SEEDBOXES__0__USER and Q4D_SEEDBOXES__0__PASSWORD_FILE",
    ),
    Alias("Q4D_THREADS", "transfers.lftp.parallel_files", "Q4D_TRANSFERS__LFTP__PARALLEL_FILES"),
    Alias("Q4D_SEGMENTS", "transfers.lftp.segments", "Q4D_TRANSFERS__LFTP__SEGMENTS"),
    Alias("Q4D_PATH", "destinations.default", "Q4D_DESTINATIONS__DEFAULT"),
    Alias("Q4D_LABELLING", "classic.labels", "Q4D_CLASSIC__LABELS"),
)
NAMES = frozenset(alias.name for alias in ALIASES)


@dataclass(frozen=True, slots=True)
class Default:
    """A value for `path` if, once the file and every variable are applied, neither it
    nor any of the `unless` keys beside it is set."""

    path: KeyPath
    value: Any
    unless: tuple[str, ...] = ()


@dataclass(slots=True)
class Legacy:
    settings: list[tuple[str, KeyPath, Any]] = field(default_factory=list)  # (variable, ...)
    defaults: list[Default] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # variable -> deprecation warning
    errors: list[str] = field(default_factory=list)


def _number(name: str, value: str, legacy: Legacy) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        legacy.errors.append(f"{name}: expected a whole number, got {value!r}")
        return None


def split_credentials(text: str) -> tuple[str, str | None]:
    """`user:password` as Q4D documents it, or `user,password` as lftp's `-u` takes it;
    a bare `user` has no password. The first separator splits: a user name holds
    neither, a password may."""
    separator = re.search(r"[:,]", text)
    if separator is None:
        return text, None
    return text[: separator.start()], text[separator.end() :]


def _credentials(value: str, read: Callable[[str], str], legacy: Legacy) -> None:
    text = value
    if value.startswith("/"):  # Q4D's README: "SFTP credentials file path"
        try:
            text = next((line for line in read(value).splitlines() if line.strip()), "")
        except OSError as err:
            legacy.errors.append(f"Q4D_CREDS: cannot read {value}: {err.strerror}")
            return
    user, password = split_credentials(text.strip())
    if not user:
        legacy.errors.append("Q4D_CREDS: expected user:password (or a file holding that line)")
        return
    legacy.settings.append(("Q4D_CREDS", (*SEEDBOX, "user"), user))
    if password:
        # Only if no key is set: Q4D setups that log in by key still wrote a dummy
        # password, which lftp wanted.
        legacy.defaults.append(
            Default((*SEEDBOX, "password"), password, unless=("key", "password_file"))
        )


def _read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def translate(
    environ: Mapping[str, str],
    read: Callable[[str], str] = _read_text,
    credentials_file: str = Q4D_CREDENTIALS_FILE,
) -> Legacy:
    """What the Q4D variables in environ set (empty ones count as unset)."""
    legacy = Legacy()
    given = {name: environ[name] for name in sorted(NAMES) if environ.get(name)}
    if not given:
        return legacy
    if "Q4D_HOST" in given and "Q4D_CREDS" not in given and Path(credentials_file).is_file():
        given["Q4D_CREDS"] = credentials_file
    plain: dict[str, KeyPath] = {
        "Q4D_BUS_HOST": ("broker", "host"),
        "Q4D_USER": ("broker", "username"),
        "Q4D_PW": ("broker", "password"),
        "Q4D_HOST": (*SEEDBOX, "host"),
        "Q4D_PATH": ("destinations", "default"),
    }
    numbers: dict[str, KeyPath] = {
        "Q4D_BUS_PORT": ("broker", "port"),
        "Q4D_THREADS": ("transfers", "lftp", "parallel_files"),
        "Q4D_SEGMENTS": ("transfers", "lftp", "segments"),
    }
    for name, value in given.items():
        if name in plain:
            legacy.settings.append(
                (name, plain[name], value.strip() if name != "Q4D_PW" else value)
            )
        elif name in numbers:
            number = _number(name, value, legacy)
            if number is not None:
                legacy.settings.append((name, numbers[name], number))
        elif name == "Q4D_LABELLING":
            legacy.settings.append((name, ("classic", "labels"), value.strip().lower() in _TRUE))
        elif name == "Q4D_CREDS":
            _credentials(value, read, legacy)
    for alias in ALIASES:
        if alias.name in given:
            legacy.notes[alias.name] = (
                f"{alias.name} is Queue4Download's name and is deprecated: "
                f"use {alias.replacement} ({alias.key})"
            )
    legacy.defaults += [
        Default(("bridge", "id"), "q4d"),
        Default(("data_dir",), "/data"),
        # Q4D's hook on the seedbox announces completions as classic Down lines.
        Default(("classic", "enabled"), True),
    ]
    if "Q4D_HOST" in given or "Q4D_CREDS" in given:
        legacy.defaults += [
            Default((*SEEDBOX, "id"), "seedbox1"),
            Default((*SEEDBOX, "trust_on_first_use"), True, unless=("known_hosts",)),
        ]
    return legacy
