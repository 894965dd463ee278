"""Runbooks: procedures as code. Registry of actions, one line per action, imported lazily."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from controlplane.runbooks.base import Action

ACTIONS: dict[str, str] = {
    "check.run": "controlplane.runbooks.actions.checks:CheckRun",
    "wait": "controlplane.runbooks.actions.wait:Wait",
    "approve": "controlplane.runbooks.actions.approve:Approve",
    "http.request": "controlplane.runbooks.actions.http:HttpRequest",
    "note": "controlplane.runbooks.actions.note:Note",
    "notify.slack": "controlplane.runbooks.actions.slack:NotifySlack",
    "backup.run": "controlplane.runbooks.actions.backups:BackupRun",
    "backup.verify": "controlplane.runbooks.actions.backups:BackupVerify",
    "restore.postgres": "controlplane.runbooks.actions.restore:RestorePostgres",
    "drill.run": "controlplane.runbooks.actions.backups:DrillRun",
    "k8s.scale": "controlplane.runbooks.actions.k8s:K8sScale",
    "k8s.rollout_restart": "controlplane.runbooks.actions.k8s:K8sRolloutRestart",
    "k8s.rollout_status": "controlplane.runbooks.actions.k8s:K8sRolloutStatus",
    "k8s.apply": "controlplane.runbooks.actions.k8s:K8sApply",
    "restore.secrets": "controlplane.runbooks.actions.secrets:RestoreSecrets",
    "kafka.describe": "controlplane.runbooks.actions.kafka:KafkaDescribe",
    "kafka.wait_healthy": "controlplane.runbooks.actions.kafka:KafkaWaitHealthy",
}


@cache
def action_class(name: str) -> type[Action[Any]]:
    """The Action class for a name; KeyError if unknown."""
    module_name, _, attr = ACTIONS[name].partition(":")
    cls: type[Action[Any]] = getattr(importlib.import_module(module_name), attr)
    return cls


def valid_actions() -> list[str]:
    return sorted(ACTIONS)
