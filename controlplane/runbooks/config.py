"""Runbook files (``runbooks/*.yaml``, one runbook per file): models and the loader.

Validated with the rest of the config at start and by ``controlplane validate``: every
problem is one ``FILE:LINE: field.path: message``. Beyond the models, the loader refuses
unknown actions and arguments (listing the valid ones), templates that name a parameter
that does not exist or a step that has not run yet, and duplicate ids.
"""

from __future__ import annotations

import glob
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from controlplane.durations import Duration, parse_duration
from controlplane.runbooks import action_class, valid_actions
from controlplane.runbooks import expr as ex
from controlplane.yamlsource import ConfigError, Located, Path_, Problem, load_located

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
ParamType = Literal["string", "int", "bool", "enum", "duration"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParameterConfig(_Model):
    type: ParamType = "string"
    description: str = ""
    default: Any = None
    values: list[str] = Field(default_factory=list, description="allowed values (enum)")
    required: bool = Field(default=False, description="no default: must be given at start")

    def coerce(self, value: Any) -> Any:
        """The value as this type (from a form, the CLI or JSON); ValueError says why not."""
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"{value!r} is not an integer")
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an integer") from None
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError(f"{value!r} is not a boolean; write true or false")
        if self.type == "duration":
            return parse_duration(value)
        text = str(value)
        if self.values and text not in self.values:
            raise ValueError(f"{text!r} is not allowed; use one of: {', '.join(self.values)}")
        return text


class ConcurrencyConfig(_Model):
    limit: int = Field(default=1, ge=1, description="runs of this runbook at once")
    when_busy: Literal["refuse", "queue"] = "refuse"


class StepConfig(_Model):
    id: str = Field(pattern=ID_PATTERN, max_length=80)
    name: str = ""
    action: str
    args: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration | None = None
    when: str | None = None
    on_failure: Literal["stop", "continue"] | list[StepConfig] = "stop"
    idempotent: bool = False

    def timeout_s(self) -> float:
        return self.timeout if self.timeout is not None else \
            action_class(self.action).default_timeout

    @property
    def rollback(self) -> list[StepConfig]:
        return self.on_failure if isinstance(self.on_failure, list) else []


class RunbookConfig(_Model):
    id: str = Field(pattern=ID_PATTERN, max_length=80)
    title: str = Field(min_length=1)
    description: str = ""
    owner: str = Field(min_length=1, description="team or person answerable for it")
    parameters: dict[str, ParameterConfig] = Field(default_factory=dict)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    timeout: Duration = Field(default=4 * 3600.0, gt=0, description="the whole run")
    auto: bool = Field(default=False, description="start when an incident of a check "
                                                  "naming this runbook opens")
    schedule: str | None = Field(default=None, description="cron: run as a drill")
    measures: str | None = Field(default=None, description=(
        "a DR component (dr.components): a run's duration is its measured RTO on /dr"))
    steps: list[StepConfig] = Field(min_length=1)
    source: str = ""
    _doc: Located | None = PrivateAttr(default=None)
    """Where it was read from: later checks (against other sections) point at its lines."""

    def problem(self, path: Path_, message: str) -> Problem:
        if self._doc is None:
            return Problem(self.source, 1, ".".join(map(str, path)), message)
        return self._doc.problem(path, message)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            from controlplane.backups.config import cron_trigger

            cron_trigger(v)
        return v

    def step(self, step_id: str) -> StepConfig:
        for s in self.all_steps():
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def all_steps(self) -> list[StepConfig]:
        return [x for s in self.steps for x in (s, *s.rollback)]

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled and every value typed; ValueError lists every problem."""
        errors = [f"unknown parameter {k!r}; this runbook takes: "
                  + (", ".join(self.parameters) or "none") for k in given
                  if k not in self.parameters]
        out: dict[str, Any] = {}
        for name, p in self.parameters.items():
            if name in given:
                value = given[name]
            elif p.default is not None:
                value = p.default
            else:
                errors.append(f"parameter {name!r} is required; pass --param {name}=…")
                continue
            try:
                out[name] = p.coerce(value)
            except ValueError as exc:
                errors.append(f"parameter {name!r}: {exc}")
        if errors:
            raise ValueError("; ".join(errors))
        return out


def load_runbooks(base: str, patterns: list[str], problems: list[Problem]) -> list[Any]:
    """Every runbook in the files ``patterns`` match (relative to ``base``)."""
    out: list[RunbookConfig] = []
    seen: dict[str, str] = {}
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        for file in sorted(glob.glob(full)):
            rb = _load_file(file, problems)
            if rb is None:
                continue
            if rb.id in seen:
                problems.append(Problem(file, 1, "id", f"duplicate runbook id {rb.id!r}, "
                                        f"also defined in {seen[rb.id]}; ids must be unique"))
                continue
            seen[rb.id] = file
            out.append(rb)
    return out


def _load_file(file: str, problems: list[Problem]) -> RunbookConfig | None:
    try:
        doc = load_located(file)
    except ConfigError as exc:
        problems += exc.problems
        return None
    if not isinstance(doc.data, dict):
        problems.append(doc.problem((), "a runbook file must hold one runbook: a mapping with "
                                        "id, title, owner and steps"))
        return None
    before = len(problems)
    rb = None
    try:
        rb = RunbookConfig.model_validate({**doc.data, "source": file})
    except ValidationError as exc:
        from controlplane.config import _problems

        problems += _problems(doc, (), exc)
    _check_steps(doc, doc.data, problems)
    if rb is not None:
        rb._doc = doc
        _check_params(doc, rb, problems)
    return rb if len(problems) == before else None


def _check_params(doc: Located, rb: RunbookConfig, problems: list[Problem]) -> None:
    for name, p in rb.parameters.items():
        where: Path_ = ("parameters", name)
        if p.type == "enum" and not p.values:
            problems.append(doc.problem((*where, "values"), "an enum needs its allowed "
                                        "values; add values: [a, b]"))
        if p.default is not None:
            try:
                p.coerce(p.default)
            except ValueError as exc:
                problems.append(doc.problem((*where, "default"), str(exc)))


def _check_steps(doc: Located, data: dict[str, Any], problems: list[Problem]) -> None:
    params = set((data.get("parameters") or {}) if isinstance(data.get("parameters"),
                                                               dict) else ())
    steps = data.get("steps")
    if not isinstance(steps, list):
        return
    earlier: list[str] = []
    for i, raw in enumerate(steps):
        if not isinstance(raw, dict):
            continue
        _check_step(doc, ("steps", i), raw, params, list(earlier), problems)
        rollback = raw.get("on_failure")
        if isinstance(rollback, list):
            for j, rb_raw in enumerate(rollback):
                if isinstance(rb_raw, dict):
                    if isinstance(rb_raw.get("on_failure"), list):
                        problems.append(doc.problem(("steps", i, "on_failure", j, "on_failure"),
                                                    "a rollback step cannot have its own "
                                                    "rollback; use stop or continue"))
                    _check_step(doc, ("steps", i, "on_failure", j), rb_raw, params,
                                [*earlier, str(raw.get("id"))], problems)
        step_id = str(raw.get("id"))
        if step_id in earlier:
            problems.append(doc.problem(("steps", i, "id"), f"duplicate step id {step_id!r}; "
                                        "step ids must be unique in a runbook"))
        earlier.append(step_id)


def _check_step(doc: Located, where: Path_, raw: dict[str, Any], params: set[str],
                earlier: list[str], problems: list[Problem]) -> None:
    action = raw.get("action")
    if action is None:
        return  # the model reports it as required
    if action not in valid_actions():
        problems.append(doc.problem((*where, "action"), f"unknown action {action!r}; valid "
                                    "actions are: " + ", ".join(valid_actions())))
        return
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        return
    _check_args(doc, where, action, args, problems)
    for key, value in args.items():
        for e in ex.expressions(value):
            _check_expr(doc, (*where, "args", key), e, params, earlier, problems)
    when = raw.get("when")
    if isinstance(when, str):
        _check_expr(doc, (*where, "when"), when.strip().removeprefix("{{").removesuffix("}}"),
                    params, earlier, problems)


def _check_args(doc: Located, where: Path_, action: str, args: dict[str, Any],
                problems: list[Problem]) -> None:
    """Unknown and missing arguments and literal values' types; templated values are
    typed when the step runs (their value is not known before)."""
    model = action_class(action).args_model
    try:
        model.model_validate(args)
        return
    except ValidationError as exc:
        errors = exc.errors()
    valid = ", ".join(sorted(model.model_fields)) or "none"
    for err in errors:
        key = err["loc"][0] if err["loc"] else None
        if key is not None and ex.is_template(args.get(str(key))):
            continue
        path: Path_ = (*where, "args", *err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(doc.problem(path, f"unknown argument of {action}; valid "
                                        f"arguments are: {valid}"))
        else:
            from controlplane.config import _message

            problems.append(doc.problem(path, _message(err)))


def _check_expr(doc: Located, path: Path_, text: str, params: set[str], earlier: list[str],
                problems: list[Problem]) -> None:
    try:
        refs = ex.references(text)
    except ex.ExprError as exc:
        problems.append(doc.problem(path, str(exc)))
        return
    for ref in refs:
        if ref[0] == "params" and len(ref) > 1 and ref[1] not in params:
            problems.append(doc.problem(path, f"unknown parameter {ref[1]!r}; declared: "
                                        + (", ".join(sorted(params)) or "none")))
        if ref[0] == "steps" and len(ref) > 1 and ref[1] not in earlier:
            problems.append(doc.problem(path, f"step {ref[1]!r} has not run before this one;"
                                        " use an earlier step: "
                                        + (", ".join(earlier) or "none")))


def check_runbook_links(sources: list[tuple[Located, Path_, Any]], runbooks: list[Any],
                        problems: list[Problem], dr_components: list[str] | None = None) -> None:
    """A check's ``runbook:`` must resolve: a runbook id, or an http(s) URL; a runbook's
    ``measures:`` must name a DR component."""
    ids = sorted(r.id for r in runbooks)
    for rb in runbooks:
        if rb.measures and dr_components is not None and rb.measures not in dr_components:
            problems.append(rb.problem(("measures",), f"unknown DR component {rb.measures!r};"
                                       " use one of: " + ", ".join(sorted(dr_components))))
    for doc, path, raw in sources:
        link = raw.get("runbook") if isinstance(raw, dict) else None
        if not isinstance(link, str) or link.startswith(("http://", "https://")):
            continue
        if link not in ids:
            problems.append(doc.problem(("runbook",), f"unknown runbook {link!r}; give a "
                                        "runbook id (" + (", ".join(ids) or "none defined")
                                        + ") or an http(s) URL", path))
