"""The MQTT topic tree of protocol v1 (docs/protocol.md#topic-tree)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    bridge_id: str

    @property
    def completed_filter(self) -> str:
        return f"{self.prefix}/seedbox/+/completed"

    @property
    def sequence_filter(self) -> str:
        return f"{self.prefix}/seedbox/+/sequence"

    def completed(self, seedbox: str) -> str:
        return f"{self.prefix}/seedbox/{seedbox}/completed"

    def label(self, seedbox: str) -> str:
        return f"{self.prefix}/seedbox/{seedbox}/label"

    def seedbox_of(self, topic: str, kind: str = "completed") -> str | None:
        """The seedbox of `<prefix>/seedbox/<seedbox>/<kind>`, else None."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        if (
            len(parts) == len(head) + 3
            and parts[: len(head)] == head
            and parts[len(head)] == "seedbox"
            and parts[-1] == kind
        ):
            return parts[len(head) + 1]
        return None

    @property
    def bridge(self) -> str:
        return f"{self.prefix}/bridge/{self.bridge_id}"

    @property
    def status(self) -> str:
        return f"{self.bridge}/status"

    @property
    def state(self) -> str:
        return f"{self.bridge}/state"

    def item(self, item_id: str) -> str:
        return f"{self.bridge}/item/{item_id}"

    @property
    def event(self) -> str:
        return f"{self.bridge}/event"

    @property
    def config(self) -> str:
        """Retained: the configuration's entries, redacted (mqtt/config_commands.py)."""
        return f"{self.bridge}/config"

    @property
    def command(self) -> str:
        return f"{self.bridge}/command"

    @property
    def command_result(self) -> str:
        return f"{self.bridge}/command/result"
