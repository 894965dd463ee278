"""Templates and conditions: ``{{ params.db }}``, ``{{ steps.verify.outputs.bytes }}``.

A runbook must not run arbitrary code, so expressions are a small safe subset of Python,
checked when the runbook loads: names (``params``, ``steps``, ``run``, ``incident``),
attribute and ``[...]`` lookups, literals, comparisons, ``and``/``or``/``not``.
A value that is one whole ``{{ expr }}`` keeps the expression's type (an int stays an int);
text around it makes the result a string.
"""

from __future__ import annotations

import ast
import re
from typing import Any

ROOTS = ("params", "steps", "run", "incident")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Compare,
            ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
            ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.List, ast.Tuple,
            ast.Load, ast.USub)


class ExprError(ValueError):
    """An expression that does not parse, names something unknown, or cannot be resolved."""


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def parse(expr: str) -> ast.Expression:
    """Parse and check ``expr``; raise ExprError naming what is not allowed."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"cannot parse {expr.strip()!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExprError(f"{type(node).__name__} is not allowed in {expr.strip()!r}; use "
                            "names, lookups, literals, comparisons, and/or/not")
        if isinstance(node, ast.Name) and node.id not in (*ROOTS, "true", "false", "null"):
            raise ExprError(f"unknown name {node.id!r} in {expr.strip()!r}; use one of: "
                            + ", ".join(ROOTS))
    return tree


def references(expr: str) -> list[tuple[str, ...]]:
    """Every dotted path ``expr`` reads, e.g. ('steps', 'verify', 'outputs', 'bytes')."""
    out: list[tuple[str, ...]] = []
    for node in ast.walk(parse(expr)):
        path = _path(node)
        if path:
            out.append(path)
    # Keep only the longest paths (a.b.c implies a.b and a).
    return [p for p in out if not any(len(q) > len(p) and q[:len(p)] == p for q in out)]


def _path(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        base = _path(node.value)
        return None if base is None else (*base, node.attr)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base = _path(node.value)
        return None if base is None else (*base, str(node.slice.value))
    return None


def expressions(value: Any) -> list[str]:
    """The ``{{ }}`` expressions inside a template value (strings in lists/dicts too)."""
    if isinstance(value, str):
        return [m.group(1) for m in _TEMPLATE.finditer(value)]
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in expressions(k) + expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in expressions(v)]
    return []


def evaluate(expr: str, scope: dict[str, Any], strict: bool = True) -> Any:
    """Evaluate a checked expression; a missing key raises (strict) or gives None."""
    return _eval(parse(expr).body, scope, strict, expr.strip())


def render(value: Any, scope: dict[str, Any]) -> Any:
    """Resolve every template in ``value`` (recursively through lists and dicts)."""
    if isinstance(value, dict):  # keys too: a namespace map from parameters
        return {render(k, scope): render(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope) for v in value]
    if not is_template(value):
        return value
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), scope)
    return _TEMPLATE.sub(lambda m: _text(evaluate(m.group(1), scope)), value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _eval(node: ast.AST, scope: dict[str, Any], strict: bool, src: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        return scope.get(node.id, {})
    if isinstance(node, ast.Attribute | ast.Subscript):
        return _lookup(node, scope, strict, src)
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, scope, strict, src) for e in node.elts]
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, scope, strict, src)
        return (not v) if isinstance(node.op, ast.Not) else -v
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, scope, strict, src) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        return _compare(node, scope, strict, src)
    raise ExprError(f"cannot evaluate {src!r}")


def _lookup(node: ast.Attribute | ast.Subscript, scope: dict[str, Any], strict: bool,
            src: str) -> Any:
    base = _eval(node.value, scope, strict, src)
    key: Any = node.attr if isinstance(node, ast.Attribute) else _eval(node.slice, scope,
                                                                        strict, src)
    try:
        return base[key]
    except (KeyError, IndexError, TypeError):
        if strict:
            path = ".".join(_path(node) or (src,))
            raise ExprError(f"{path} is not defined (in {src!r})") from None
        return None


def _compare(node: ast.Compare, scope: dict[str, Any], strict: bool, src: str) -> bool:
    left = _eval(node.left, scope, strict, src)
    for op, comp in zip(node.ops, node.comparators, strict=True):
        right = _eval(comp, scope, strict, src)
        try:
            ok = _OPS[type(op)](left, right)
        except TypeError:
            raise ExprError(f"cannot compare {left!r} with {right!r} in {src!r}") from None
        if not ok:
            return False
        left = right
    return True


_OPS: dict[type[ast.cmpop], Any] = {
    ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
