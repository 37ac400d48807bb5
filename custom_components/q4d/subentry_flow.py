"""What the subentry flows (`subentries`) share: the bridge they ask, its
answers as form errors, and saving an entry on the bridge and in Home Assistant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Final

from homeassistant.config_entries import (
    SOURCE_USER,
    ConfigEntryState,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from .config_answers import Answer, async_ask, form_errors
from .config_sync import APPLY_TIMEOUT, ConfigSync
from .config_values import (
    IDENTIFIER,
    SECTIONS,
    BridgeEntry,
    public,
    subentry_title,
    unique_id,
)
from .const import LOGGER

# An SSH probe may wait for the bridge's 20 s connect timeout, then check every root.
TEST_TIMEOUT: Final = 60.0
PASSWORD = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
TEXT = TextSelector()


def select(options: tuple[str, ...], key: str) -> SelectSelector:
    return SelectSelector(
        SelectSelectorConfig(
            options=list(options), translation_key=key, mode=SelectSelectorMode.DROPDOWN
        )
    )


def number(low: int, high: int) -> NumberSelector:
    return NumberSelector(
        NumberSelectorConfig(min=low, max=high, step=1, mode=NumberSelectorMode.BOX)
    )


class BridgeSubentryFlow(ConfigSubentryFlow):
    """What the flows share: the bridge, its answers, saving."""

    subentry_type: ClassVar[str]
    first_step: ClassVar[str]
    id_field: ClassVar[str] = "id"

    def __init__(self) -> None:
        """A new flow: nothing known yet."""
        self._id = ""
        self._current: dict[str, Any] = {}
        self._placeholders: dict[str, str] = {"message": "", "root": "", "fingerprint": ""}
        self._sync: ConfigSync | None = None

    @property
    def _creating(self) -> bool:
        return self.source == SOURCE_USER

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Add an entry to the bridge."""
        return self._refusal() or await self._async_first_step()

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Edit the bridge's entry (not one from its YAML file)."""
        subentry = self._get_reconfigure_subentry()
        if subentry.data.get("read_only"):
            return self.async_abort(reason="read_only_yaml")
        if refused := self._refusal():
            return refused
        assert self._sync is not None
        self._id = str(subentry.data["id"])
        # what the bridge has, unless its configuration since the last change is not in
        bridge_entry = self._sync.entry_of(self.subentry_type, self._id)
        self._current = dict(
            bridge_entry.value if bridge_entry is not None else subentry.data["value"]
        )
        return await self._async_first_step()

    async def _async_first_step(self) -> SubentryFlowResult:
        """The flow's first form, prefilled from `_current` by `_prepare`."""
        self._prepare()
        step = getattr(self, f"async_step_{self.first_step}")
        result: SubentryFlowResult = await step()
        return result

    def _prepare(self) -> None:
        """Fill the forms in from the entry being edited (nothing on a new one)."""

    def _refusal(self) -> SubentryFlowResult | None:
        """Why the bridge cannot be asked now, if it cannot; else it is `_sync`."""
        entry = self._get_entry()
        if entry.state is not ConfigEntryState.LOADED or not entry.runtime_data.coordinator.online:
            return self.async_abort(reason="cannot_connect")
        self._sync = entry.runtime_data.config_sync
        if self._sync.config is None:
            # a bridge from before configuration commands (a new one publishes at start)
            return self.async_abort(reason="unsupported")
        return None

    def _check_id(self, form: dict[str, Any]) -> dict[str, str]:
        """A new entry's id (or name) is the bridge's kind of id, and not taken."""
        if not self._creating:
            return {}
        self._id = form[self.id_field].strip()
        assert self._sync is not None
        if not IDENTIFIER.match(self._id):
            return {self.id_field: "invalid_id"}
        if self._id in self._sync.ids(self.subentry_type):
            return {self.id_field: "already_configured"}
        return {}

    async def _async_command(self, op: str, args: dict[str, Any], time_limit: float) -> Answer:
        assert self._sync is not None
        return await async_ask(self._sync.coordinator, op, args, time_limit)

    async def _async_test(self, kind: str, value: dict[str, Any]) -> Answer:
        return await self._async_command(
            "config_test", {"kind": kind, "value": value}, TEST_TIMEOUT
        )

    async def _async_submit(
        self,
        form: dict[str, Any],
        kind: str,
        to_value: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
        fields: frozenset[str],
    ) -> tuple[SubentryFlowResult | None, dict[str, str]]:
        """A one-form entry submitted: its id checked, its value tested on the bridge
        (`config_test` of `kind`), then saved; the flow's result, or the form's errors."""
        if errors := self._check_id(form):
            return None, errors
        value = to_value(form, self._current)
        answer = await self._async_test(kind, value)
        result = await self._async_save(value) if answer.code is None else answer
        if isinstance(result, Answer):
            return None, self._errors(result, fields)
        return result, {}

    def _errors(self, answer: Answer, fields: frozenset[str], scope: str = "") -> dict[str, str]:
        """A refusal as form errors (`config_answers.form_errors`); its placeholders
        are the next form's."""
        errors, self._placeholders = form_errors(answer, fields, scope)
        return errors

    async def _async_save(self, value: dict[str, Any]) -> SubentryFlowResult | Answer:
        """`config_set`, then the subentry: created, or updated and the flow ended."""
        assert self._sync is not None
        key = unique_id(self.subentry_type, self._id)
        self._sync.async_hold(key)
        answer = await self._async_command(
            "config_set",
            {"section": SECTIONS[self.subentry_type], "id": self._id, "value": value},
            APPLY_TIMEOUT,
        )
        if answer.code == "apply_failed":
            # Stored, and applied when the bridge starts again: saved all the same.
            LOGGER.warning(
                "Bridge %s saved %s %s but could not apply it now: it applies when the "
                "bridge restarts (its log says why)",
                self._sync.coordinator.name,
                self.subentry_type,
                self._id,
            )
            answer = Answer(result=answer.details)
        if answer.code is not None:
            self._sync.async_release(key)
            return answer
        self._sync.async_changed(answer.result.get("revision"))
        bridge_entry = BridgeEntry(id=self._id, read_only=False, value=value)
        title = subentry_title(self.subentry_type, bridge_entry)
        data = {"id": self._id, "read_only": False, "value": public(value)}
        # The subentry exists once this step returns; `async_remove` then releases it.
        if self._creating:
            return self.async_create_entry(title=title, data=data, unique_id=key)
        return self.async_update_and_abort(
            self._get_entry(), self._get_reconfigure_subentry(), title=title, data=data
        )

    def async_remove(self) -> None:
        """The flow ended (saved, aborted or closed): the sync owns the entry again."""
        if self._sync is not None and self._id:
            self._sync.async_release(unique_id(self.subentry_type, self._id))
