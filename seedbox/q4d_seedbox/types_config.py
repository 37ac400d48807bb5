"""Q4D `Types.config`: `FIELD CONDITIONAL VALUE TYPE [SCOPE]` lines to a type code.

The same grammar (double quotes included), field mapping and tier semantics as the
bridge's `q4d_bridge.rules.parse_types_config`/`classify` (which needs Python 3.12, so it
is re-implemented here for 3.8); tests/seedbox/test_types_config.py runs one case table
through both and requires identical answers.
"""

from __future__ import annotations

import re
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
        try:
            parts = _columns(line)
        except ValueError as err:
            raise TypesConfigError(f"{source}:{lineno}: {err} in {raw!r}") from None
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
        if not parts[3]:
            raise TypesConfigError(f"{source}:{lineno}: TYPE is empty in {raw!r}")
        # An empty SCOPE (`""`) is Q4D's sample's way of writing tier 1.
        scope = parts[4] if len(parts) == 5 and parts[4] else None
        rules.append(TypeRule(field_, op, parts[2], parts[3], scope))
    return tuple(rules)


def _columns(line: str) -> list[str]:
    """Columns as the bridge's `_types_columns` reads them: `"A"` is A and `""` is empty,
    as Q4D's shipped sample means them; a quote that does not enclose a whole column,
    or a quoted column holding whitespace (Q4D's `read -r` would split it), is refused."""
    columns: list[str] = []
    for word in line.split():
        if '"' not in word:
            columns.append(word)
        elif len(word) >= 2 and word[0] == word[-1] == '"' and '"' not in word[1:-1]:
            columns.append(word[1:-1])
        elif line.count('"') % 2:
            raise ValueError("unbalanced double quote")
        elif any(c.isspace() for quoted in re.findall(r'"[^"]*"', line) for c in quoted):
            raise ValueError(
                "a quoted value cannot hold whitespace (Q4D splits columns at whitespace, "
                "quoted or not)"
            )
        else:
            raise ValueError("a double quote must enclose a whole column")
    return columns


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
