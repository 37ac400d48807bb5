"""The bridge's answers to configuration commands (`config_test`, `config_set`,
`set_limits`), as the subentry and options flows show them: a form's errors and the
placeholders their texts quote."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from homeassistant.exceptions import HomeAssistantError

from .bridge_client import BridgeRefusal
from .coordinator import Q4dCoordinator

# Refusals the forms explain on their own; anything else is `unknown` with its message.
KNOWN_CODES: Final = frozenset(
    {
        "cannot_connect", "invalid", "read_only", "host_key_mismatch", "auth_failed",
        "unreachable", "timeout", "root_missing", "root_unreadable", "not_writable",
        "chown_failed", "missing", "unsupported",
    }
)  # fmt: skip
# What any probe may answer; a client's are told apart from the SSH link's.
TEST_CODES: Final = frozenset({"auth_failed", "unreachable", "timeout", "unsupported"})
# The form field a refusal points at, when it points at one.
CODE_FIELDS: Final = {
    "root_missing": "remote_roots",
    "root_unreadable": "remote_roots",
    "not_writable": "path",
    "missing": "path",
    "chown_failed": "owner",
}


@dataclass(slots=True)
class Answer:
    """The bridge's answer to a command: its result, or its refusal."""

    result: dict[str, Any] = field(default_factory=dict)
    code: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


async def async_ask(
    coordinator: Q4dCoordinator, op: str, args: dict[str, Any], time_limit: float | None
) -> Answer:
    """Send a command; a bridge offline or silent is `cannot_connect`."""
    try:
        result = await coordinator.async_command(op, args, time_limit=time_limit)
    except BridgeRefusal as err:
        message = (err.translation_placeholders or {}).get("message", "")
        return Answer(code=err.code, message=message, details=err.details)
    except HomeAssistantError:
        return Answer(code="cannot_connect")
    return Answer(result=result if isinstance(result, dict) else {})


def form_errors(
    answer: Answer, fields: frozenset[str], scope: str = ""
) -> tuple[dict[str, str], dict[str, str]]:
    """A refusal as form errors (`base`, and the fields it points at) and the
    placeholders their texts use. With a `scope` (`client`), the bridge's keys under it
    are the form's fields, and a failed test says so (`client_auth_failed`)."""
    code = str(answer.code)
    message = answer.message
    errors: dict[str, str] = {}
    if code == "invalid":
        reasons = answer.details.get("fields")
        for key in reasons if isinstance(reasons, dict) else {}:
            name = str(key)
            if scope:
                name = name.removeprefix(f"{scope}.") if name.startswith(f"{scope}.") else ""
            # a key inside a field (`remote_roots[0]`, `extract.subfolder`) is its field's
            name = re.split(r"[.\[]", name, maxsplit=1)[0]
            if name in fields:
                errors[name] = "invalid_field"
        lines = answer.details.get("errors")
        if isinstance(lines, list) and lines:
            message = "; ".join(str(line) for line in lines)
    placeholders = {
        "message": message,
        "root": str(answer.details.get("root", "")),
        "fingerprint": str(answer.details.get("fingerprint", "")),
    }
    if code not in KNOWN_CODES:
        errors["base"] = "unknown"
    elif CODE_FIELDS.get(code) in fields:
        errors[CODE_FIELDS[code]] = code
    elif scope and code in TEST_CODES:
        errors["base"] = f"{scope}_{code}"
    else:
        errors["base"] = code
    return errors, placeholders
