"""What a stage really runs: the user's own helpers, classes and constants it references.

Starting from the stage function, every global name its code loads (``LOAD_GLOBAL``, and
attribute chains on a module object such as ``helpers.scale``) is resolved against the
function's ``__globals__`` at decoration time. Functions, classes and lambdas from the
user's own code become nodes of a graph and are walked in turn; library objects (pandas,
numpy, the standard library, lwdp) are named by their qualified name only; constants are
hashed by value. The digest is a canonical serialization of that graph: nodes in
discovery order (names are visited sorted), edges as node numbers, so cycles need no
recursion and two helpers with the same name can't be swapped unnoticed.
"""

from __future__ import annotations

import dis
import functools
import logging
import os
import re
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any, Callable, TypedDict

import xxhash

from ..graph import StageNode, qualified_name
from .lru import CODE_CACHE_SIZE, LruCache

logger = logging.getLogger("lwdp")

_LIBRARY_DIRS = tuple(
    {os.path.realpath(p) for key in ("stdlib", "platstdlib", "purelib", "platlib") if (p := sysconfig.get_paths().get(key))}
)
_LWDP_DIR = os.path.realpath(Path(__file__).parent)
_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_REF = re.compile("\x01(\\d+)\x01")
_MAX_DEPTH = 20

# How `Graph.value` writes a reference to a function, class, module or stage (not a value).
_NAMED_REFERENCES = ("lib:", "libobj:", "module:", "stage:", "method(", "partial(", "wrapped(")
Part = tuple[str, str]  # (what it is, e.g. "global OFFSET"; its text in the digest)


@functools.lru_cache(maxsize=CODE_CACHE_SIZE)
def is_user_file(path: str) -> bool:
    """Whether ``path`` is the user's own code: not the standard library, not an installed
    distribution (site-packages, dist-packages) and not lwdp itself. Code compiled from a
    string ("<string>", an IPython cell) is the user's: libraries live in files, or are
    frozen into the interpreter."""
    if not path or path.startswith("<frozen"):
        return False
    if path.startswith("<"):
        return True
    real = os.path.realpath(path)
    parts = Path(real).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(real == d or real.startswith(d + os.sep) for d in (*_LIBRARY_DIRS, _LWDP_DIR))


def _module_file(module: types.ModuleType | None) -> str | None:
    file = getattr(module, "__file__", None)
    return file if isinstance(file, str) else None


def is_user_module(module: types.ModuleType) -> bool:
    file = _module_file(module)
    return file is not None and is_user_file(file)


def _defining_file(obj: Any) -> str | None:
    """The file a function or class comes from, also for a module missing from sys.modules."""
    file = _module_file(sys.modules.get(getattr(obj, "__module__", None) or ""))
    if file is not None:
        return file
    if isinstance(obj, types.FunctionType):
        globals_file = obj.__globals__.get("__file__")
        return globals_file if isinstance(globals_file, str) else obj.__code__.co_filename
    if isinstance(obj, type):
        for value in vars(obj).values():
            inner = getattr(value, "__func__", value)
            if isinstance(inner, types.FunctionType):
                return _defining_file(inner)
    return None


def is_user_object(obj: Any) -> bool:
    if getattr(obj, "__module__", None) == "__main__":  # a script, or a notebook's cells
        return True
    file = _defining_file(obj)
    return file is not None and is_user_file(file)


def library_name(obj: Any) -> str:
    try:
        module = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", "?")
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    except Exception:  # an object whose attribute access misbehaves
        module, qualname = type(obj).__module__, type(obj).__qualname__
    return f"{module}.{qualname}"


# id(code object) -> (the code object, kept alive so the id stays unique; its references):
# disassembling costs more than the rest of a stage's code digest.
_REFERENCES: LruCache[int, tuple[types.CodeType, list[str]]] = LruCache(CODE_CACHE_SIZE)


def sorted_global_references(code: types.CodeType) -> list[str]:
    """`global_references` of ``code``, sorted, computed once per code object."""
    cached = _REFERENCES.get(id(code))
    if cached is None:
        cached = _REFERENCES.put(id(code), (code, sorted(global_references(code))))
    return cached[1]


def global_references(code: types.CodeType) -> dict[str, Any]:
    """The global names ``code`` (and code nested in it) loads, with attribute chains after
    each: ``{"helpers": ["helpers", "helpers.scale"], ...}`` flattened into dotted names."""
    found: dict[str, Any] = {}
    chain: list[str] = []
    for ins in dis.get_instructions(code):
        if ins.opname in _GLOBAL_LOADS:
            chain = [str(ins.argval)]
            found[chain[0]] = None
        elif ins.opname in _ATTR_LOADS and chain:
            chain.append(str(ins.argval))
            found[".".join(chain)] = None
        else:
            chain = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.update(global_references(const))
    return found


def resolve(dotted: str, namespace: dict[str, Any]) -> tuple[bool, Any]:
    """(found, object) for a dotted name; attributes are only followed on user modules, so
    ``pd.read_csv`` stays ``pd`` (named by the module) and nothing of pandas is imported."""
    head, *rest = dotted.split(".")
    if head in namespace:
        obj = namespace[head]
    else:
        return False, None  # a builtin, or a name not defined (yet): nothing of the user's
    for attr in rest:
        if not (isinstance(obj, types.ModuleType) and is_user_module(obj)):
            return False, None
        try:
            obj = getattr(obj, attr)
        except Exception:  # AttributeError, or a module __getattr__ that raises otherwise
            return False, None
    return True, obj


class Graph:
    """The user's functions and classes reachable from one stage, numbered by discovery."""

    def __init__(self, function_text: Callable[[types.FunctionType, bool], str]) -> None:
        self._function_text = function_text
        self.nodes: list[Any] = []
        self._index: dict[int, int] = {}
        self.parts: list[list[Part]] = []
        self.texts: list[str] = []

    def walk(self, root: types.FunctionType) -> None:
        self.ref(root)
        done = 0
        while done < len(self.nodes):
            obj = self.nodes[done]
            parts = self._class_parts(obj) if isinstance(obj, type) else self._func_parts(obj, done == 0)
            self.parts.append(parts)
            self.texts.append("\0".join(text for _, text in parts))
            done += 1

    def ref(self, obj: Any) -> str:
        """A placeholder for node ``obj``, numbered (and queued) on first sight."""
        if id(obj) not in self._index:
            self._index[id(obj)] = len(self.nodes)
            self.nodes.append(obj)
        return f"\x01{self._index[id(obj)]}\x01"

    def render(self, text: str, names: list[str] | None = None) -> str:
        """``text`` with placeholders as node numbers, or as node names when ``names``."""
        return _REF.sub(lambda m: f"#{m.group(1)}" if names is None else f"<{names[int(m.group(1))]}>", text)

    def _func_parts(self, func: types.FunctionType, is_root: bool) -> list[Part]:
        """(what, text) of each thing a function's result depends on; ``what`` names it for
        explanations: "code", "closure n", "default by", "constant OFFSET" (a value) or
        "global helpers" (a function, class or module)."""
        parts = [("code", f"function\0{self._function_text(func, is_root)}")]
        where = f"{func.__module__}.{func.__qualname__}"
        for name, cell in zip(func.__code__.co_freevars, func.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:
                parts.append((f"closure {name}", f"closure {name}=empty"))
                continue
            parts.append((f"closure {name}", f"closure {name}={self.value(contents, f'{where} captures {name!r}')}"))
        positional = func.__code__.co_varnames[: func.__code__.co_argcount]
        defaults = func.__defaults__ or ()
        for i, (name, default) in enumerate(zip(positional[len(positional) - len(defaults):], defaults)):
            parts.append((f"default {name}", f"default {i}={self.value(default, f'{where} default {i}')}"))
        for name, default in sorted((func.__kwdefaults__ or {}).items()):
            parts.append((f"default {name}", f"kwdefault {name}={self.value(default, f'{where} default {name!r}')}"))
        for dotted in sorted_global_references(func.__code__):
            found, obj = resolve(dotted, func.__globals__)
            if found:
                text = self.value(obj, f"{where} reads {dotted!r}")
                what = "global" if text.startswith(_NAMED_REFERENCES) or _REF.fullmatch(text) else "constant"
                parts.append((f"{what} {dotted}", f"global {dotted}={text}"))
        return parts

    def _class_parts(self, cls: type) -> list[Part]:
        parts = [("code", f"class\0{cls.__qualname__}")]
        where = f"{cls.__module__}.{cls.__qualname__}"
        parts.extend((f"base {i}", f"base={self.value(base, where)}") for i, base in enumerate(cls.__bases__))
        for name, value in sorted(vars(cls).items()):
            if isinstance(value, (staticmethod, classmethod)):
                parts.append((f"method {name}", f"{type(value).__name__} {name}={self.value(value.__func__, where)}"))
            elif isinstance(value, property):
                accessors = (self.value(f, where) if f is not None else "-" for f in (value.fget, value.fset, value.fdel))
                parts.append((f"method {name}", f"property {name}={','.join(accessors)}"))
            elif isinstance(value, types.FunctionType):
                parts.append((f"method {name}", f"method {name}={self.value(value, where)}"))
            elif not (name.startswith("_") and name.endswith("_")):  # dunder and enum sunder data
                parts.append((f"attribute {name}", f"attr {name}={self.value(value, f'{where}.{name}')}"))
        return parts

    def value(self, value: Any, where: str, depth: int = 0) -> str:
        """The text of one referenced object: an edge, a library name or a value digest."""
        from .params import param_digest
        if isinstance(value, StageNode):
            return f"stage:{value.name}"
        if isinstance(value, types.ModuleType):
            return f"module:{value.__name__}"
        if isinstance(value, (types.FunctionType, type)):
            return self.ref(value) if is_user_object(value) else f"lib:{library_name(value)}"
        if isinstance(value, types.MethodType):
            if not is_user_object(value.__func__):
                return f"lib:{library_name(value.__func__)}"
            return f"method({self.value(value.__func__, where)},{self.value(value.__self__, where, depth + 1)})"
        if isinstance(value, functools.partial):
            args = ",".join(self.value(a, where, depth + 1) for a in value.args)
            keywords = ",".join(f"{k}={self.value(v, where, depth + 1)}" for k, v in sorted(value.keywords.items()))
            return f"partial({self.value(value.func, where, depth + 1)};{args};{keywords})"
        if isinstance(value, (types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodDescriptorType)):
            return f"lib:{library_name(value)}"
        if isinstance(value, re.Pattern):
            return f"regex:{param_digest((value.pattern, value.flags))}"
        try:
            return f"value:{param_digest(value)}"
        except Exception:  # TypeError: no stable encoding; RecursionError: a self-containing list
            pass
        if depth < _MAX_DEPTH:
            if isinstance(value, (list, tuple)):
                return f"{type(value).__name__}[{','.join(self.value(v, where, depth + 1) for v in value)}]"
            if isinstance(value, dict):
                items = sorted(f"{self.value(k, where, depth + 1)}:{self.value(v, where, depth + 1)}" for k, v in value.items())
                return f"dict[{','.join(items)}]"
            if isinstance(value, (set, frozenset)):
                return f"set[{','.join(sorted(self.value(v, where, depth + 1) for v in value))}]"
            wrapped = getattr(value, "__wrapped__", None)
            if isinstance(wrapped, types.FunctionType) and is_user_object(wrapped):  # functools.cache & co
                return f"wrapped({type(value).__qualname__},{self.ref(wrapped)})"
            if is_user_object(type(value)) and hasattr(value, "__dict__"):
                return f"instance({self.ref(type(value))},{self.value(vars(value), where, depth + 1)})"
        if callable(value) and not is_user_object(type(value)):
            return f"lib:{library_name(value)}"
        if not is_user_object(type(value)):  # a library's object (a logger, a session): named by type
            logger.debug("%s: library object %s hashed by its type only", where, type(value).__qualname__)
            return f"libobj:{type(value).__module__}.{type(value).__qualname__}"
        logger.warning(
            "%s: a %s lwdp cannot hash; changing it won't invalidate the cache",
            where, type(value).__qualname__,
        )
        return f"unhashed:{type(value).__module__}.{type(value).__qualname__}"


def node_names(nodes: list[Any]) -> list[str]:
    """``module.qualname`` of each node (a script run as ``__main__`` named after its file),
    made unique with ``#2``, ``#3``... for same-named lambdas or factory products."""
    names: list[str] = []
    for obj in nodes:
        base = qualified_name(obj)
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}#{n}"
        names.append(name)
    return names


class NodeDigest(TypedDict):
    """One function or class of a stage's code: where it is defined, the digest of its own
    text, and a digest per part (its code, each closure value, default and global it reads),
    so that an explanation can say which part changed."""

    qualname: str
    file: str
    digest: str
    parts: dict[str, str]


def graph_digests(
    root: types.FunctionType, function_text: Callable[[types.FunctionType, bool], str]
) -> tuple[str, dict[str, NodeDigest]]:
    """(digest of the whole graph, {name: `NodeDigest`}) for ``root`` (first) and every helper.

    A root that references nothing (no globals, closure or defaults) and has no helpers
    gets the digest of its own code text alone, as before deep hashing.
    """
    graph = Graph(function_text)
    graph.walk(root)
    names = node_names(graph.nodes)
    nodes = {
        names[i]: NodeDigest(
            qualname=obj.__qualname__,
            file=_display_path(_defining_file(obj)),
            digest=_xxh(graph.render(graph.texts[i], names)),
            parts={what: _xxh(graph.render(text, names)) for what, text in graph.parts[i]},
        )
        for i, obj in enumerate(graph.nodes)
    }
    if len(graph.nodes) == 1 and "\0" not in graph.texts[0].split("\0", 1)[1]:
        return graph.texts[0].split("\0", 1)[1], nodes
    hasher = xxhash.xxh3_128()
    for i, text in enumerate(graph.texts):
        hasher.update(f"{i}\0{graph.render(text)}\n".encode())
    return hasher.hexdigest(), nodes


def _xxh(text: str) -> str:
    return xxhash.xxh3_128_hexdigest(text.encode())


def _display_path(path: str | None) -> str:
    """A file as a user names it: relative to the working directory when inside it."""
    if path and path.startswith("<ipython-input"):
        return "an IPython cell"
    if not path or path.startswith("<"):
        return path or "<unknown>"
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if relative.startswith("..") else relative
