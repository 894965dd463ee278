"""The channel registry: `notifiers:` is validated through it, with FILE:LINE errors."""

from __future__ import annotations

from pathlib import Path

from controlplane.config import ControlPlaneConfig
from controlplane.notifiers import CHANNELS, build_notifiers, notifier_class, valid_channels
from controlplane.notifiers.base import ChannelConfig
from tests.incidents.test_config import _validate


def test_every_registered_channel_names_itself_and_its_config_model() -> None:
    for name in CHANNELS:
        cls = notifier_class(name)
        assert cls.channel == name
        assert issubclass(cls.config_model, ChannelConfig)


def test_an_unknown_channel_stops_start_up_listing_the_valid_ones(tmp_path: Path) -> None:
    code, errors = _validate(tmp_path, """notifiers:
  slack: {token: xoxb-1, channel: C0ONCALL}
  pagerduty:
    key: abc
""")
    path = tmp_path / "controlplane.yaml"
    assert (code, errors) == (1, [
        f"{path}:6: notifiers.pagerduty: unknown channel 'pagerduty'; valid channels are: "
        "call, email, jira, slack, sms, webhook"])


def test_each_channels_own_fields_are_checked_at_their_line(tmp_path: Path) -> None:
    code, errors = _validate(tmp_path, """notifiers:
  sms:
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token: t
    from_number: "+15550199001"
    to: ["+15550100001", "0800 123"]
  webhook:
    url: hooks.example.com
    secret: short
  email:
    host: smtp.example.com
    sender: cp@example.com
    to: [oncall@example.com]
    security: none
""")
    path = tmp_path / "controlplane.yaml"
    assert (code, errors) == (1, [
        f"{path}:8: notifiers.sms.to: '0800 123' is not a phone number in E.164 form such "
        "as +15551234567",
        f"{path}:10: notifiers.webhook.url: must be an http(s) URL such as "
        "https://hooks.example.com/cp",
        f"{path}:11: notifiers.webhook.secret: you must give a secret of at least 16 "
        "characters; the receiver verifies every request with it",
        f"{path}:16: notifiers.email.security: Input should be 'starttls' or 'tls'",
    ])


def test_channels_are_built_in_registry_order_and_disabled_ones_left_out() -> None:
    cfg = ControlPlaneConfig.model_validate({
        "environments": {"production": {}},
        "notifiers": {"webhook": {"url": "https://h.example.com", "secret": "s" * 16},
                      "jira": {"server": "https://j.example.com", "token": "t",
                               "project": "OPS", "enabled": False},
                      "slack": {"token": "x", "channel": "C0ONCALL"}}})
    assert list(build_notifiers(cfg.notifiers)) == ["slack", "webhook"]
    assert valid_channels() == sorted(CHANNELS)
