"""Where a payload goes: rule matching, Q4D `Types.config` codes and safe local paths.

Pure logic, no I/O except reading a Types.config file.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import posixpath
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .models import CompletionEvent
from .postprocess.plan import PostPlan
from .tracker_rules import TrackerRule, TrackerRules

RULE_FIELDS = ("category", "tags", "tracker", "name", "path", "type", "size", "seedbox")
STRING_OPS = ("is", "contains", "not", "regex", "glob")
SIZE_OPS = ("gt", "lt")
MAX_NAME_BYTES = 255


class UnsafePathError(ValueError):
    """A remote path or payload name that must never be turned into a local path."""


class NoDestinationError(LookupError):
    """No rule sends the payload anywhere and there is no default destination (a bridge
    configured from Home Assistant before its first destination): rejected, never fetched."""


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: str | int

    def matches(self, event: CompletionEvent, type_code: str | None) -> bool:
        if self.field == "size":
            if event.size is None:
                return False
            limit = int(self.value)
            return event.size > limit if self.op == "gt" else event.size < limit
        if self.field == "tags":
            # "not" means no tag equals the value; every other op matches if any tag does.
            if self.op == "not":
                return all(tag != self.value for tag in event.tags)
            return any(_compare(self.op, tag, str(self.value)) for tag in event.tags)
        actual = _field_value(event, self.field, type_code)
        if actual is None:
            return self.op == "not"
        return _compare(self.op, actual, str(self.value))


@dataclass(frozen=True, slots=True)
class Rule:
    destination: str
    conditions: tuple[Condition, ...]
    subdir: str | None = None
    engine: str | None = None  # overrides the seedbox's engine for what this rule matches
    ignore: bool = False  # what matches stays on the seedbox
    post: PostPlan = field(
        default_factory=PostPlan
    )  # its destination's plan with the rule's keys over it

    def matches(self, event: CompletionEvent, type_code: str | None) -> bool:
        return all(c.matches(event, type_code) for c in self.conditions)


def _field_value(event: CompletionEvent, name: str, type_code: str | None) -> str | None:
    match name:
        case "category":
            return event.category
        case "tracker":
            return event.tracker
        case "name":
            return event.name
        case "path":
            return event.path
        case "type":
            return type_code
        case "seedbox":
            return event.seedbox
    raise ValueError(f"unknown rule field {name!r}")


def _compare(op: str, actual: str, expected: str) -> bool:
    match op:
        case "is":
            return actual == expected
        case "not":
            return actual != expected
        case "contains":
            return expected in actual
        case "regex":
            return re.search(expected, actual) is not None
        case "glob":
            return fnmatch.fnmatchcase(actual, expected)
    raise ValueError(f"unknown condition {op!r}")


# --- Q4D Types.config -----------------------------------------------------------------

TYPES_FIELDS = ("KEY", "HASH", "LABEL", "TRACKER", "PATH")
TYPES_OPS = ("IS", "CONTAINS", "NOT")


@dataclass(frozen=True, slots=True)
class TypeRule:
    field: str
    op: str
    value: str
    code: str
    scope: str | None  # None: tier 1; otherwise the code this tier-2 rule refines


class TypesConfigError(ValueError):
    pass


def parse_types_config(text: str, source: str = "Types.config") -> tuple[TypeRule, ...]:
    """Parse Q4D's `FIELD CONDITIONAL VALUE TYPE [SCOPE]` lines with Q4D v2's tiers, and
    double quotes read the way Q4D's own sample means them (`_types_columns`)."""
    rules: list[TypeRule] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            parts = _types_columns(line)
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
        # An empty SCOPE (`""`) is the sample's way of writing tier 1.
        scope = parts[4] if len(parts) == 5 and parts[4] else None
        rules.append(TypeRule(field_, op, parts[2], parts[3], scope))
    return tuple(rules)


def _types_columns(line: str) -> list[str]:
    """The whitespace-separated columns of a rule line, a column in double quotes standing
    for what is inside them.

    Q4D's shipped Types.config writes `TRACKER CONTAINS hatc "A" ""` and its comments
    read `""` as "the type code hasn't been set yet" and `"A"` as the code A. Q4D itself
    reads the line with `read -r`, which keeps quote characters and splits at whitespace
    inside quotes too, so a quoted column cannot hold whitespace: that, and a quote that
    does not enclose a whole column, is refused rather than guessed at. Single quotes
    are ordinary characters (torrent names hold apostrophes; the sample quotes none).
    """
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


def _types_field(event: CompletionEvent, field_: str) -> str:
    match field_:
        case "KEY":
            # Q4D's CheckFields swaps KEY for the payload path once it exists.
            return event.path or event.name
        case "HASH":
            return event.hash or ""
        case "LABEL":
            return event.category or ""
        case "TRACKER":
            return event.tracker or ""
    return event.path


def classify(event: CompletionEvent, rules: Sequence[TypeRule], default: str | None) -> str | None:
    """Q4D v2 tier semantics: a rule fires only while the code so far equals its scope.

    So the first tier-1 match wins (tier 1 applies while the code is still empty) and
    tier-2 rules refine the code they name.
    """
    code: str | None = None
    for rule in rules:
        if rule.scope != code:
            continue
        actual = _types_field(event, rule.field)
        hit = (
            actual == rule.value
            if rule.op == "IS"
            else rule.value in actual
            if rule.op == "CONTAINS"
            else actual != rule.value
        )
        if hit:
            code = rule.code
    return code if code is not None else default


# --- Resolving the destination and the local path ----------------------------------------


@dataclass(slots=True)
class Routing:
    """The one routing a running bridge shares (intake, reconciliation, the runner, the
    API, housekeeping): `adopt` swaps a new configuration's in, in place."""

    rules: tuple[Rule, ...]
    destinations: Mapping[str, Path]
    type_codes: Mapping[str, str]
    default_destination: str | None  # None: no destination configured yet
    types_rules: tuple[TypeRule, ...] = ()
    default_type: str | None = None
    plans: Mapping[str, PostPlan] = field(default_factory=dict)  # by destination
    # live, not config: compared by identity, never part of a config's equality
    tracker_rules: TrackerRules = field(default_factory=TrackerRules, compare=False)

    def adopt(self, new: Routing) -> None:
        """Take another configuration's routing (Bridge.apply): every part holds this
        object, so the next completion resolves with the new rules. Each field is rebound,
        never changed in place, so a reader that took a mapping (the free-space poll, in
        a thread) keeps a whole one. The tracker rules object stays (every part holds it
        too), with the new configuration's file rules and the stored ones it had."""
        for f in dataclasses.fields(self):
            if f.name != "tracker_rules":
                setattr(self, f.name, getattr(new, f.name))
        self.tracker_rules.adopt(new.tracker_rules)

    def rule_name(self, rule: Rule | TrackerRule | None) -> str:
        """How logs, events and the CLI name the rule that decided: `rules[2]` (its
        index in the config), `tracker example.org`, or `default` (no rule matched)."""
        if isinstance(rule, TrackerRule):
            return f"tracker {rule.tracker}"
        index = next((i for i, r in enumerate(self.rules) if r is rule), None)
        return "default" if index is None else f"rules[{index}]"


@dataclass(frozen=True, slots=True)
class Resolution:
    type_code: str | None
    destination: str
    root: Path
    local_path: Path
    engine: str | None = None
    post: PostPlan = field(default_factory=PostPlan)
    ignore: bool = False  # an ignore rule matched: leave it on the seedbox
    category: str | None = None  # the item's: the event's, or the tracker rule's
    rule: Rule | TrackerRule | None = None  # the rule that decided; None: no rule matched


def resolve(event: CompletionEvent, routing: Routing) -> Resolution:
    """Pick the destination for an event and the local path its payload lands at:
    tracker rules first (docs/configuration.md#tracker-rules), then the config's rules,
    type codes and the default destination."""
    tracked = routing.tracker_rules.match(event)
    if tracked is not None and tracked.category is not None:
        event = dataclasses.replace(event, category=tracked.category)
    type_code = event.type_code
    if type_code is None and routing.types_rules:
        type_code = classify(event, routing.types_rules, routing.default_type)
    destination = routing.default_destination
    subdir: str | None = None
    engine: str | None = None
    matched: Rule | TrackerRule | None = None
    post: PostPlan | None = None
    if tracked is not None and (tracked.ignore or tracked.destination):
        matched = tracked
        destination = tracked.destination or destination
    else:
        for rule in routing.rules:
            if rule.matches(event, type_code):
                matched, post = rule, rule.post
                destination, subdir, engine = rule.destination, rule.subdir, rule.engine
                break
        else:
            if type_code is not None and type_code in routing.type_codes:
                destination = routing.type_codes[type_code]
    if destination is None:
        raise NoDestinationError(
            "no rule matched and no default destination is configured: add a destination"
        )
    root = routing.destinations[destination]
    parent = root
    if subdir:
        parent = safe_join(root, *subdir_parts(subdir, event, type_code))
    name = payload_name(event.path)
    if post is None:
        post = routing.plans.get(destination, PostPlan())
    return Resolution(
        type_code,
        destination,
        root,
        safe_join(parent, name),
        engine,
        post,
        ignore=matched.ignore if matched is not None else False,
        category=event.category,
        rule=matched,
    )


def category_destination(routing: Routing, category: str | None) -> str | None:
    """The destination a torrent of this category lands in, as far as the category alone
    tells: the first rule naming it (`category is ...`), else the default destination
    (None while no destination is configured)."""
    for rule in routing.rules:
        if category is not None and any(
            c.field == "category" and c.op == "is" and c.value == category for c in rule.conditions
        ):
            return rule.destination
    return routing.default_destination


def destination_root(routing: Routing, name: str | None) -> Path:
    """The folder of a destination category_destination named. The configuration
    guarantees one wherever this is asked (the qBittorrent API needs a destination)."""
    if name is None:
        raise NoDestinationError("no destination is configured")
    return routing.destinations[name]


SUBDIR_PLACEHOLDERS = ("category", "type", "seedbox")


def check_subdir_template(template: str) -> str:
    """Config-time check: only plain known placeholders, no escaping the destination."""
    known = ", ".join("{" + p + "}" for p in SUBDIR_PLACEHOLDERS)
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"bad template: {err} (placeholders: {known})") from None
    for _literal, name, spec, conversion in fields:
        if name is not None and (name not in SUBDIR_PLACEHOLDERS or spec or conversion):
            raise ValueError(f"unknown placeholder {{{name}}} (known: {known})")
    if template.startswith("/") or any(p in (".", "..") for p in template.split("/")):
        raise ValueError("subdir must be relative and stay inside the destination")
    return template


def subdir_parts(template: str, event: CompletionEvent, type_code: str | None) -> list[str]:
    values = {
        "category": event.category or "uncategorized",
        "type": type_code or "none",
        "seedbox": event.seedbox,
    }
    parts = [part.format_map(values) for part in template.split("/") if part]
    for part in parts:
        check_name(part)
    return parts


def check_name(name: str) -> str:
    """Refuse names that could escape a directory or confuse the tools that handle them."""
    if not name or name in (".", ".."):
        raise UnsafePathError(f"unsafe name {name!r}")
    if "/" in name:
        raise UnsafePathError(f"name contains a path separator: {name!r}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise UnsafePathError(f"name contains control characters: {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise UnsafePathError(f"name longer than {MAX_NAME_BYTES} bytes")
    return name


def check_remote_path(path: str, roots: Iterable[str] = ()) -> str:
    """An absolute, normalised seedbox path, inside one of the seedbox's roots when given."""
    if not path or not path.startswith("/"):
        raise UnsafePathError(f"remote path must be absolute: {path!r}")
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        raise UnsafePathError(f"remote path contains control characters: {path!r}")
    parts = PurePosixPath(path).parts[1:]
    if not parts:
        raise UnsafePathError("remote path is the filesystem root")
    if any(part in (".", "..") for part in parts) or "//" in path:
        raise UnsafePathError(f"remote path is not normalised: {path!r}")
    for part in parts:
        check_name(part)
    path = path.rstrip("/")
    # Strictly inside: a root itself is a whole download folder, never one payload.
    if roots and not any(path.startswith(r.rstrip("/") + "/") for r in roots):
        raise UnsafePathError(f"remote path {path!r} is not inside the seedbox roots")
    return path


def payload_name(remote_path: str) -> str:
    return check_name(posixpath.basename(remote_path.rstrip("/")))


def safe_join(root: Path, *names: str) -> Path:
    """Join checked names under root: lexically inside it, with no filesystem access."""
    path = root
    for name in names:
        path = path / check_name(name)
    return path


def ensure_inside(root: Path, path: Path) -> None:
    """The filesystem check, done right before writing: a symlink planted inside the
    destination must not redirect a payload outside it."""
    if not path.parent.resolve(strict=False).is_relative_to(root.resolve(strict=False)):
        raise UnsafePathError(f"{path} resolves outside {root}")
