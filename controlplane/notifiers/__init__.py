"""Registry of notification channels: one line per channel, imported lazily.

``notifiers:`` in the config is a mapping from a channel name below to that channel's
settings, validated by the channel's own ``config_model``. Lazy so that a config naming
only Slack never imports the Twilio or Jira clients.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from controlplane.notifiers.base import ChannelConfig, Clock, Notifier, system_clock

CHANNELS: dict[str, str] = {
    "slack": "controlplane.notifiers.slack:SlackNotifier",
    "jira": "controlplane.notifiers.jira:JiraNotifier",
    "sms": "controlplane.notifiers.twilio:SmsNotifier",
    "call": "controlplane.notifiers.twilio:CallNotifier",
    "email": "controlplane.notifiers.email:EmailNotifier",
    "webhook": "controlplane.notifiers.webhook:WebhookNotifier",
}


@cache
def notifier_class(channel: str) -> type[Notifier[Any]]:
    """The Notifier class of a channel; KeyError if the channel is unknown."""
    module_name, _, attr = CHANNELS[channel].partition(":")
    cls: type[Notifier[Any]] = getattr(importlib.import_module(module_name), attr)
    return cls


def valid_channels() -> list[str]:
    return sorted(CHANNELS)


def validate_channels(raw: Any) -> dict[str, ChannelConfig]:
    """``notifiers:`` as {channel: its config model}; every problem located under its key."""
    if raw is None:
        return {}
    if isinstance(raw, dict) and all(isinstance(v, ChannelConfig) for v in raw.values()):
        return raw  # already validated (a config object built in code)
    if not isinstance(raw, dict):
        raise ValueError("must be a mapping of channel name to its settings, e.g. "
                         "{slack: {token: ..., channel: C0123ABCD}}")
    out: dict[str, ChannelConfig] = {}
    errors: list[InitErrorDetails] = []
    for name, settings in raw.items():
        if name not in CHANNELS:
            errors.append(InitErrorDetails(type=PydanticCustomError(
                "unknown_channel", f"unknown channel {str(name)!r}; valid channels are: "
                + ", ".join(valid_channels())), loc=(str(name),), input=settings))
            continue
        try:
            out[name] = notifier_class(name).config_model.model_validate(settings or {})
        except ValidationError as exc:
            errors += [InitErrorDetails(type=e["type"], loc=(name, *e["loc"]),
                                        input=e.get("input"), ctx=e.get("ctx") or {})
                       for e in exc.errors()]
    if errors:
        raise ValidationError.from_exception_data("notifiers", errors)
    return out


def build_notifiers(configs: dict[str, ChannelConfig],
                    clock: Clock = system_clock) -> dict[str, Notifier[Any]]:
    """A notifier per enabled channel (no network is touched until the first delivery),
    in registry order: an incident's notifications are queued in the same order whatever
    the order in the YAML."""
    return {name: notifier_class(name)(configs[name], clock) for name in CHANNELS
            if name in configs and configs[name].enabled}
