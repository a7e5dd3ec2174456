"""The code part of a stage hash: the function's normalized AST.

Comments and formatting never reach the AST; docstrings and decorators are removed from it,
so only edits that can change what the function computes change the digest.
"""

from __future__ import annotations

import ast
import inspect
import logging
import types
from typing import Any, Callable

import xxhash

logger = logging.getLogger("lwdp")

_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def code_digest(func: Callable[..., Any], _seen: frozenset[int] = frozenset()) -> str:
    """XXH3-128 of ``func``'s normalized AST (or of its code object when no source exists)
    and of the values its closure captured (a stage made by a factory differs by those)."""
    hasher = xxhash.xxh3_128()
    try:
        hasher.update(normalized_source_dump(inspect.getsource(func)).encode())
    except (OSError, TypeError, SyntaxError, LookupError):
        logger.warning(
            "no parsable source for %s.%s; hashing its bytecode instead, which changes with "
            "the Python version",
            func.__module__,
            func.__qualname__,
        )
        hasher.update(_code_object_bytes(func.__code__))
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or ()):
        hasher.update(f"\0{name}={_captured_digest(func, name, cell, _seen | {id(func)})}".encode())
    return hasher.hexdigest()


def _captured_digest(func: Callable[..., Any], name: str, cell: types.CellType, seen: frozenset[int]) -> str:
    """A digest of one captured value: code for functions, the value for parameters."""
    from .params import param_digest
    from .stage import Stage

    try:
        value = cell.cell_contents
    except ValueError:
        return "empty"
    if isinstance(value, Stage):
        return f"stage:{value.name}"
    if isinstance(value, (types.FunctionType, types.MethodType)):
        inner = getattr(value, "__func__", value)
        return "cycle" if id(inner) in seen else f"function:{code_digest(inner, seen)}"
    if isinstance(value, (type, types.ModuleType)):
        return f"{type(value).__name__}:{getattr(value, '__qualname__', value.__name__)}"
    try:
        return f"value:{param_digest(value)}"
    except TypeError:
        logger.warning(
            "%s.%s captures %r, a %s lwdp cannot hash: changing it won't invalidate the cache",
            func.__module__, func.__qualname__, name, type(value).__qualname__,
        )
        return f"unhashed:{type(value).__qualname__}"


def normalized_source_dump(source: str) -> str:
    """Canonical text of the first function in ``source``, without decorators or docstrings.

    :raises LookupError: ``source`` holds no function (e.g. a lambda inside a larger call).
    """
    func = next(
        (node for node in ast.walk(_parse_indented(source)) if isinstance(node, _FUNCTION_NODES)), None
    )
    if func is None:
        raise LookupError("no function definition in source")
    if not isinstance(func, ast.Lambda):
        func.decorator_list = []
    for node in ast.walk(func):
        if isinstance(node, _DOC_OWNERS):
            _drop_docstring(node)
        elif isinstance(node, ast.JoinedStr):  # 3.12 adds empty pieces to f-string format specs
            node.values = [v for v in node.values if not (isinstance(v, ast.Constant) and v.value == "")]
    return _canonical(func)


def _parse_indented(source: str) -> ast.Module:
    """Parse a function's source, also when it is nested inside a function or class.

    Wrapping in ``if 1:`` accepts an indented block even where a comment or the inside of a
    string stands left of the ``def`` (which defeats `textwrap.dedent`).
    """
    if source[:1] in (" ", "\t"):
        return ast.parse("if 1:\n" + source)
    return ast.parse(source)


def _canonical(node: Any) -> str:
    """A text of an AST that is the same on every Python version lwdp supports.

    `ast.dump` is not: 3.12 adds ``type_params=[]`` and 3.13 omits empty fields. Leaving
    out fields that are None or empty makes new, unused fields invisible.
    """
    if isinstance(node, ast.AST):
        fields = (
            f"{name}={_canonical(value)}"
            for name in node._fields
            if (value := getattr(node, name, None)) is not None and not (isinstance(value, list) and not value)
        )
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(item) for item in node) + "]"
    return repr(node)


def _drop_docstring(node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]


def _code_object_bytes(code: types.CodeType) -> bytes:
    """A deterministic serialization of a code object: bytecode, names and constants."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(_code_object_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"\0".join(parts)
