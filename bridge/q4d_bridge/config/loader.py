"""Loading the configuration: one YAML file (optional when the environment holds the
whole configuration), environment overrides (environment.py), `password_file` secrets,
then the schema and the cross-checks that need the whole file (destinations named by
rules, installed engines, host-key files, how each seedbox logs in)."""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

from ..postprocess.plan import PostPlan
from ..rules import Condition, Routing, Rule, TypeRule, TypesConfigError, load_types_config
from ..tracker_rules import configured as configured_tracker_rules
from .environment import apply_environment, configures
from .model import (
    ApiConfig,
    ArrConfig,
    BrokerConfig,
    ClassicConfig,
    ClientConfig,
    ClientDispatch,
    Config,
    DispatchConfig,
    HomeClientConfig,
    LftpConfig,
    ReconcileConfig,
    RsyncConfig,
    SeedboxConfig,
    SftpConfig,
    TlsConfig,
    TransfersConfig,
)
from .post import overrides, plan_problems
from .schema import CONFIG_SCHEMA


class ConfigError(Exception):
    """The configuration is invalid; `errors` holds one `path: reason` line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def format_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _read_secret_files(raw: dict[str, Any], errors: list[str]) -> None:
    """`password_file: /run/secrets/x` fills `password` from the file (container secrets),
    for the broker, each seedbox's torrent client and the API (also its keys)."""
    sections: list[tuple[str, Any, tuple[str, ...]]] = [
        ("broker", raw.get("broker"), ("password",)),
        ("api", raw.get("api"), ("password", "api_key", "admin_key")),
    ]
    instance_keys: dict[str, tuple[str, ...]] = {"arr": ("api_key",), "home_clients": ("password",)}
    for name, keys in instance_keys.items():
        instances = raw.get(name)
        if isinstance(instances, dict):
            sections += [(f"{name}.{key}", section, keys) for key, section in instances.items()]
    seedboxes = raw.get("seedboxes")
    if isinstance(seedboxes, list):
        for i, sb in enumerate(seedboxes):
            if isinstance(sb, dict):
                sections.append((f"seedboxes[{i}]", sb, ("password", "passphrase")))
                sections.append((f"seedboxes[{i}].client", sb.get("client"), ("password",)))
    for where, section, keys in sections:
        if isinstance(section, dict):
            read_secret_keys(where, section, keys, errors)


def read_secret_keys(
    where: str, section: dict[str, Any], keys: tuple[str, ...], errors: list[str]
) -> None:
    """Each `<key>_file` of one section replaced by `<key>` holding that file's text."""
    for key in keys:
        if f"{key}_file" not in section:
            continue
        path = section.pop(f"{key}_file")
        try:
            section[key] = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as err:
            errors.append(f"{where}.{key}_file: cannot read {path}: {err.strerror}")


def login_problems(where: str, sb: dict[str, Any], engines: set[str]) -> list[str]:
    """A seedbox logs in by key (perhaps encrypted) or by password, never both: each tool
    answers one prompt. rsync hands a password or passphrase to ssh through sshpass."""
    if "key" in sb and "password" in sb:
        return [f"{where}.password: set key or password(_file), not both"]
    if "key" not in sb and "password" not in sb:
        return [
            f"{where}.key: required (a private key file), or password_file to log in by password"
        ]
    if "passphrase" in sb and "key" not in sb:
        return [f"{where}.passphrase: only with key (the passphrase of that key)"]
    secret = "password" if "password" in sb else "passphrase" if "passphrase" in sb else None
    if secret and "rsync" in engines and not shutil.which("sshpass"):
        return [
            f"{where}.{secret}: the rsync engine needs sshpass to give ssh the {secret} "
            "(apt-get install sshpass), or use the lftp or sftp engine"
        ]
    return []


def _read_file(path: Path, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The file's top-level mapping; None when it is missing and the environment alone
    may hold the whole configuration (a container's `-e` options)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        if not configures(environ):
            raise ConfigError([f"{path}: cannot read: {err.strerror}"]) from err
        return None
    except OSError as err:
        raise ConfigError([f"{path}: cannot read: {err.strerror}"]) from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"]) from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys"])
    return raw


def load_raw(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The file at path with the environment over it, unchecked: the base the runtime
    layer (config/runtime.py) is merged into before check_raw validates the whole."""
    environ = os.environ if environ is None else environ
    raw = _read_file(path, environ)
    if raw is None:
        raw = {}
        if errors := apply_environment(raw, environ):
            raise ConfigError([f"{path}: not found, and the environment is not valid", *errors])
    elif errors := apply_environment(raw, environ):
        raise ConfigError(errors)
    return raw


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """The file at path, with the environment over it (without the runtime layer:
    config/source.py adds it). Without the file, the environment alone may hold the
    whole configuration."""
    environ = os.environ if environ is None else environ
    raw = _read_file(path, environ)
    try:
        return parse_config({} if raw is None else raw, environ)
    except ConfigError as invalid:
        if raw is not None:
            raise
        raise ConfigError(
            [
                f"{path}: not found, and the environment alone is not a whole configuration",
                *invalid.errors,
            ]
        ) from invalid


def parse_config(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    errors = apply_environment(raw, environ or {})
    if errors:
        _read_secret_files(copy.deepcopy(raw), errors)  # reported together with them
        raise ConfigError(errors)
    return check_raw(raw)


def check_raw(raw: dict[str, Any]) -> Config:
    """What `check-config` checks, on a raw mapping the environment (and the runtime
    layer) already went into: secret files read, the schema, the cross-checks. raw itself
    is left as it is, so the same mapping can be checked, printed or checked again."""
    raw = copy.deepcopy(raw)
    errors: list[str] = []
    _read_secret_files(raw, errors)
    if errors:
        raise ConfigError(errors)
    try:
        data = CONFIG_SCHEMA(raw)
    except vol.MultipleInvalid as err:
        raise ConfigError(sorted({f"{format_path(e.path)}: {e.msg}" for e in err.errors})) from err
    return _build(data)


def _build(data: dict[str, Any]) -> Config:
    errors: list[str] = []
    destinations = {name: Path(d["path"]) for name, d in data["destinations"].items()}
    # None with no destination at all: a completion no rule sends anywhere is then
    # rejected as no_destination (rules.resolve), the configuration itself is valid.
    default_destination = data.get("default_destination") or (
        "default" if "default" in destinations else next(iter(destinations), None)
    )
    if default_destination is not None and default_destination not in destinations:
        errors.append(f"default_destination: {default_destination!r} is not in destinations")
    plans = {name: PostPlan().merged(overrides(d)) for name, d in data["destinations"].items()}
    arr, home = set(data["arr"]), set(data["home_clients"])
    for name, plan in plans.items():
        errors += plan_problems(f"destinations.{name}", plan, arr, home)
    rule_plans: list[PostPlan] = []
    for i, rule in enumerate(data["rules"]):
        rule.setdefault("destination", default_destination if rule["ignore"] else None)
        if rule["destination"] is None and rule["ignore"]:
            errors.append(f"rules[{i}].destination: required while no destination is configured")
        elif rule["destination"] is None:
            errors.append(f"rules[{i}].destination: required (or ignore: true)")
        elif rule["destination"] not in destinations:
            errors.append(f"rules[{i}].destination: {rule['destination']!r} is not in destinations")
        plan = plans.get(rule["destination"], PostPlan()).merged(overrides(rule))
        errors += plan_problems(f"rules[{i}]", plan, arr, home)
        rule_plans.append(plan)
    tracker_rules, tracker_errors = configured_tracker_rules(data["tracker_rules"], destinations)
    errors += tracker_errors
    for code, dest in data["type_codes"].items():
        if dest not in destinations:
            errors.append(f"type_codes.{code}: {dest!r} is not in destinations")

    tools = {name: data["transfers"][name]["binary"] for name in ("lftp", "rsync")}
    installed = {name for name, binary in tools.items() if shutil.which(binary)} | {"sftp"}
    rule_ids: set[str] = set()
    for i, rule in enumerate(data["rules"]):
        if rule.get("engine", "sftp") not in installed:
            errors.append(f"rules[{i}].engine: {rule['engine']} is not installed")
        if "id" in rule and rule["id"] in rule_ids:
            errors.append(f"rules[{i}].id: duplicate rule id {rule['id']!r}")
        rule_ids.add(rule.get("id", ""))  # "" is no identifier: never a duplicate
    seedboxes: dict[str, SeedboxConfig] = {}
    rule_engines = {rule["engine"] for rule in data["rules"] if rule.get("engine")}
    for i, sb in enumerate(data["seedboxes"]):
        engine = sb["engine"]
        if engine == "auto":
            # The built-in engine: measured faster than lftp on every link and payload
            # (bench/wan.py), the only one that hashes pieces as they arrive.
            engine = "sftp"
        elif engine not in installed:
            errors.append(f"seedboxes[{i}].engine: {engine} is not installed (use sftp or auto)")
        errors += login_problems(f"seedboxes[{i}]", sb, {engine} | rule_engines)
        known_hosts = sb.get("known_hosts")
        if known_hosts is None and sb["trust_on_first_use"]:
            known_hosts = str(Path(data["data_dir"]) / "known_hosts" / sb["id"])
        elif known_hosts is None:
            errors.append(
                f"seedboxes[{i}].known_hosts: required (a file pinning the seedbox's host key),"
                " unless trust_on_first_use: true pins the first key seen"
            )
        elif not sb["trust_on_first_use"] and not Path(known_hosts).is_file():
            errors.append(f"seedboxes[{i}].known_hosts: file not found: {known_hosts}")
        client = sb.get("client")
        if client and client["type"] == "deluge" and not client.get("password"):
            errors.append(
                f"seedboxes[{i}].client.password: required for Deluge (deluge-web's password)"
            )
        if sb["id"] in seedboxes:
            errors.append(f"seedboxes[{i}].id: duplicate seedbox id {sb['id']!r}")
        seedboxes[sb["id"]] = seedbox_config(sb, engine=engine, known_hosts=known_hosts or "")

    types_rules: tuple[TypeRule, ...] = ()
    if "types_config" in data:
        try:
            types_rules = load_types_config(Path(data["types_config"]))
        except (OSError, TypesConfigError) as err:
            errors.append(f"types_config: {err}")

    api = data["api"]
    if ("username" in api) != ("password" in api):
        given, missing = ("username", "password") if "username" in api else ("password", "username")
        errors.append(f"api.{missing}: required with api.{given}")
    elif api["enabled"] and "password" not in api and "api_key" not in api:
        errors.append(
            "api: set username and password (the *arr apps' login), or api_key, to enable it"
        )

    if api["enabled"] and not destinations:
        errors.append("api.enabled: needs a destination (the save path the *arr apps are told)")

    classic_raw = data["classic"]
    # "" with no seedbox: classic mode then has none to speak for, an error only if enabled
    classic_seedbox = classic_raw.get("seedbox") or next(iter(seedboxes), "")
    if classic_raw["enabled"] and not classic_seedbox:
        errors.append("classic.seedbox: classic mode needs a configured seedbox")
    elif classic_raw["enabled"] and classic_seedbox not in seedboxes:
        errors.append(f"classic.seedbox: {classic_seedbox!r} is not a configured seedbox")
    if errors:
        raise ConfigError(errors)

    broker = data["broker"]
    tls_raw = broker["tls"]
    tls: TlsConfig | None = None
    if tls_raw is True or isinstance(tls_raw, dict):
        tls_map: dict[str, Any] = tls_raw if isinstance(tls_raw, dict) else {}
        tls = TlsConfig(
            ca_certs=tls_map.get("ca_certs"),
            certfile=tls_map.get("certfile"),
            keyfile=tls_map.get("keyfile"),
            insecure=tls_map.get("insecure", False),
        )
    transfers = data["transfers"]
    return Config(
        bridge_id=data["bridge"]["id"],
        bridge_name=data["bridge"].get("name", data["bridge"]["id"]),
        data_dir=Path(data["data_dir"]),
        broker=BrokerConfig(
            host=broker["host"],
            port=broker["port"],
            username=broker.get("username"),
            password=broker.get("password"),
            tls=tls,
            client_id=broker.get("client_id") or f"q4d-bridge-{data['bridge']['id']}",
            topic_prefix=broker["topic_prefix"],
            keepalive=broker["keepalive"],
            session_expiry=broker["session_expiry"],
        ),
        seedboxes=seedboxes,
        routing=Routing(
            rules=tuple(
                Rule(
                    destination=r["destination"],
                    conditions=tuple(Condition(**c) for c in r["match"]),
                    subdir=r.get("subdir"),
                    engine=r.get("engine"),
                    ignore=r["ignore"],
                    post=plan,
                )
                for r, plan in zip(data["rules"], rule_plans, strict=True)
            ),
            plans=plans,
            destinations=destinations,
            type_codes=dict(data["type_codes"]),
            default_destination=default_destination,
            types_rules=types_rules,
            default_type=data.get("default_type", "V" if types_rules else None),
            tracker_rules=tracker_rules,
        ),
        transfers=TransfersConfig(
            max_concurrent=transfers["max_concurrent"],
            max_attempts=transfers["max_attempts"],
            retry_initial=transfers["retry_initial"],
            retry_max=transfers["retry_max"],
            nice=transfers["nice"],
            bandwidth_limit=transfers["bandwidth_limit"],
            stall_timeout=transfers["stall_timeout"],
            min_free_space=transfers["min_free_space"],
            space_recheck=transfers["space_recheck"],
            breaker_failures=transfers["breaker_failures"],
            breaker_cooldown=transfers["breaker_cooldown"],
            lftp=LftpConfig(**transfers["lftp"]),
            sftp=SftpConfig(**transfers["sftp"]),
            rsync=RsyncConfig(**transfers["rsync"]),
            verify=transfers["verify"],
            max_repairs=transfers["max_repairs"],
            stream_verify=transfers["stream_verify"],
            file_mode=transfers["file_mode"],
            dir_mode=transfers["dir_mode"],
        ),
        classic=ClassicConfig(
            enabled=classic_raw["enabled"],
            down_topic=classic_raw["down_topic"],
            label_topic=classic_raw["label_topic"],
            seedbox=classic_seedbox,
            labels=classic_raw["labels"],
        ),
        history_retention=data["history_retention"],
        log_level=data["log_level"],
        dispatch=DispatchConfig(
            **{**data["dispatch"], "categories": tuple(data["dispatch"]["categories"])}
        ),
        api=ApiConfig(**api),
        arr={name: ArrConfig(**a) for name, a in data["arr"].items()},
        home_clients={name: HomeClientConfig(**h) for name, h in data["home_clients"].items()},
    )


def client_config(client: dict[str, Any]) -> ClientConfig:
    """A torrent client's settings as CLIENT_SCHEMA checked them."""
    return ClientConfig(
        type=client["type"],
        url=client["url"],
        username=client.get("username"),
        password=client.get("password"),
        verify_tls=client["verify_tls"],
        poll_interval=client["poll_interval"],
        dispatch=ClientDispatch(
            enabled=client["dispatch"],
            weight=client["weight"],
            min_free=client["min_free"],
            max_downloads=client["max_downloads"],
            save_path=client.get("save_path"),
        ),
    )


def seedbox_config(sb: dict[str, Any], *, engine: str, known_hosts: str) -> SeedboxConfig:
    """A seedbox as SEEDBOX_SCHEMA checked it, with its engine and host-key file decided."""
    client = sb.get("client")
    return SeedboxConfig(
        id=sb["id"],
        name=sb.get("name", sb["id"]),
        host=sb["host"],
        port=sb["port"],
        user=sb["user"],
        key=sb.get("key"),
        password=sb.get("password"),
        passphrase=sb.get("passphrase"),
        known_hosts=known_hosts,
        remote_roots=tuple(sb["remote_roots"]),
        max_concurrent=sb["max_concurrent"],
        engine=engine,
        trust_on_first_use=sb["trust_on_first_use"],
        torrent_file=sb.get("torrent_file"),
        client=client_config(client) if client else None,
        hook_flush=sb["hook_flush"].strip(),
        broker_forward_port=sb["broker_forward"]["port"] if "broker_forward" in sb else None,
        reconcile=ReconcileConfig(
            interval=sb["reconcile"]["interval"],
            max_age=sb["reconcile"]["max_age"],
            categories=tuple(sb["reconcile"]["categories"]),
            tags=tuple(sb["reconcile"]["tags"]),
        ),
    )
