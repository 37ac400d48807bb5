"""Q4D `Types.config`: `FIELD CONDITIONAL VALUE TYPE [SCOPE]` lines to a type code.

The same grammar, field mapping and tier semantics as the bridge's
`q4d_bridge.rules.parse_types_config`/`classify` (which needs Python 3.12, so it is
re-implemented here for 3.8); tests/seedbox/test_types_config.py runs one case table
through both and requires identical answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .event import Completion

TYPES_FIELDS = ("KEY", "HASH", "LABEL", "TRACKER", "PATH")
TYPES_OPS = ("IS", "CONTAINS", "NOT")


class TypesConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TypeRule:
    field: str
    op: str
    value: str
    code: str
    scope: str | None  # None: tier 1; otherwise the code this tier-2 rule refines


def parse_types_config(text: str, source: str = "Types.config") -> tuple[TypeRule, ...]:
    rules: list[TypeRule] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (4, 5):
            raise TypesConfigError(
                f"{source}:{lineno}: expected FIELD CONDITIONAL VALUE TYPE [SCOPE], got {raw!r}"
            )
        field_, op = parts[0].upper(), parts[1].upper()
        if field_ not in TYPES_FIELDS:
            raise TypesConfigError(
                f"{source}:{lineno}: unknown field {parts[0]!r} (one of {', '.join(TYPES_FIELDS)})"
            )
        if op not in TYPES_OPS:
            known = ", ".join(TYPES_OPS)
            raise TypesConfigError(
                f"{source}:{lineno}: unknown conditional {parts[1]!r} (one of {known})"
            )
        rules.append(
            TypeRule(field_, op, parts[2], parts[3], parts[4] if len(parts) == 5 else None)
        )
    return tuple(rules)


def load_types_config(path: Path) -> tuple[TypeRule, ...]:
    return parse_types_config(path.read_text(encoding="utf-8"), str(path))


def _field(completion: Completion, field_: str) -> str:
    if field_ == "KEY":
        # Q4D's CheckFields swaps KEY for the payload path once it exists.
        return completion.path or completion.name
    if field_ == "HASH":
        return completion.hash or ""
    if field_ == "LABEL":
        return completion.category or ""
    if field_ == "TRACKER":
        return completion.tracker or ""
    return completion.path


def classify(completion: Completion, rules: Sequence[TypeRule], default: str | None) -> str | None:
    """Q4D v2 tiers: a rule fires only while the code so far equals its scope, so the
    first tier-1 match wins and tier-2 rules refine the code they name."""
    code: str | None = None
    for rule in rules:
        if rule.scope != code:
            continue
        actual = _field(completion, rule.field)
        if rule.op == "IS":
            hit = actual == rule.value
        elif rule.op == "CONTAINS":
            hit = rule.value in actual
        else:
            hit = actual != rule.value
        if hit:
            code = rule.code
    return code if code is not None else default
