"""The Home Assistant add-on's start step (`q4d-bridge addon-run`): the add-on's options
and the Supervisor's MQTT service become a bridge configuration, then the bridge runs."""

from __future__ import annotations

# The Supervisor's API and the token it gives each add-on. Not Q4D_*: the bridge reads
# those as configuration overrides.
URL_ENV, DEFAULT_URL = "SUPERVISOR_URL", "http://supervisor"
TOKEN_ENV = "SUPERVISOR_TOKEN"  # noqa: S105 - the variable's name, not a token
# ... and the same token under its old name, which the Supervisor still sets
TOKEN_ENVS = (TOKEN_ENV, "HASSIO_TOKEN")


class AddonError(Exception):
    """The add-on cannot start; `errors` holds one actionable line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
