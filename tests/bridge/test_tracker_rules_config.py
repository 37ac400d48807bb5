"""Tracker rules in the configuration file (`tracker_rules:`): checked by the loader,
in force with the stored ones (the file's domain wins), read-only at runtime, and
`config export` writes both, so a file-based install keeps the rules added from Home
Assistant or the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from q4d_bridge import cli
from q4d_bridge.config.loader import parse_config
from q4d_bridge.mqtt.remote import RemoteError, call_bridge
from q4d_bridge.mqtt.topics import Topics
from q4d_bridge.tracker_rules import TrackerRule

from tests.bridge.test_e2e import running_bridge
from tests.helpers.configs import bridge_config, errors_of
from tests.helpers.services import Mosquitto, SshServer

FILE_RULES = [
    {"tracker": "https://Keep.Example.org/announce/passkey", "ignore": True},
    {"tracker": "films.example.net", "destination": "movies", "category": "films"},
]


def raw_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    for name in ("key", "known_hosts"):
        (tmp_path / name).write_text(name)
    return bridge_config(
        tmp_path / "data", tmp_path / "library", key=tmp_path / "key",
        known_hosts=tmp_path / "known_hosts", **overrides,
    )  # fmt: skip


def test_the_file_s_rules_are_checked_and_kept_in_order(tmp_path: Path) -> None:
    config = parse_config(raw_config(tmp_path, tracker_rules=FILE_RULES))
    rules = config.routing.tracker_rules
    assert (
        rules.rules
        == rules.configured
        == (
            TrackerRule("keep.example.org", ignore=True),  # the URL's host only: no passkey
            TrackerRule("films.example.net", "films", "movies"),
        )
    )
    assert rules.in_file("keep.example.org") and not rules.in_file("example.org")
    # a stored rule for a domain the file sets is shadowed; others follow the file's
    rules.replace([TrackerRule("keep.example.org", "x"), TrackerRule("other.org", "y")])
    assert [r.tracker for r in rules.rules] == [
        "keep.example.org", "films.example.net", "other.org"
    ]  # fmt: skip
    assert rules.rules[0].ignore

    refusals = {
        "tracker_rules[0].tracker: tracker must be a domain such as tracker.example.org": {
            "tracker": "not a domain", "ignore": True},
        "tracker_rules[0]: give destination, category or ignore: true": {"tracker": "b.org"},
        "tracker_rules[0]: ignore leaves the torrents on the seedbox: give no category or "
        "destination": {"tracker": "c.org", "ignore": True, "category": "tv"},
    }  # fmt: skip
    for refusal, entry in refusals.items():
        assert errors_of(raw_config(tmp_path, tracker_rules=[entry])) == [refusal]
    twice = [{"tracker": "a.org", "destination": "nowhere"}, {"tracker": "a.org", "ignore": True}]
    assert errors_of(raw_config(tmp_path, tracker_rules=twice)) == [
        "tracker_rules[0].destination: 'nowhere' is not in destinations",
        "tracker_rules[1].tracker: a second rule for a.org",
    ]


async def test_the_file_s_rules_apply_are_read_only_and_export_with_the_stored(
    tmp_path: Path, mosquitto: Mosquitto, sshd: SshServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_bridge(tmp_path, mosquitto, sshd, engine="sftp",
                              tracker_rules=FILE_RULES) as env:  # fmt: skip
        broker = env.bridge.config.broker
        topics = Topics("q4d", "test")

        async def ask(op: str, args: dict[str, Any]) -> Any:
            return await call_bridge(broker, topics, op, args, within=15)

        for op, args in (
            ("tracker_rule_remove", {"tracker": "keep.example.org"}),
            ("tracker_rule_add", {"tracker": "films.example.net", "category": "x"}),
        ):
            with pytest.raises(RemoteError) as refused:
                await ask(op, args)
            assert (refused.value.code, refused.value.message) == (
                "read_only",
                f"the tracker rule for {args['tracker']} is set in the configuration file; "
                "edit it there",
            )
        added = await ask("tracker_rule_add", {"tracker": "tv.example.com", "destination": "tv"})
        assert [(r["tracker"], r["source"]) for r in added["rules"]] == [
            ("keep.example.org", "file"), ("films.example.net", "file"),
            ("tv.example.com", "runtime"),
        ]  # fmt: skip

        await env.complete("Kept.mkv", "ab" * 20, event_id="k1", category="tv",
                           tracker="https://t.keep.example.org/announce")  # fmt: skip
        (ignored,) = await env.recorder.wait_for(lambda: env.recorder.events("ignored"), 15)
        assert ignored["rule"] == "tracker keep.example.org"

        config_file = tmp_path / "bridge.yaml"
        config_file.write_text(yaml.safe_dump(env.raw))
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, ["config", "export", "-c", str(config_file)])
        out = capsys.readouterr().out
        assert code == 0
        assert "and 1 tracker rule(s) added at runtime" in out
        exported = yaml.safe_load(out)
        assert exported["tracker_rules"] == [
            *FILE_RULES,  # as the file gives them
            {"tracker": "tv.example.com", "destination": "tv"},
        ]
        # the export is a configuration that holds all three
        reread = parse_config(exported).routing.tracker_rules.configured
        assert [r.tracker for r in reread] == [
            "keep.example.org", "films.example.net", "tv.example.com"
        ]  # fmt: skip
