"""The test of a home torrent client a hand-off gives landed payloads to: the adapter
the handoff step's client is built on (clients/home.py adds only the hand-off's calls
to the seedbox adapters), asked for its stats (which logs in) and its version, as the
seedbox client's test does (client.py). Nothing is added or changed on the client."""

from __future__ import annotations

import copy
from typing import Any

import voluptuous as vol

from ..config.loader import read_secret_keys
from ..config.model import ClientConfig, Config, HomeClientConfig
from ..config.post import HOME_CLIENT_SCHEMA
from .base import (
    configured,
    foreign_secret_files,
    invalid,
    reference,
    relative,
    schema_lines,
)
from .client import ClientTarget, probe_client

WHERE = "home_clients.probe"  # the loader's path of a value under test, stripped from errors


def home_client_target(value: dict[str, Any], config: Config) -> HomeClientConfig:
    """The client a `config_test` value gives (a `home_clients.<name>` mapping) or names
    (`{"id": <name>}` of the running configuration)."""
    ident = reference(value)
    if ident is not None:
        return configured(ident, config.home_clients, "home client")
    raw = copy.deepcopy(value)
    # Any other file the bridge can read would go to the client's URL as the password.
    if foreign := foreign_secret_files(raw, ("password",), config.data_dir):
        raise invalid(foreign)
    errors: list[str] = []
    read_secret_keys(WHERE, raw, ("password",), errors)
    try:
        data = HOME_CLIENT_SCHEMA(raw)
    except vol.Invalid as err:
        raise invalid([*relative(errors, WHERE), *schema_lines(err)]) from None
    if errors:
        raise invalid(relative(errors, WHERE))
    return HomeClientConfig(**data)


async def probe_home_client(client: HomeClientConfig) -> dict[str, Any]:
    """Its version and figures once it took the login (auth_failed, unreachable, and
    unsupported for another client type at the URL, as for a seedbox's client)."""
    settings = ClientConfig(
        client.type, client.url, client.username, client.password, client.verify_tls
    )
    return await probe_client(ClientTarget(settings, None))
