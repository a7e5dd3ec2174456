"""The code part of a stage hash: the function's normalized AST.

Comments and formatting never reach the AST; docstrings and decorators are removed from it,
so only edits that can change what the function computes change the digest.
"""

from __future__ import annotations

import ast
import inspect
import logging
import textwrap
import types
from typing import Any, Callable

import xxhash

logger = logging.getLogger("lwdp")

_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def code_digest(func: Callable[..., Any]) -> str:
    """XXH3-128 of ``func``'s normalized AST, or of its code object when no source exists."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        logger.warning(
            "no source for %s.%s; hashing its bytecode instead, which changes with the "
            "Python version",
            func.__module__,
            func.__qualname__,
        )
        return xxhash.xxh3_128_hexdigest(_code_object_bytes(func.__code__))
    return xxhash.xxh3_128_hexdigest(normalized_source_dump(source).encode())


def normalized_source_dump(source: str) -> str:
    """`ast.dump` of the first function in ``source`` without decorators or docstrings."""
    tree = ast.parse(textwrap.dedent(source))
    func = next(
        node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    )
    func.decorator_list = []
    for node in ast.walk(func):
        if isinstance(node, _DOC_OWNERS):
            _drop_docstring(node)
    return ast.dump(func, annotate_fields=True, include_attributes=False)


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
