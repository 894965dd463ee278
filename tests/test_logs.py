"""Log redaction hides credentials and leaves the text around them intact."""

from __future__ import annotations

import pytest

from controlplane.logs import redact


@pytest.mark.parametrize(("text", "expected"), [
    ("slack said (token=abc123)", "slack said (token=***)"),
    ("already blanked (token=***)", "already blanked (token=***)"),
    ("x (a (token=abc)) y", "x (a (token=***)) y"),
    ("[password: hunter2], ok", "[password: ***], ok"),
    ("{secret=s3} <api_key=k1>", "{secret=***} <api_key=***>"),
    ("password=a(b)c end", "password=*** end"),
    ("password=ab)cd end", "password=*** end"),
    ('{"token": "xoxb-1"}', '{"token": "***"}'),
    ("postgres://u:pw@h/db (secret=s3)", "postgres://u:***@h/db (secret=***)"),
])
def test_redaction_keeps_brackets_balanced(text: str, expected: str) -> None:
    assert redact(text) == expected
