"""Every registered check kind keeps the probe contract (one parametrized test per rule)."""

from __future__ import annotations

import typing

import pytest

from controlplane.probes import KINDS, probe_class
from controlplane.probes.base import CheckConfig, Probe

REGISTERED = sorted(k for k in KINDS if k != "scripted")  # "scripted" is a test-only kind


@pytest.mark.parametrize("kind", REGISTERED)
def test_kind_names_its_probe_and_config(kind: str) -> None:
    cls = probe_class(kind)
    assert issubclass(cls, Probe)
    assert cls.kind == kind
    assert issubclass(cls.config_model, CheckConfig)
    field = cls.config_model.model_fields["kind"]
    # a Literal of the kind's own name, or (the kafka family) a plain str the loader fills
    assert typing.get_args(field.annotation) == (kind,) or field.annotation is str


@pytest.mark.parametrize("kind", REGISTERED)
def test_config_rejects_unknown_fields(kind: str) -> None:
    cls = probe_class(kind)
    assert cls.config_model.model_config.get("extra") == "forbid"
