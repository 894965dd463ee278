"""Credential redaction: one table of secret shapes, applied to every text that leaves us.

Results (probes/base.py), log lines (logs.py), Sentry events (sentry.py), Slack and Jira
text (the outbox) and every value a page renders (web/__init__.py) go through
:func:`redact`. A rule hides only the secret part and keeps what says what it was
(``password=***``, ``xoxb-***``, ``https://user:***@host``), so a message stays readable.

The table follows gitleaks' and truffleHog's public rules for the vendors the platform
uses. Each rule names cheap lowercase *hints*: a rule's expression runs only when one of
its hints occurs in the text, so the common case (a message with no credential) costs one
``lower()`` and a few substring tests. See docs/security.md.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

MASK = "***"

# Key names whose value is a secret. Long words may carry any prefix and suffix
# (db_password, aws_secret_access_key, X-Api-Key); short ones only a prefix, so
# "passed: 3" or "author: alice" stay.
_LONG_KEYS = (r"token|passw(?:or)?d|passphrase|secret|api[_-]?key|accountkey|access[_-]?key|"
              r"private[_-]?key|credentials?|signature|authorization|cookie|session[_-]?id|"
              r"client[_-]?secret|auth[_-]?token")
_SHORT_KEYS = r"pass|pwd|sig|auth|pw"
SECRET_KEY = re.compile(rf"(?i)(?:{_LONG_KEYS})|^[\w.-]*(?:{_SHORT_KEYS})$|^dsn$")
"""Matches a mapping key (a dict key, a header name) whose value must never be shown."""

# A prefix (db_password) needs no matching: the match starts at the key word.
_KEY = rf"(?:(?:{_LONG_KEYS})[\w.-]*|(?:{_SHORT_KEYS}))"
_SEP = r"\\?[\"']?\s*[:=]\s*"
_SCHEME = r"(?:(?:bearer|basic|token|digest|negotiate|ntlm|sharedaccesssignature)\s+)?"
# An unquoted value ends at white space, a quote or a separator that starts the next
# key=value pair (";AccountName=", "&se="); "p;ss" or "a,b" stay whole.
_BARE = r"[^\s\"'\\&,;]+(?:[&,;](?![\w.-]+=)[^\s\"'\\&,;]+)*"
_KEY_VALUE = re.compile(
    rf"(?i)(?P<keep>{_KEY}{_SEP}{_SCHEME})(?:"
    r"(?P<dq>\")(?P<dqv>(?:\\.|[^\"\\])*)(?:\"|$)"  # "a b" (JSON escapes inside)
    r"|(?P<eq>\\\")(?P<eqv>(?:(?!\\\").)*)(?:\\\"|$)"  # \"a b\" (JSON inside a JSON string)
    r"|(?P<sq>')(?P<sqv>[^']*)(?:'|$)"  # 'a b'
    rf"|(?P<bare>{_BARE}))")
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


@dataclass(frozen=True)
class Rule:
    """One credential shape. ``pattern``'s group ``s`` (or the whole match) is hidden."""

    name: str
    hints: tuple[str, ...]
    pattern: re.Pattern[str]
    hide: Callable[[re.Match[str]], str] | None = None

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.hide or _hide_group, text)


def _hide_group(m: re.Match[str]) -> str:
    if "s" not in m.re.groupindex or m.group("s") is None:
        return MASK
    start, end = m.span("s")
    base = m.start()
    whole = m.group(0)
    return whole[:start - base] + MASK + whole[end - base:]


def _hide_key_value(m: re.Match[str]) -> str:
    keep = m.group("keep")
    for opener, inner in (("dq", "dqv"), ("eq", "eqv"), ("sq", "sqv")):
        if m.group(opener) is not None:
            closing = m.group(0)[m.end(inner) - m.start():]  # "" when the quote never closed
            return f"{keep}{m.group(opener)}{MASK}{closing}"
    value, tail = m.group("bare"), ""
    # A closing bracket the value never opened belongs to the text around it:
    # "(token=abc)" must stay balanced as "(token=***)", not lose its ")".
    while value and value[-1] in _CLOSERS and \
            value.count(value[-1]) > value.count(_CLOSERS[value[-1]]):
        value, tail = value[:-1], value[-1] + tail
    return f"{keep}{MASK}{tail}"


def _hide_basic(m: re.Match[str]) -> str:
    # "Basic" is an English word: hide what follows only when it decodes to user:password.
    try:
        decoded = base64.b64decode(m.group("s") + "==", validate=False)
    except (binascii.Error, ValueError):
        return m.group(0)
    return m.group("scheme") + MASK if b":" in decoded else m.group(0)


def _rule(name: str, hints: tuple[str, ...], pattern: str,
          hide: Callable[[re.Match[str]], str] | None = None) -> Rule:
    return Rule(name, hints, re.compile(pattern), hide)


RULES: tuple[Rule, ...] = (
    _rule("pem-private-key", ("private key",),
          r"(-----BEGIN[ A-Z0-9_-]*PRIVATE KEY(?: BLOCK)?-----)(?P<s>[\s\S]*?)"
          r"(-----END[ A-Z0-9_-]*PRIVATE KEY(?: BLOCK)?-----|\Z)"),
    _rule("age-secret-key", ("age-secret-key-1",),
          r"(?i)AGE-SECRET-KEY-1(?P<s>[0-9A-Z]{10,})"),
    _rule("jwt", ("eyj",),
          r"\beyJ[A-Za-z0-9_-]{4,}\.(?P<s>eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)"),
    _rule("slack-token", ("xox", "xapp-"),
          r"\b(?:xox[abposre]|xapp)-(?P<s>[A-Za-z0-9-]{8,})"),
    _rule("slack-webhook", ("hooks.slack.com",),
          r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9/_-]{8,})"),
    _rule("aws-access-key-id", ("akia", "asia", "abia", "acca", "a3t"),
          r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])(?P<s>[A-Z0-9]{16})\b"),
    _rule("stripe-key", ("sk_", "rk_", "pk_live", "whsec_"),
          r"\b(?:sk|rk|pk)_(?:live|test|prod)_(?P<s>[A-Za-z0-9]{10,})|\bwhsec_(?P<w>[A-Za-z0-9]{10,})",
          lambda m: m.group(0)[:m.group(0).index("_", 3) + 1] + MASK
          if m.group("s") else "whsec_" + MASK),
    _rule("openai-key", ("sk-",),
          r"\bsk-(?:proj-|svcacct-|admin-|None-)?(?P<s>[A-Za-z0-9_-]{20,})"),
    _rule("twilio-api-key", ("sk",), r"\bSK(?P<s>[0-9a-fA-F]{32})\b"),
    _rule("sentry-token", ("sntrys_", "sntryu_"), r"\bsntry[su]_(?P<s>[A-Za-z0-9+/=_-]{20,})"),
    _rule("github-token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
          r"\b(?:gh[pousr]_|github_pat_)(?P<s>[A-Za-z0-9_]{20,})"),
    _rule("google-api-key", ("aiza",), r"\bAIza(?P<s>[0-9A-Za-z_-]{35})"),
    _rule("paypal-braintree-token", ("access_token$",),
          r"access_token\$(?:production|sandbox)\$(?P<s>[0-9a-z]{16}\$[0-9a-f]{32})"),
    _rule("azure-storage-key", ("==",), r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{86}=="),
    _rule("basic-auth", ("basic",),
          r"(?P<scheme>\b[Bb][Aa][Ss][Ii][Cc]\s+)(?P<s>[A-Za-z0-9+/]{4,}={0,2})(?![\w+/=])",
          _hide_basic),
    _rule("bearer", ("bearer",),
          r"(?i)\bbearer\s+(?P<s>(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,})"),
    # Runs only when a key word occurs (its expression is the costly one).
    Rule("key-value", ("token", "pass", "pwd", "secret", "key", "sig", "auth", "credential",
                       "cookie", "session", "pw"), _KEY_VALUE, _hide_key_value),
    # scheme://user:password@host, scheme://:password@host, user:password@host; the
    # password runs to the last '@' before the host (an unescaped '@' inside stays hidden).
    _rule("url-userinfo", ("@",),
          r"(?:(?<=://)|(?<![\w.%+:/@-]))(?P<u>[\w.%+~-]*):(?P<s>[^\s/@]+(?:@[^\s/@]+)*)"
          r"@(?=[\w.\[-])(?![^\s/@]*@)"),
    # Sentry DSNs: https://PUBLICKEY@o1.ingest.sentry.io/2 (the key is the credential).
    _rule("dsn-key", ("@",), r"(?<=://)(?P<s>[0-9a-fA-F]{16,})@"),
)


_ALL_HINTS = tuple(sorted({h for r in RULES for h in r.hints}))
_RULES_BY_HINT = {h: tuple(r for r in RULES if h in r.hints) for h in _ALL_HINTS}


def redact(text: str) -> str:
    """``text`` with every credential hidden; the same object when there was none."""
    if not text:
        return text
    low = text.lower()
    # Substring tests (C speed, a few µs even for 10 kB) instead of one regex scan.
    hinted = [h for h in _ALL_HINTS if h in low]
    if not hinted:
        return text
    wanted = {r.name for h in hinted for r in _RULES_BY_HINT[h]}
    out = text
    for rule in RULES:  # in table order: specific shapes before generic key=value
        if rule.name in wanted:
            out = rule.apply(out)
    return out if out != text else text


def is_secret_key(name: str) -> bool:
    """True for a mapping key (header, form field, dict key) whose value is a secret."""
    return bool(SECRET_KEY.search(name))
