"""The small JSONPath subset the ``http`` check uses to compare JSON fields.

Supported: ``$`` (the whole document), ``.key``, ``['key']`` / ``["key"]`` (keys with
dots or spaces), ``[N]`` (list index, negative counts from the end). The leading ``$``
may be left out: ``status`` means ``$.status``. No wildcards, filters or slices: a check
compares one value per path, so every path must name exactly one value.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\.(?P<dot>[^.\[\]]+)            # .key
      | \[(?P<index>-?\d+)\]           # [3]
      | \['(?P<sq>[^']*)'\]            # ['key']
      | \["(?P<dq>[^"]*)"\]            # ["key"]
    """,
    re.VERBOSE,
)

Step = str | int


class JsonPathError(ValueError):
    """A path outside the supported subset; the message shows what is allowed."""


def compile_path(path: str) -> list[Step]:
    """Steps of ``path``; raises JsonPathError naming the bad part."""
    text = path.strip()
    if not text.startswith("$"):
        text = "$" + text if text.startswith("[") else "$." + text
    rest, pos = text[1:], 0
    steps: list[Step] = []
    while pos < len(rest):
        m = _TOKEN.match(rest, pos)
        if m is None:
            raise JsonPathError(
                f"JSON path {path!r}: cannot read {rest[pos:]!r}; use $.key, $.list[0] "
                "or $['odd.key'] (no wildcards or filters)")
        if m.group("index") is not None:
            steps.append(int(m.group("index")))
        else:
            steps.append(next(g for g in (m.group("dot"), m.group("sq"), m.group("dq"))
                              if g is not None))
        pos = m.end()
    return steps


def lookup(doc: Any, steps: list[Step]) -> tuple[bool, Any]:
    """(found, value) of the steps in ``doc``."""
    node = doc
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                return False, None
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                return False, None
            node = node[step]
    return True, node


def same_value(got: Any, want: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python would say it is), ``1`` equals ``1.0``."""
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in got)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(same_value(a, b) for a, b in zip(got, want,
                                                                                strict=True))
    return bool(got == want)
