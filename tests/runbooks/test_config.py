"""Runbook files are validated with the config: FILE:LINE errors naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import ConfigError, load_config
from controlplane.runbooks import valid_actions
from tests.runbooks.conftest import runbook, step, write_site

ROOT = Path(__file__).resolve().parents[2]


def problems(tmp_path: Path, text: str, **kw: object) -> list[str]:
    path = write_site(tmp_path, [], **kw)  # type: ignore[arg-type]
    (tmp_path / "runbooks" / "rb.yaml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in exc.value.problems]


def test_the_platform_runbooks_are_valid() -> None:
    cfg = load_config(str(ROOT / "controlplane.yaml"))
    ids = {r.id for r in cfg.runbooks}
    assert {"post-deploy-smoke", "postgres-restore"} <= ids


def test_unknown_action_lists_the_valid_ones(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nsteps:\n"
                             "  - id: a\n    action: shell.exec\n")
    assert got == ["runbooks/rb.yaml:6: steps.0.action: unknown action 'shell.exec'; valid "
                   "actions are: " + ", ".join(valid_actions())]


def test_unknown_argument_lists_the_valid_ones(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nsteps:\n"
                             "  - id: a\n    action: wait\n    args:\n      duraton: 5s\n")
    assert "runbooks/rb.yaml:8: steps.0.args.duraton: unknown argument of wait; valid " \
           "arguments are: deadline, duration, interval, until_check" in got


def test_literal_argument_of_the_wrong_type_points_at_its_line(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nsteps:\n  - id: a\n"
                             "    action: http.request\n    args:\n      url: ftp://x\n")
    assert got == ["runbooks/rb.yaml:8: steps.0.args.url: must be an http(s) URL"]


def test_missing_required_fields_are_named(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nsteps:\n  - id: a\n    action: note\n")
    assert got == ["runbooks/rb.yaml:1: owner: is required; add it",
                   "runbooks/rb.yaml:4: steps.0.args.text: is required; add it"]


def test_template_naming_an_unknown_parameter_is_refused(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nparameters:\n  db: {}\nsteps:\n"
                             "  - id: a\n    action: note\n    args: {text: '{{ params.dbb }}'}\n")
    assert got == ["runbooks/rb.yaml:9: steps.0.args.text: unknown parameter 'dbb'; "
                   "declared: db"]


def test_template_naming_a_later_step_is_refused(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nsteps:\n"
                             "  - id: a\n    action: note\n"
                             "    args: {text: '{{ steps.b.outputs.text }}'}\n"
                             "  - id: b\n    action: note\n    args: {text: hi}\n")
    assert got == ["runbooks/rb.yaml:7: steps.0.args.text: step 'b' has not run before this "
                   "one; use an earlier step: none"]


def test_condition_with_code_is_refused(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nsteps:\n"
                             "  - id: a\n    action: note\n    args: {text: hi}\n"
                             "    when: __import__('os').system('x')\n")
    assert len(got) == 1 and got[0].startswith("runbooks/rb.yaml:8: steps.0.when: Call is "
                                               "not allowed")


def test_duplicate_step_ids_enum_without_values_and_bad_default(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nparameters:\n"
                             "  mode: {type: enum}\n  n: {type: int, default: many}\n"
                             "steps:\n  - id: a\n    action: note\n    args: {text: x}\n"
                             "  - id: a\n    action: note\n    args: {text: y}\n")
    assert got == [
        "runbooks/rb.yaml:5: parameters.mode.values: an enum needs its allowed values; "
        "add values: [a, b]",
        "runbooks/rb.yaml:6: parameters.n.default: 'many' is not an integer",
        "runbooks/rb.yaml:11: steps.1.id: duplicate step id 'a'; step ids must be unique in "
        "a runbook"]


def test_a_rollback_step_cannot_have_its_own_rollback(tmp_path: Path) -> None:
    got = problems(tmp_path, "id: rb\ntitle: T\nowner: me\nsteps:\n"
                             "  - id: a\n    action: note\n    args: {text: x}\n"
                             "    on_failure:\n      - id: undo\n        action: note\n"
                             "        args: {text: y}\n        on_failure:\n"
                             "          - {id: z, action: note, args: {text: z}}\n")
    assert got == ["runbooks/rb.yaml:13: steps.0.on_failure.0.on_failure: a rollback step "
                   "cannot have its own rollback; use stop or continue"]


def test_a_check_runbook_link_must_be_a_runbook_id_or_an_http_url(tmp_path: Path) -> None:
    path = write_site(tmp_path, [runbook("tls-renew", [step("a", "note",
                                                            args={"text": "x"})])],
                      checks=[{"id": "c1", "kind": "tcp", "target": "127.0.0.1:1",
                               "runbook": "tls-renw"},
                              {"id": "c2", "kind": "tcp", "target": "127.0.0.1:1",
                               "runbook": "https://wiki.example.com/tls"},
                              {"id": "c3", "kind": "tcp", "target": "127.0.0.1:1",
                               "runbook": "tls-renew"}])
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.message for p in exc.value.problems] == [
        "unknown runbook 'tls-renw'; give a runbook id (tls-renew) or an http(s) URL"]


def test_runbooks_inline_in_the_main_file_are_refused(tmp_path: Path) -> None:
    path = write_site(tmp_path, [], extra={"runbooks": [{"id": "x"}]})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert [p.message for p in exc.value.problems] == [
        "runbooks live in their own files, one per file (runbook_files, default "
        "runbooks/*.yaml)"]


def test_parameters_are_typed_and_defaults_filled(tmp_path: Path) -> None:
    path = write_site(tmp_path, [runbook("rb", [step("a", "note", args={"text": "x"})],
                                         parameters={
                                             "n": {"type": "int", "default": 3},
                                             "on": {"type": "bool", "default": False},
                                             "wait": {"type": "duration", "default": "5m"},
                                             "mode": {"type": "enum", "values": ["a", "b"]}})])
    rb = load_config(path).runbook("rb")
    assert rb.resolve_params({"n": "7", "on": "yes", "mode": "b"}) == {
        "n": 7, "on": True, "wait": 300.0, "mode": "b"}
    with pytest.raises(ValueError) as exc:
        rb.resolve_params({"n": "x", "zz": 1})
    assert str(exc.value) == ("unknown parameter 'zz'; this runbook takes: n, on, wait, mode; "
                              "parameter 'n': 'x' is not an integer; parameter 'mode' is "
                              "required; pass --param mode=…")
