"""YAML loading that remembers where every value came from (file and line).

Config errors must point at ``FILE:LINE``; PyYAML's composed node tree carries marks,
so we construct plain Python values ourselves and keep a map from path to line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class ConfigError(Exception):
    """One or more problems in the configuration; ``str()`` lists them one per line."""

    def __init__(self, problems: list[Problem], unreadable: bool = False) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line, p.path))
        self.unreadable = unreadable
        """A file could not be read at all (exit 2, not the invalid config's 1)."""
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Located:
    """A parsed YAML document and the line of each of its values."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """Line of the deepest known prefix of ``path`` (a missing field -> its parent)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1

    def problem(self, path: Path_, message: str, prefix: Path_ = ()) -> Problem:
        full = tuple(prefix) + tuple(path)
        return Problem(self.file, self.line_of(full), dotted(full), message)


def dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def load_located(file: str, text: str | None = None) -> Located:
    """Parse ``file``; YAML syntax errors and unset ${VARS} become ConfigError."""
    if text is None:
        try:
            with open(file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError([Problem(file, 1, "", f"cannot read file: {exc.strerror}")],
                              unreadable=True) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(file, line, "", f"invalid YAML: {reason}")]) from exc
    finally:
        loader.dispose()
    located = Located(file, None)
    problems: list[Problem] = []
    if node is not None:
        try:
            located.data = _Builder(located, problems, loader).build(node, ())
        except _TooBig as exc:
            raise ConfigError([Problem(file, exc.line, "", exc.message)]) from None
        except yaml.YAMLError as exc:  # a constructor error (bad tag, unhashable key)
            mark = getattr(exc, "problem_mark", None)
            reason = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([Problem(file, mark.line + 1 if mark else 1, "",
                                       f"invalid YAML: {reason}")]) from None
    if problems:
        raise ConfigError(problems)
    return located


MAX_VALUES = 100_000
"""A config expands to far fewer values; more means aliases multiplying a document (a
"billion laughs" bomb), refused before it costs memory."""

MAX_DEPTH = 200


class _TooBig(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


class _Builder:
    """Plain values from the node tree, counting every value an alias repeats."""

    def __init__(self, loc: Located, problems: list[Problem], loader: yaml.SafeLoader) -> None:
        self.loc, self.problems, self.loader = loc, problems, loader
        self.count = 0
        self.open: set[int] = set()  # nodes being built: meeting one again is a cycle

    def build(self, node: yaml.Node, path: Path_) -> Any:
        line = node.start_mark.line + 1
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig(line, f"the document expands to more than {MAX_VALUES} values "
                                "(aliases repeating aliases?); write the values out instead")
        if id(node) in self.open:
            raise _TooBig(line, "recursive alias: a value contains itself; remove the alias")
        if len(path) > MAX_DEPTH:
            raise _TooBig(line, f"nested deeper than {MAX_DEPTH} levels")
        if path not in self.loc.lines:
            self.loc.lines[path] = line
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            self.open.add(id(node))
            try:
                return self._mapping(node, path) if isinstance(node, yaml.MappingNode) \
                    else [self.build(n, (*path, i)) for i, n in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        value = self.loader.construct_object(node)
        if isinstance(value, str) and "${" in value:
            value = _interpolate(value, path, self.loc, self.problems)
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _TooBig(key_node.start_mark.line + 1,
                              "a key must be a plain value, not a list or a mapping")
            key = str(self.loader.construct_object(key_node))
            if key in out:
                self.problems.append(
                    Problem(self.loc.file, key_node.start_mark.line + 1, dotted((*path, key)),
                            "duplicate key; remove one of them"))
            out[key] = self.build(value_node, (*path, key))
        return out


def _interpolate(value: str, path: Path_, loc: Located, problems: list[Problem]) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(
            loc.problem(path, f"environment variable {name} is not set; export it or "
                              f"write ${{{name}:-default}}")
        )
        return ""

    return _VAR.sub(sub, value)
