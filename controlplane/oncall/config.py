"""The ``oncall:`` config section: people, schedules (layers of rotations) and overrides.

Everything is validated here, once: an unknown person, a bad time zone or a handoff that is
not a time of day stops start-up with a FILE:LINE error that says what to write instead.

```yaml
oncall:
  people:
    alice: {name: Alice Martin, slack: U0ALICE, phone: "+4915112345678",
            email: alice@techhalo.ai, timezone: Europe/Berlin}
  schedules:
    primary:
      timezone: Europe/Berlin
      layers:
        - {rotation: weekly, handoff: "09:00", start: 2026-11-30, people: [alice, bob]}
  overrides:
    - {schedule: primary, person: bob, covers: alice,
       from: "2026-12-24T09:00:00+01:00", to: "2026-12-27T09:00:00+01:00"}
```
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from controlplane.durations import Duration
from controlplane.severity import Severity

ID = r"^[a-z0-9][a-z0-9._-]*$"
Id = Annotated[str, StringConstraints(pattern=ID)]
"""A person or schedule id (config.py's PATTERN_HINTS says how to fix a bad one)."""
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
SLACK_USER = re.compile(r"[UW][A-Z0-9]{6,}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError with an example when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as "
                         "Europe/Berlin, America/New_York or UTC") from None


def _zone_name(v: str) -> str:
    zone(v)
    return v


def time_of_day(v: Any) -> time:
    """``"09:00"`` (or YAML's sexagesimal 540 for an unquoted 09:00) as a time of day."""
    if isinstance(v, time):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 60:
        return time(v // 60, v % 60)  # YAML 1.1 reads an unquoted 09:00 as 540
    if isinstance(v, str) and re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", v.strip()):
        hours, minutes = v.strip().split(":")
        return time(int(hours), int(minutes))
    raise ValueError(f"{v!r} is not a time of day; write it as HH:MM in 24-hour time, "
                     "e.g. \"09:00\"")


class PersonConfig(_Model):
    """Someone who can be on call; contact details are what channels deliver to."""

    name: str = Field(min_length=1)
    slack: str | None = Field(default=None, description="Slack user id (U…), for DMs")
    phone: str | None = Field(default=None, description="E.164 number for SMS and calls")
    email: str | None = None
    timezone: str = "UTC"

    _tz = field_validator("timezone")(_zone_name)

    @field_validator("slack")
    @classmethod
    def _slack(cls, v: str | None) -> str | None:
        if v is not None and not SLACK_USER.fullmatch(v):
            raise ValueError(f"{v!r} is not a Slack user id; copy it from the profile "
                             "(⋮ → Copy member ID), e.g. U0123ABCD")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v is not None and not E164.fullmatch(v):
            raise ValueError(f"{v!r} is not an E.164 phone number; write + country code "
                             "and number without spaces, e.g. \"+4915112345678\" (quoted)")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not EMAIL.fullmatch(v):
            raise ValueError(f"{v!r} is not an email address such as alice@techhalo.ai")
        return v


class Restriction(_Model):
    """A weekly window a layer covers, in the layer's zone; ``end`` before ``start`` runs
    past midnight (22:00–06:00 on mon means Monday 22:00 to Tuesday 06:00)."""

    days: list[Day] = Field(
        default_factory=lambda: list(DAYS), min_length=1)
    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _tod(cls, v: Any) -> time:
        return time_of_day(v)


class LayerConfig(_Model):
    """One rotation: ``people`` take turns, each for one ``length``, handing off at
    ``handoff`` local time. Later layers win where they have someone on call."""

    name: str = ""
    rotation: Literal["daily", "weekly", "custom"]
    length: Duration | None = Field(default=None, description="custom rotations only")
    handoff: time = time(9, 0)
    start: date = Field(description="the day the first shift (people[0]) begins")
    timezone: str | None = Field(default=None, description="default: the schedule's")
    people: list[str] = Field(min_length=1)
    restrictions: list[Restriction] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return v if v is None else _zone_name(v)

    @field_validator("handoff", mode="before")
    @classmethod
    def _tod(cls, v: Any) -> time:
        return time_of_day(v)

    @model_validator(mode="after")
    def _length(self) -> LayerConfig:
        if self.rotation == "custom":
            if self.length is None:
                raise ValueError("a custom rotation needs length, e.g. length: 3d or 12h")
            if self.length < 3600:
                raise ValueError("length must be at least 1h")
        elif self.length is not None:
            raise ValueError(f"length is only for rotation: custom; a {self.rotation} "
                             "rotation's shifts are one " + ("day" if self.rotation == "daily"
                                                             else "week") + " long")
        return self

    @property
    def shift_seconds(self) -> float:
        if self.rotation == "daily":
            return 86400.0
        if self.rotation == "weekly":
            return 7 * 86400.0
        assert self.length is not None
        return self.length


class ScheduleConfig(_Model):
    name: str = ""
    timezone: str = "UTC"
    layers: list[LayerConfig] = Field(min_length=1)

    _tz = field_validator("timezone")(_zone_name)

    def layer_zone(self, layer: LayerConfig) -> ZoneInfo:
        return zone(layer.timezone or self.timezone)


class OverrideConfig(_Model):
    """``person`` is on call for ``schedule`` from ``from`` to ``to``; with ``covers``, only
    where that person would have been (a cover that spans a handoff ends at it)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schedule: str
    person: str
    covers: str | None = None
    starts_at: datetime = Field(alias="from")
    ends_at: datetime = Field(alias="to")
    reason: str = ""

    @model_validator(mode="after")
    def _window(self) -> OverrideConfig:
        for ts in (self.starts_at, self.ends_at):
            if ts.tzinfo is None:
                raise ValueError("from and to need a zone, e.g. 2026-12-24T09:00:00+01:00")
        if self.ends_at <= self.starts_at:
            raise ValueError("to must be after from")
        return self


TARGET = re.compile(r"(oncall|person|channel):([a-z0-9][a-z0-9._-]*)")


class PolicyMatch(_Model):
    """Which incidents a policy takes: severity in the list, every label equal, env in the
    list (an empty list or mapping matches everything)."""

    severity: list[Severity] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    env: list[str] = Field(default_factory=list)


class StepConfig(_Model):
    """One escalation step: ``after`` the previous step (the first: after the incident
    opened), page ``notify`` targets through the ``via`` channels."""

    after: Duration = 0.0
    notify: list[str] = Field(min_length=1, description=(
        "oncall:<schedule> (who is on call when the step fires), person:<id>, or "
        "channel:<name> (the channel's own destination, e.g. the Slack channel)"))
    via: list[str] = Field(default_factory=list, description=(
        "channels that reach the people targets (their Slack id, phone or email)"))

    @field_validator("notify")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        for target in v:
            if not TARGET.fullmatch(target):
                raise ValueError(f"{target!r} is not a target; write oncall:<schedule>, "
                                 "person:<id> or channel:<name>, e.g. oncall:primary")
        return v

    @field_validator("via")
    @classmethod
    def _can_page(cls, v: list[str]) -> list[str]:
        from controlplane.notifiers import notifier_class, valid_channels

        paging = [c for c in valid_channels() if notifier_class(c).contact]
        for channel in v:
            if channel not in paging:
                raise ValueError(f"{channel!r} cannot page a person; use one of: "
                                 + ", ".join(paging))
        return v

    @model_validator(mode="after")
    def _via(self) -> StepConfig:
        from controlplane.notifiers import valid_channels

        people = [t for t in self.notify if not t.startswith("channel:")]
        if people and not self.via:
            raise ValueError(f"{people[0]} needs via: the channels that page people, "
                             "e.g. via: [sms] or via: [slack]")
        for channel in self.channel_targets():
            if channel not in valid_channels():
                raise ValueError(f"channel:{channel} is not a channel; use one of: "
                                 + ", ".join(valid_channels()))
        return self

    def channel_targets(self) -> list[str]:
        return [t.split(":", 1)[1] for t in self.notify if t.startswith("channel:")]


class PolicyConfig(_Model):
    match: PolicyMatch = Field(default_factory=PolicyMatch)
    steps: list[StepConfig] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=20, description=(
        "run the whole chain this many more times while nobody acknowledges"))
    repeat_after: Duration = Field(default=600.0, description=(
        "pause between the last step and the next round's first step"))


DEFAULT_POLICIES: dict[str, Any] = {"critical": {
    "match": {"severity": ["critical"]},
    "steps": [
        {"after": "0s", "notify": ["channel:slack", "oncall:primary"], "via": ["slack"]},
        {"after": "5m", "notify": ["oncall:primary"], "via": ["sms"]},
        {"after": "10m", "notify": ["oncall:secondary"], "via": ["sms", "call"]},
        {"after": "15m", "notify": ["person:manager"], "via": ["sms", "email"]}]}}
"""The platform's default when schedules exist and ``policies`` is not set: critical ->
the Slack channel and a DM to the primary on-call at once; SMS to them after 5 min; SMS
and a call to the secondary at 15 min; the manager at 30 min (delays add up)."""


class OncallConfig(_Model):
    people: dict[Id, PersonConfig] = Field(default_factory=dict)
    schedules: dict[Id, ScheduleConfig] = Field(default_factory=dict)
    overrides: list[OverrideConfig] = Field(default_factory=list)
    policies: dict[Id, PolicyConfig] | None = Field(default=None, description=(
        "escalation policies, the first that matches an incident applies; default "
        "DEFAULT_POLICIES when schedules are configured, none otherwise"))

    def effective_policies(self) -> dict[str, PolicyConfig]:
        if self.policies is not None:
            return self.policies
        if not self.schedules:
            return {}
        return {k: PolicyConfig.model_validate(v) for k, v in DEFAULT_POLICIES.items()}

    @model_validator(mode="after")
    def _references(self) -> OncallConfig:
        errors: list[InitErrorDetails] = []
        for sid, sched in self.schedules.items():
            for li, layer in enumerate(sched.layers):
                for pi, person in enumerate(layer.people):
                    self._person_ref(person, ("schedules", sid, "layers", li, "people", pi),
                                     errors)
        for oi, ov in enumerate(self.overrides):
            if ov.schedule not in self.schedules:
                errors.append(_error(("overrides", oi, "schedule"), ov.schedule,
                                     f"unknown schedule {ov.schedule!r}; "
                                     f"use one of: {_names(self.schedules)}"))
            self._person_ref(ov.person, ("overrides", oi, "person"), errors)
            if ov.covers is not None:
                self._person_ref(ov.covers, ("overrides", oi, "covers"), errors)
        self._policy_refs(errors)
        if errors:
            raise ValidationError.from_exception_data("OncallConfig", errors)
        return self

    def _policy_refs(self, errors: list[InitErrorDetails]) -> None:
        default = self.policies is None
        for pid, policy in self.effective_policies().items():
            for si, step in enumerate(policy.steps):
                for ti, target in enumerate(step.notify):
                    kind, _, ref = target.partition(":")
                    loc: tuple[str | int, ...] = ("policies", pid, "steps", si, "notify", ti)
                    hint = (" (the default escalation policy pages oncall:primary, "
                            "oncall:secondary and person:manager; define them, or write "
                            "your own oncall.policies, or policies: {} for none)") \
                        if default else ""
                    if default:
                        loc = ("schedules",) if kind == "oncall" else ("people",)
                    if kind == "oncall" and ref not in self.schedules:
                        errors.append(_error(loc, target, f"unknown schedule {ref!r}; use one "
                                             f"of: {_names(self.schedules)}{hint}"))
                    elif kind == "person" and ref not in self.people:
                        errors.append(_error(loc, target, f"unknown person {ref!r}; use one "
                                             f"of: {_names(self.people)}{hint}"))

    def check_channels(self, configured: set[str]) -> None:
        """A step of the configured policies that names a channel missing under
        ``notifiers`` is an error at its line. The platform default is not held to it: its
        pages through missing channels are skipped and said so on the incident's timeline."""
        errors: list[InitErrorDetails] = []
        for pid, policy in (self.policies or {}).items():
            for si, step in enumerate(policy.steps):
                named = [("via", i, c) for i, c in enumerate(step.via)] + [
                    ("notify", i, t) for i, t in enumerate(step.notify)
                    if t.startswith("channel:")]
                for field, i, value in named:
                    channel = value.removeprefix("channel:")
                    if channel not in configured:
                        errors.append(_error(
                            ("oncall", "policies", pid, "steps", si, field, i), value,
                            f"channel {channel} is not configured; add it under notifiers "
                            "(docs/channels.md) or page through one that is: "
                            + (", ".join(sorted(configured)) or "(none configured)")))
        if errors:
            raise ValidationError.from_exception_data("ControlPlaneConfig", errors)

    def _person_ref(self, person: str, loc: tuple[str | int, ...],
                    errors: list[InitErrorDetails]) -> None:
        if person not in self.people:
            errors.append(_error(loc, person, f"unknown person {person!r}; define them under "
                                 f"oncall.people or use one of: {_names(self.people)}"))

    def schedule(self, schedule_id: str) -> ScheduleConfig:
        try:
            return self.schedules[schedule_id]
        except KeyError:
            raise KeyError(f"no schedule {schedule_id!r}; configured: "
                           f"{_names(self.schedules)}") from None


def _names(d: dict[str, Any]) -> str:
    return ", ".join(sorted(d)) or "(none configured)"


def _error(loc: tuple[str | int, ...], value: Any, message: str) -> InitErrorDetails:
    # A ValidationError raised here keeps its own locations under the section's, so the
    # FILE:LINE points at the bad reference, not at the top of `oncall:`.
    return InitErrorDetails(type=PydanticCustomError("reference", message), loc=loc,
                            input=value)
