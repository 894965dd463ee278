"""``note``: instructions for the humans running the procedure (e.g. how to switch to a
restored database). Recorded with the run; changes nothing."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from controlplane.runbooks.base import Action, ActionArgs, ActionResult, StepContext


class NoteArgs(ActionArgs):
    text: str = Field(min_length=1)


class Note(Action[NoteArgs]):
    name = "note"
    args_model = NoteArgs
    summary = "record instructions for the people running the procedure; changes nothing"
    resumable: ClassVar[bool] = True
    default_timeout = 10.0
    example_args: ClassVar[dict[str, object]] = {"text": "Switch the app to the new database"}

    def plan(self) -> list[str]:
        return [f"show: {self.args.text}"]

    def run(self, ctx: StepContext) -> ActionResult:
        return ActionResult(self.args.text, {"text": self.args.text})
