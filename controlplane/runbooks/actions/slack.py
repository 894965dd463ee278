"""``notify.slack``: post a message with the configured Slack app (notifiers.slack)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from controlplane.notifiers.slack import SlackConfig
from controlplane.runbooks.base import Action, ActionArgs, ActionFailed, ActionResult, StepContext


class SlackArgs(ActionArgs):
    text: str = Field(min_length=1)
    channel: str | None = Field(default=None, description="default: notifiers.slack.channel")


class NotifySlack(Action[SlackArgs]):
    name = "notify.slack"
    args_model = SlackArgs
    summary = "post a message to Slack (the configured app; default channel)"
    default_timeout = 60.0
    example_args: ClassVar[dict[str, object]] = {"text": "Restore started"}

    def _config(self) -> SlackConfig:
        slack = self.services.config.notifiers.get("slack")
        if not isinstance(slack, SlackConfig):
            raise ActionFailed("Slack is not configured: set notifiers.slack")
        return slack

    def _channel(self) -> str:
        return self.args.channel or self._config().channel

    def plan(self) -> list[str]:
        try:
            channel = self._channel()
        except ActionFailed as exc:
            return [f"would fail: {exc.message}"]
        return [f"post to Slack channel {channel}: {self.args.text!r}"]

    def run(self, ctx: StepContext) -> ActionResult:
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError

        channel = self._channel()
        slack = self._config()
        client = WebClient(token=slack.token.get_secret_value(), base_url=slack.base_url,
                           timeout=int(slack.timeout))
        try:
            resp = client.chat_postMessage(channel=channel, text=self.args.text,
                                           unfurl_links=False)
        except SlackApiError as exc:
            raise ActionFailed(f"Slack refused the message: {exc.response.get('error')}") \
                from None
        except OSError as exc:
            raise ActionFailed(f"Slack unreachable: {type(exc).__name__}: {exc}") from None
        return ActionResult(f"posted to {channel}", {"channel": str(resp["channel"]),
                                                     "ts": str(resp["ts"])})
