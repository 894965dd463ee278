"""The action contract, checked for every registered action."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from controlplane.runbooks import ACTIONS, action_class, valid_actions
from controlplane.runbooks.base import Action, ActionArgs, Services
from tests.runbooks.conftest import MakeSite, runbook, step

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "runbooks.md")


@pytest.fixture
def services(make_site: MakeSite) -> Services:
    site = make_site([runbook("rb", [step("a", "note", args={"text": "x"})])], start=False)
    return Services(site.runtime)


@pytest.mark.parametrize("name", valid_actions())
def test_action_follows_the_contract(name: str, services: Services) -> None:
    cls = action_class(name)
    assert issubclass(cls, Action)
    assert cls.name == name
    assert issubclass(cls.args_model, ActionArgs)
    assert cls.summary and cls.default_timeout > 0
    args = cls.args_model.model_validate(cls.example_args)
    lines = cls(args, services).plan()  # a dry-run on a bare control plane must not raise
    assert lines and all(isinstance(x, str) and x for x in lines)
    assert isinstance(cls(args, services).planned_outputs(), dict)


@pytest.mark.parametrize("name", valid_actions())
def test_action_refuses_unknown_arguments(name: str) -> None:
    cls = action_class(name)
    with pytest.raises(ValidationError) as exc:
        cls.args_model.model_validate({**cls.example_args, "no_such_arg": 1})
    assert [e["type"] for e in exc.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize("name", valid_actions())
def test_action_is_documented_with_its_arguments(name: str) -> None:
    text = DOCS.read_text()
    section = re.search(rf"^### `{re.escape(name)}`\n(.*?)(?=^### |\Z)", text, re.S | re.M)
    assert section, f"docs/runbooks.md has no section ### `{name}`"
    for arg in action_class(name).args_model.model_fields:
        assert f"`{arg}`" in section.group(1), f"{name}: argument {arg} is not documented"


def test_there_is_no_shell_action() -> None:
    assert not [a for a in ACTIONS if "shell" in a or "exec" in a or "command" in a]
