"""The code part of a stage hash: the function's normalized AST, and its helpers' (`lwdp.hashing.references`).

Comments and formatting never reach the AST; docstrings and decorators are removed from it,
so only edits that can change what the function computes change the digest.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import logging
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import xxhash

from .lru import CODE_CACHE_SIZE, LruCache

if TYPE_CHECKING:
    from .references import NodeDigest

logger = logging.getLogger("lwdp")

_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True)
class CodeDigest:
    """The code part of a stage hash, and what it covers.

    ``nodes`` has the stage function first, then each function or class of the user's own
    code the stage reaches (``module.qualname``), with digests of their parts, so that a
    changed helper, constant, closure value or default can be named.
    """

    digest: str
    nodes: dict[str, NodeDigest] = field(default_factory=dict)
    version: str | None = None  # `@stage(version=...)`: the code counts by this string

    @property
    def helpers(self) -> dict[str, str]:
        """{helper name: digest of its own text}: every node but the stage function."""
        return {name: node["digest"] for name, node in list(self.nodes.items())[1:]}


def pinned_code_digest(stage_name: str, version: str) -> CodeDigest:
    """The code part of a stage pinned by ``@stage(version=...)``: the string and the stage's
    name, not the source (two stages pinned alike over the same inputs are still two)."""
    return CodeDigest(xxhash.xxh3_128_hexdigest(f"lwdp-version\0{stage_name}\0{version}".encode()), version=version)


def code_digest(func: Callable[..., Any]) -> str:
    """The digest of `deep_code_digest`."""
    return deep_code_digest(func).digest


def deep_code_digest(func: Callable[..., Any]) -> CodeDigest:
    """XXH3-128 of ``func``'s normalized AST (or of its code object when no source exists),
    of the values its closure captured and its defaults, and of every function, class and
    constant of the user's own code it references, transitively (see `lwdp.hashing.references`).
    Library objects count by their qualified name only."""
    from .references import graph_digests

    inner = inspect.unwrap(func) if not isinstance(func, types.FunctionType) else func
    if not isinstance(inner, types.FunctionType):
        raise TypeError(f"{func!r} is not a Python function")
    return CodeDigest(*graph_digests(inner, _function_digest))


# id(code object) -> (the code object, kept alive so the id stays unique; its digest). A
# helper used by many stages is read and parsed once, and keeps the digest of the source
# it was imported from even if its file is edited while the process runs (unless 4,096
# other functions were digested since: it is then read again, from the file as it is).
_FUNCTION_DIGESTS: LruCache[int, tuple[types.CodeType, str]] = LruCache(CODE_CACHE_SIZE)


def _function_digest(func: types.FunctionType, warn: bool) -> str:
    """XXH3-128 of one function's normalized source, or of its bytecode without one."""
    cached = _FUNCTION_DIGESTS.get(id(func.__code__))
    if cached is None:
        cached = _FUNCTION_DIGESTS.put(id(func.__code__), (func.__code__, _read_function_digest(func, warn)))
    return cached[1]


def _read_function_digest(func: types.FunctionType, warn: bool) -> str:
    try:
        node = _node_in_module(func.__code__)
        text = _canonical(node, root=True) if node is not None else normalized_source_dump(inspect.getsource(func))
        return xxhash.xxh3_128_hexdigest(text.encode())
    except (OSError, TypeError, SyntaxError, LookupError):
        # Methods a decorator generated (dataclass, namedtuple) have no file: no warning.
        if warn or not func.__code__.co_filename.startswith("<"):
            logger.warning(
                "no parsable source for %s.%s; hashing its bytecode instead, which changes with "
                "the Python version",
                func.__module__,
                func.__qualname__,
            )
        return xxhash.xxh3_128_hexdigest(_code_object_bytes(func.__code__))


def normalized_source_dump(source: str) -> str:
    """Canonical text of the first function in ``source``, without decorators or docstrings.

    :raises LookupError: ``source`` holds no function (e.g. a lambda inside a larger call).
    """
    func = next(
        (node for node in ast.walk(_parse_indented(source)) if isinstance(node, _FUNCTION_NODES)), None
    )
    if func is None:
        raise LookupError("no function definition in source")
    return _canonical(func, root=True)


# filename -> (the lines linecache holds for it, kept so their id stays unique; the
# functions of its AST by (first line, name)). Parsing a module once is cheaper than
# `inspect.getsource` (which tokenizes) and a parse per function, for every stage in it.
_MODULE_FUNCTIONS: LruCache[str, tuple[list[str], dict[tuple[int, str], ast.AST]]] = LruCache(CODE_CACHE_SIZE // 16)


def _node_in_module(code: types.CodeType) -> ast.AST | None:
    """The ``def`` of ``code`` in the AST of its whole file, or None where that can't be
    told apart (a lambda, code without a file); `inspect.getsource` then decides."""
    if code.co_name == "<lambda>":
        return None
    linecache.checkcache(code.co_filename)  # as inspect does: a file edited since is read again
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return None
    cached = _MODULE_FUNCTIONS.get(code.co_filename)
    if cached is None or cached[0] is not lines:
        try:
            tree = ast.parse("".join(lines))
        except SyntaxError:  # an IPython cell with magics, a file broken since: ask inspect
            return None
        functions: dict[tuple[int, str], ast.AST] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                functions[first, node.name] = node
        cached = _MODULE_FUNCTIONS.put(code.co_filename, (lines, functions))
    return cached[1].get((code.co_firstlineno, code.co_name))


def _parse_indented(source: str) -> ast.Module:
    """Parse a function's source, also when it is nested inside a function or class.

    Wrapping in ``if 1:`` accepts an indented block even where a comment or the inside of a
    string stands left of the ``def`` (which defeats `textwrap.dedent`).
    """
    if source[:1] in (" ", "\t"):
        return ast.parse("if 1:\n" + source)
    return ast.parse(source)


def _canonical(node: Any, root: bool = False) -> str:
    """A text of an AST that is the same on every Python version lwdp supports, without
    the ``root`` function's decorators and without docstrings.

    `ast.dump` is not: 3.12 adds ``type_params=[]`` and 3.13 omits empty fields. Leaving
    out fields that are None or empty makes new, unused fields invisible. The tree is not
    changed: it may be a module's, shared by every function in it.
    """
    if isinstance(node, ast.AST):
        fields = (
            f"{name}={_canonical(value)}"
            for name in node._fields
            if (value := _normalized_field(node, name, root)) is not None and not (isinstance(value, list) and not value)
        )
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(item) for item in node) + "]"
    return repr(node)


def _normalized_field(node: ast.AST, name: str, root: bool) -> Any:
    value: Any = getattr(node, name, None)
    if name == "decorator_list" and root:
        return None
    if name == "body" and isinstance(node, _DOC_OWNERS) and _has_docstring(value):
        return value[1:] or [ast.Pass()]
    if name == "values" and isinstance(node, ast.JoinedStr):  # 3.12 adds empty pieces to f-string format specs
        return [v for v in value if not (isinstance(v, ast.Constant) and v.value == "")]
    return value


def _has_docstring(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)


def _code_object_bytes(code: types.CodeType) -> bytes:
    """A deterministic serialization of a code object: bytecode, names and constants."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(_code_object_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"\0".join(parts)
