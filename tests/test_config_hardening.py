"""Config loading as a hostile or careless author meets it: every input validates or gets
FILE:LINE errors (exit 1), never a traceback, and secrets in it are never printed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.config import ConfigError, load_config
from tests.services.common import run_cli

BASE = "environments: {production: {}}\ncheck_files: []\n"
TCP = "  - {id: tcp-a, kind: tcp, target: '127.0.0.1:1', env: production%s}\n"


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    return [str(p).replace(str(path), "F") for p in err.value.problems]


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,x", "JAVASCRIPT:x",
                                  "//evil.example.com"])
def test_a_runbook_must_be_an_id_or_an_http_url(tmp_path: Path, link: str) -> None:
    text = BASE + "checks:\n" + TCP % f", runbook: '{link}'"
    assert _problems(tmp_path, text) == [
        f"F:4: checks.0.runbook: unknown runbook {link!r}; give a runbook id (none defined) "
        "or an http(s) URL"]


def test_a_runbook_url_cannot_break_out_of_its_link(tmp_path: Path) -> None:
    text = BASE + "checks:\n" + TCP % ", runbook: 'https://x\" onmouseover=\"y'"
    assert _problems(tmp_path, text) == [
        "F:4: checks.0.runbook: must be a runbook id (e.g. restore-postgres) or an http(s) URL"]


@pytest.mark.parametrize("link", ["https://wiki.example.com/rb?id=3"])
def test_runbook_ids_and_http_urls_are_accepted(tmp_path: Path, link: str) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + "checks:\n" + TCP % f", runbook: '{link}'")
    assert load_config(str(path)).checks[0].runbook == link


def test_a_backup_component_in_an_unknown_environment_is_refused(tmp_path: Path) -> None:
    text = BASE + ("backups:\n  components:\n    pg:\n      env: prodution\n"
                   "      dsn: postgresql://u@h/db\n      recipients: [age1xyz]\n")
    assert _problems(tmp_path, text) == [
        "F:6: backups.components.pg.env: unknown environment 'prodution'; use one of: "
        "production"]


def test_web_request_deadlines_default_and_must_be_positive(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + "web: {body_timeout: 2m}\n")
    web = load_config(str(path)).web
    assert (web.header_timeout, web.body_timeout) == (20.0, 120.0)
    assert _problems(tmp_path, BASE + "web: {header_timeout: 0s}\n") == [
        "F:3: web.header_timeout: Input should be greater than 0"]


def test_a_config_silence_on_an_unknown_check_is_refused(tmp_path: Path) -> None:
    text = BASE + "checks:\n" + TCP % "" + (
        "silences:\n  - matchers: {check: tcp-b}\n    comment: c\n    duration: 1h\n")
    assert _problems(tmp_path, text) == [
        "F:6: silences.0.matchers.check: no check with id 'tcp-b'; use one of the ids from "
        "`controlplane check list` (a typo would silence nothing)"]


@pytest.mark.parametrize("dsn", ["postgresql://svc:p@ss@db.internal/app",
                                 "postgresql://svc:pa:ss@db.internal/app",
                                 "postgresql://svc:pa/ss@db.internal/app"])
def test_a_store_password_with_at_colon_or_slash_is_caught_by_validate(
        tmp_path: Path, dsn: str) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + f"store: {{dsn: '{dsn}'}}\n")
    result = run_cli("validate", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr == (
        f"{path}:3: store.dsn: the user or password holds '@', ':' or '/': percent-encode "
        "them (@ as %40, : as %3A, / as %2F), or pass the password as ?password=… / "
        "PGPASSWORD\n")
    assert "ss@" not in result.stderr and "Traceback" not in result.stderr


def test_a_password_in_the_dsn_query_is_never_printed(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text(BASE + "store: {dsn: 'postgresql://svc@127.0.0.1:1/app?password="
                           "hunter2-query-secret&connect_timeout=2'}\n")
    result = run_cli("run", "--config", str(path), timeout=60)
    assert result.returncode == 2
    assert "hunter2-query-secret" not in result.stderr + result.stdout
    assert "refusing to start: cannot open the store" in result.stderr
    assert "password=***" in result.stderr


BOMB = """a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


def test_an_alias_bomb_is_refused_quickly_with_file_and_line(tmp_path: Path) -> None:
    start = time.monotonic()
    [problem] = _problems(tmp_path, BOMB)
    assert time.monotonic() - start < 5
    assert problem.startswith("F:1: the document expands to more than 100000 values")


def test_a_recursive_alias_is_refused_with_file_and_line(tmp_path: Path) -> None:
    assert _problems(tmp_path, "environments: &e\n  production: *e\n") == [
        "F:1: recursive alias: a value contains itself; remove the alias"]


def test_a_list_as_a_mapping_key_is_refused_with_file_and_line(tmp_path: Path) -> None:
    assert _problems(tmp_path, "? [a, b]\n: 1\n") == [
        "F:1: a key must be a plain value, not a list or a mapping"]


# -- fuzz: random documents over the config's own vocabulary --------------------------------

_KEYS = ["environments", "production", "store", "dsn", "web", "admin_token", "checks", "id",
         "kind", "tcp", "http", "target", "url", "env", "interval", "timeout", "silences",
         "matchers", "check", "comment", "duration", "cron", "backups", "components",
         "runbook", "labels", "check_files", "scheduler", "jitter", "notifiers", "slack",
         "defaults", "hosts", "max_write_age", "<<"]
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                     st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from(["1h", "inf", "nan", "0s", "99999999999d", "",
                                      "javascript:x", "${NOPE}", "${X:-d}", "127.0.0.1:1",
                                      "sqlite://", "postgresql://a:b@c@d/e", "0 2 31 2 *"]),
                     st.text(max_size=12))
_docs = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5)), max_leaves=25)


def _check_loads_or_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        load_config(str(path))
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must name at least one problem"
        assert all(str(p).startswith(f"{path}:") for p in exc.problems)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_docs)
def test_any_document_validates_or_gets_file_line_errors(tmp_path: Path, doc: Any) -> None:
    _check_loads_or_config_error(tmp_path, yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="ab:-[]{}&*!|>'\"#\n ?,%@`~\t", max_size=60))
def test_any_text_validates_or_gets_file_line_errors(tmp_path: Path, text: str) -> None:
    _check_loads_or_config_error(tmp_path, text)


def test_an_invalid_fuzzed_document_exits_1_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "controlplane.yaml"
    path.write_text("environments: {production: {}}\nchecks: [{id: x, kind: tcp, "
                    "interval: nan, target: 1}]\nsilences: [{matchers: {check: x}, "
                    "comment: c, duration: inf}]\nstore: {dsn: ''}\n")
    result = run_cli("validate", "--config", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert all(line.startswith(f"{path}:") for line in result.stderr.splitlines())
