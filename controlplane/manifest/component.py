"""Lends the store to `release_drift` checks and creates the manifest table at start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from controlplane.manifest.store import ensure_tables

if TYPE_CHECKING:
    from controlplane.app import Runtime


class ManifestComponent:
    name = "release_manifest"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def start(self) -> None:
        ensure_tables(self.runtime.store)

    def stop(self) -> None:
        """Nothing runs in the background."""


def create(runtime: Runtime) -> ManifestComponent | None:
    if not any(c.kind == "release_drift" for c in runtime.config.checks):
        return None
    runtime.context.services.setdefault("store", runtime.store)
    return ManifestComponent(runtime)
