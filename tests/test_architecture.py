"""The import rules of docs/architecture.md, checked on the source (run-time imports only:
``if TYPE_CHECKING:`` blocks name types and are allowed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "controlplane"

FEATURES = ("controlplane.backups", "controlplane.dr", "controlplane.incidents",
            "controlplane.notifiers", "controlplane.kafka", "controlplane.sentry",
            "controlplane.oncall", "controlplane.features")
SURFACES = ("controlplane.app", "controlplane.web", "controlplane.commands",
            "controlplane.cli", "controlplane.server", "controlplane.sandbox")
FOUNDATIONS = ("controlplane.results", "controlplane.severity", "controlplane.deadline",
               "controlplane.durations", "controlplane.logs", "controlplane.redact",
               "controlplane.probes.inbox")


def runtime_imports(path: Path) -> set[str]:
    """Every module ``path`` imports when it runs (function-level imports included)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("controlplane")}


def modules(pattern: str) -> list[Path]:
    return sorted(PACKAGE.glob(pattern))


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for path in paths:
        bad = sorted(m for m in runtime_imports(path)
                     if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(path.relative_to(PACKAGE.parent))] = bad
    return out


def test_the_store_imports_no_feature_and_no_surface() -> None:
    assert offending(modules("store/**/*.py"), FEATURES + SURFACES) == {}


def test_the_engine_imports_no_feature_and_no_surface() -> None:
    engine = [PACKAGE / f for f in ("scheduler.py", "pipeline.py", "evaluator.py", "leader.py")]
    assert offending(engine, FEATURES + SURFACES) == {}


def test_the_probe_contract_imports_only_foundations() -> None:
    imports = runtime_imports(PACKAGE / "probes" / "base.py")
    assert sorted(m for m in imports if not m.startswith(FOUNDATIONS)) == []


@pytest.mark.parametrize("area", ["backups", "dr", "incidents", "notifiers", "kafka",
                                  "oncall", "probes", "store", "web"])
def test_only_the_demo_and_sandbox_commands_import_the_sandbox(area: str) -> None:
    assert offending(modules(f"{area}/**/*.py"), ("controlplane.sandbox",)) == {}


def test_features_never_import_the_wiring_or_the_surfaces_at_run_time() -> None:
    areas = [p for a in ("backups", "dr", "incidents", "notifiers", "kafka", "oncall", "probes")
             for p in modules(f"{a}/**/*.py")]
    assert offending(areas, ("controlplane.app", "controlplane.web", "controlplane.commands",
                             "controlplane.cli", "controlplane.server")) == {}


# What other features offer the runbooks' audit trail and measurement: their public api
# modules and the channel contract, never their tables or services.
PUBLIC_INTERFACES = ("controlplane.incidents.api", "controlplane.backups.api",
                     "controlplane.notifiers.base")


@pytest.mark.parametrize("module", ["audit.py", "measure.py"])
def test_runbook_audit_and_measure_use_other_features_public_interfaces_only(
        module: str) -> None:
    imports = runtime_imports(PACKAGE / "runbooks" / module)
    features = [m for m in imports if m.startswith(FEATURES)]
    assert sorted(m for m in features if not m.startswith(PUBLIC_INTERFACES)
                  and m != "controlplane.notifiers.build_notifiers"
                  and m not in ("controlplane.incidents", "controlplane.backups",
                                "controlplane.notifiers")) == []
