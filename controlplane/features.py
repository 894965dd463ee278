"""The features a control plane is made of, and what each one plugs in.

One :class:`Feature` per capability, one line each in :data:`FEATURES`. The app, the config
loader and the migrations walk this list; the store, the scheduler and the web never name a
feature. What a feature may contribute, all optional and all named by import path (so
``controlplane validate`` imports only what it needs):

- ``tables``: modules declaring SQLAlchemy tables on :class:`controlplane.store.db.Base`
  (the schema itself changes only through migrations in controlplane/store/migrations/;
  these modules are imported to compare the models with the migrated schema and to let
  ``alembic revision --autogenerate`` see every table);
- ``component``: a module with ``create(runtime) -> Component | None``, started on the
  active instance after the pipeline exists, stopped in reverse order;
- ``builtin_checks``: ``"module:function"``, a function ``(config) -> list[CheckConfig]``
  giving checks the feature runs without YAML (``backup-*``, ``drill-*``, ``dr-*``). They
  join the YAML checks in the one catalog (``config.checks``) that the scheduler, the
  evaluator, the status page and the API read; YAML may not repeat them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from controlplane.config import ControlPlaneConfig
    from controlplane.probes.base import CheckConfig

BuiltinChecks = Callable[["ControlPlaneConfig"], "list[CheckConfig]"]


@dataclass(frozen=True)
class Feature:
    name: str
    tables: tuple[str, ...] = ()
    component: str | None = None
    builtin_checks: str | None = None


FEATURES: tuple[Feature, ...] = (
    Feature("checks", tables=("controlplane.store.results",)),
    Feature("sentry", component="controlplane.sentry"),
    Feature("incidents", tables=("controlplane.incidents.model",),
            component="controlplane.incidents.component"),
    Feature("backups", tables=("controlplane.backups.catalog",),
            component="controlplane.dr.component",
            builtin_checks="controlplane.dr.probes:builtin_checks"),
    Feature("oncall", tables=("controlplane.oncall.overrides", "controlplane.oncall.escalation")),
    # After incidents: an incident row exists when its transition reaches the runbook trigger.
    Feature("runbooks", tables=("controlplane.runbooks.model",),
            component="controlplane.runbooks.component"),
    Feature("release_manifest", tables=("controlplane.manifest.store",)),
    Feature("secret_restores", tables=("controlplane.k8s.restore_log",)),
)


def component_modules() -> list[str]:
    """Modules with ``create(runtime)``, in start order."""
    return [f.component for f in FEATURES if f.component]


def table_metadata() -> MetaData:
    """The declarative metadata with every feature's tables imported."""
    from controlplane.store.db import Base

    for feature in FEATURES:
        for module in feature.tables:
            importlib.import_module(module)
    return Base.metadata


def builtin_check_sources() -> list[tuple[str, BuiltinChecks]]:
    """(feature name, its builtin_checks function) for every feature that has one."""
    out = []
    for feature in FEATURES:
        if feature.builtin_checks:
            module, _, attr = feature.builtin_checks.partition(":")
            fn = cast(BuiltinChecks, getattr(importlib.import_module(module), attr))
            out.append((feature.name, fn))
    return out


def builtin_checks(config: ControlPlaneConfig) -> dict[str, tuple[str, CheckConfig]]:
    """Every built-in check by id, with the feature that contributes it."""
    out: dict[str, tuple[str, CheckConfig]] = {}
    for name, fn in builtin_check_sources():
        for check in fn(config):
            if check.id in out:
                raise ValueError(f"built-in check {check.id!r} comes from both "
                                 f"{out[check.id][0]} and {name}")
            out[check.id] = (name, check)
    return out
