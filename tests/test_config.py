"""Configuration: every mistake is reported as FILE:LINE: field.path: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import ConfigError, load_config
from controlplane.probes import valid_kinds
from tests.services.common import run_cli

pytestmark = pytest.mark.usefixtures("scripted_kind")

MAIN = """\
environments:
  production:
    hosts: {idcard_frontend: bic-sky.halo360.ai}
  staging:
    hosts: {idcard_frontend: staging-sky.halo360.ai}
store:
  dsn: sqlite:///x.db
check_files: [checks/*.yaml]
"""


def write(tmp: Path, main: str = MAIN, **checks: str) -> Path:
    (tmp / "checks").mkdir(exist_ok=True)
    for name, text in checks.items():
        (tmp / "checks" / f"{name}.yaml").write_text(text)
    path = tmp / "controlplane.yaml"
    path.write_text(main)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    return [str(p) for p in info.value.problems]


def test_valid_config_loads_checks_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: scripted\n    env: production\n")
    cfg = load_config(str(path))
    assert [c.id for c in cfg.checks] == ["one"]
    assert cfg.checks[0].interval == 60.0
    assert cfg.checks[0].failure_threshold == 2


def test_defaults_section_fills_check_fields(tmp_path: Path) -> None:
    main = MAIN + "defaults:\n  interval: 5m\n  failure_threshold: 3\n"
    path = write(tmp_path, main, a="checks:\n  - id: one\n    kind: scripted\n")
    check = load_config(str(path)).checks[0]
    assert (check.interval, check.failure_threshold) == (300.0, 3)


def test_a_kinds_own_default_wins_over_the_defaults_section(tmp_path: Path) -> None:
    main = MAIN + "defaults:\n  interval: 5m\n  failure_threshold: 3\n"
    path = write(tmp_path, main, a="checks:\n  - id: b\n    kind: backup\n"
                 "    component: app\n")
    check = load_config(str(path)).checks[0]
    # backup declares failure_threshold 1 and severity critical; interval is not its own.
    assert (check.failure_threshold, check.severity, check.interval) == (1, "critical", 300.0)


def test_a_field_the_check_sets_wins_over_its_kinds_default(tmp_path: Path) -> None:
    main = MAIN + "defaults:\n  failure_threshold: 3\n"
    path = write(tmp_path, main, a="checks:\n  - id: b\n    kind: backup\n"
                 "    component: app\n    failure_threshold: 4\n    severity: minor\n")
    check = load_config(str(path)).checks[0]
    assert (check.failure_threshold, check.severity) == (4, "minor")


def test_unknown_kind_lists_valid_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: ftp\n")
    assert problems(path) == [
        f"{tmp_path}/checks/a.yaml:3: checks.0.kind: unknown check kind 'ftp'; valid kinds "
        f"are: {', '.join(valid_kinds())}"]
    assert {"dns", "http", "scripted", "tcp", "tls"} <= set(valid_kinds())
    assert valid_kinds() == sorted(valid_kinds())


def test_missing_kind_is_an_instruction(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n")
    (line,) = problems(path)
    assert line.startswith(f"{tmp_path}/checks/a.yaml:2: checks.0: you must specify kind; ")


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: scripted\n",
                 b="# second file\nchecks:\n  - id: two\n    kind: scripted\n"
                   "  - id: one\n    kind: scripted\n")
    assert problems(path) == [
        f"{tmp_path}/checks/b.yaml:5: checks.1.id: duplicate check id 'one', also defined at "
        f"{tmp_path}/checks/a.yaml:2; ids must be unique"]


def test_missing_environment_variable_is_named(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CP_TEST_UNSET_DSN", raising=False)
    main = MAIN.replace("sqlite:///x.db", "${CP_TEST_UNSET_DSN}")
    assert problems(write(tmp_path, main)) == [
        f"{tmp_path}/controlplane.yaml:7: store.dsn: environment variable CP_TEST_UNSET_DSN "
        "is not set; export it or write ${CP_TEST_UNSET_DSN:-default}"]


def test_environment_variables_are_interpolated(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CP_TEST_DSN", "sqlite:///other.db")
    main = MAIN.replace("sqlite:///x.db", "${CP_TEST_DSN}")
    assert load_config(str(write(tmp_path, main))).store.dsn == "sqlite:///other.db"


def test_bad_field_values_point_at_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: scripted\n    interval: fast\n"
                             "    failure_threshold: 0\n    colour: red\n")
    assert problems(path) == [
        f"{tmp_path}/checks/a.yaml:4: checks.0.interval: 'fast' is not a duration; write it "
        "like 30s, 5m, 1h30m or 2d",
        f"{tmp_path}/checks/a.yaml:5: checks.0.failure_threshold: Input should be greater "
        "than or equal to 1",
        f"{tmp_path}/checks/a.yaml:6: checks.0.colour: unknown field; check its spelling or "
        "remove it",
    ]


def test_unknown_environment_lists_the_defined_ones(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: scripted\n    env: prod\n")
    assert problems(path) == [
        f"{tmp_path}/checks/a.yaml:4: checks.0.env: unknown environment 'prod'; use one of: "
        "production, staging"]


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: [scripted\n")
    (line,) = problems(path)
    assert line.startswith(f"{tmp_path}/checks/a.yaml:4: invalid YAML: ")


def test_duplicate_yaml_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MAIN + "store:\n  dsn: sqlite://\n")
    assert f"{tmp_path}/controlplane.yaml:9: store: duplicate key; remove one of them" \
        in problems(path)


def test_main_file_errors_use_dotted_paths(tmp_path: Path) -> None:
    main = MAIN + "web:\n  port: 99999\n"
    assert problems(write(tmp_path, main)) == [
        f"{tmp_path}/controlplane.yaml:10: web.port: Input should be less than or equal "
        "to 65535"]


def test_no_environments_is_an_instruction(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "store: {dsn: 'sqlite://'}\n")) == [
        f"{tmp_path}/controlplane.yaml:1: environments: you must define at least one "
        "environment"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: ftp\n  - id: Bad Id\n"
                             "    kind: scripted\n")
    found = problems(path)
    assert len(found) == 2
    assert found[1] == (f"{tmp_path}/checks/a.yaml:4: checks.1.id: 'Bad Id' is not a valid id: "
                        "use lowercase letters, digits, '.', '_' and '-', starting with a "
                        "letter or digit (e.g. tls-bic-sky-prod)")


def test_validate_cli_prints_problems_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: ftp\n")
    proc = run_cli("validate", "--config", str(path))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{tmp_path}/checks/a.yaml:3: checks.0.kind: unknown check "
                                  "kind 'ftp'; valid kinds are: ")


def test_validate_cli_accepts_a_valid_config(tmp_path: Path) -> None:
    proc = run_cli("validate", "--config", str(write(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{tmp_path}/controlplane.yaml: valid (0 checks, " \
                                  "2 environments)"


def test_run_refuses_to_start_on_invalid_config(tmp_path: Path) -> None:
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: ftp\n")
    proc = run_cli("run", "--config", str(path), timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""  # never got as far as serving
    assert proc.stderr.splitlines() == [
        f"{tmp_path}/checks/a.yaml:3: checks.0.kind: unknown check kind 'ftp'; valid kinds "
        f"are: {', '.join(k for k in valid_kinds() if k != 'scripted')}",  # a test-only kind
        "controlplane: refusing to start: the configuration is invalid (see above)"]


def test_missing_environment_variable_in_a_check_file_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CP_TEST_UNSET_URL", raising=False)
    path = write(tmp_path, a="checks:\n  - id: one\n    kind: scripted\n"
                             "    description: ${CP_TEST_UNSET_URL}\n")
    assert problems(path) == [
        f"{tmp_path}/checks/a.yaml:4: checks.0.description: environment variable "
        "CP_TEST_UNSET_URL is not set; export it or write ${CP_TEST_UNSET_URL:-default}"]


def test_shipped_config_validates() -> None:
    proc = run_cli("validate")
    assert proc.returncode == 0, proc.stderr
