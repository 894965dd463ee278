"""Contract fakes: how the contract suite drives each registered channel.

A new channel adds one entry to SUBJECTS: a context manager that starts its fake (or real
server), builds the notifier against it and says how to make the service fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from controlplane.notifiers import notifier_class
from controlplane.notifiers.base import ACTIONS, Notifier
from controlplane.sandbox.jira_fake import JiraFake
from controlplane.sandbox.servers import AppServer
from controlplane.sandbox.slack_fake import SlackFake
from controlplane.sandbox.twilio_fake import TwilioFake
from tests.notifiers.receiver import SECRET, Receiver
from tests.services.smtp import PASSWORD, USER, SmtpServer

FROM_NUMBER, ONCALL_NUMBER = "+15550199001", "+15550100001"


@dataclass
class Subject:
    notifier: Notifier[Any]
    outage: Callable[[], None]        # the service fails retryably until healed
    reject: Callable[[], None]        # the service rejects the next request for good
    delivered: Callable[[], int]      # incident objects (Slack roots, issues, texts, ...)
    sent: Callable[[], int]           # every distinct delivery (replies, comments too)
    heal: Callable[[], None]
    outage_text: str                  # what the retryable error says
    threaded: bool = False            # later actions need the references from open


def _config(name: str, **fields: Any) -> Any:
    return notifier_class(name).config_model.model_validate(fields)


@contextmanager
def slack(_: pytest.FixtureRequest) -> Iterator[Subject]:
    fake = SlackFake()
    fake.start()
    n = notifier_class("slack")(_config("slack", token=fake.token, base_url=fake.api_url,
                                        channel="C0ONCALL"))
    yield Subject(n, lambda: fake.down(503), lambda: fake.fail("channel_not_found"),
                  lambda: len(fake.messages(roots_only=True)), lambda: len(fake.messages()),
                  fake.heal, "slack unavailable: HTTP 503", threaded=True)
    fake.stop()


@contextmanager
def jira(_: pytest.FixtureRequest) -> Iterator[Subject]:
    fake = JiraFake()
    fake.start()
    n = notifier_class("jira")(_config("jira", server=fake.url, user=fake.user,
                                       token=fake.token, project="OPS"))
    yield Subject(n, lambda: fake.down(503), lambda: setattr(fake, "issue_types", set()),
                  lambda: len(fake.issues),
                  lambda: len(fake.issues) + sum(len(i.comments) for i in fake.issues.values()),
                  fake.heal, "jira unavailable: HTTP 503", threaded=True)
    fake.stop()


@contextmanager
def _twilio(channel: str) -> Iterator[Subject]:
    fake = TwilioFake()
    server = AppServer("twilio", fake.app).start()
    n = notifier_class(channel)(_config(
        channel, account_sid=fake.account_sid, auth_token=fake.auth_token,
        from_number=FROM_NUMBER, to=[ONCALL_NUMBER], api_base=server.url,
        events=list(ACTIONS), min_severity="minor"))

    def count() -> int:
        return len(fake.messages) if channel == "sms" else len(fake.calls)

    def opens() -> int:  # an open's text starts with its state, its call with "alert"
        if channel == "sms":
            return sum(1 for m in fake.messages if m.body.startswith("[FAILING]"))
        return sum(1 for c in fake.calls if "Control plane alert." in (c.twiml or ""))

    yield Subject(n, lambda: fake.fail_requests(503, count=None),
                  lambda: fake.fail_requests(400, method="POST"), opens, count,
                  fake.clear_fault, f"{channel} unavailable: HTTP 503")
    server.stop()
    fake.stop()


@contextmanager
def sms(_: pytest.FixtureRequest) -> Iterator[Subject]:
    with _twilio("sms") as subject:
        yield subject


@contextmanager
def call(_: pytest.FixtureRequest) -> Iterator[Subject]:
    with _twilio("call") as subject:
        yield subject


@contextmanager
def email(request: pytest.FixtureRequest) -> Iterator[Subject]:
    server: SmtpServer = request.getfixturevalue("smtp_server")
    box = server.box
    n = notifier_class("email")(_config(
        "email", host=server.host, port=server.port, username=USER, password=PASSWORD,
        sender="controlplane@example.com", to=["oncall@example.com"], ca_file=server.ca_file,
        events=list(ACTIONS), min_severity="minor", timeout="5s"))

    def answer(text: str | None) -> None:
        box.rcpt_answer = text

    # Mail stores keep one copy per Message-ID: that is what a reader sees.
    yield Subject(n, lambda: answer("451 4.3.0 Mailbox temporarily unavailable"),
                  lambda: answer("550 5.1.1 No such user here"),
                  lambda: len({str(m["Message-ID"]) for m in box.mails
                               if not m["In-Reply-To"]}),
                  lambda: len(set(box.message_ids())), lambda: answer(None),
                  "email unavailable: recipients deferred: oncall@example.com: 451")


@contextmanager
def webhook(_: pytest.FixtureRequest) -> Iterator[Subject]:
    r = Receiver()
    n = notifier_class("webhook")(_config("webhook", url=r.url, secret=SECRET))

    def answer(value: tuple[int, dict[str, str]] | None) -> None:
        r.answer = value

    opens = lambda: len({p["body"]["idempotency_key"] for p in r.posts  # noqa: E731
                         if p["body"]["action"] == "open"})
    yield Subject(n, lambda: answer((503, {})), lambda: answer((410, {})), opens,
                  r.deliveries, lambda: answer(None), "webhook unavailable: HTTP 503")
    r.stop()


SUBJECTS: dict[str, Callable[[pytest.FixtureRequest], AbstractContextManager[Subject]]] = {
    "slack": slack, "jira": jira, "sms": sms, "call": call, "email": email,
    "webhook": webhook,
}
